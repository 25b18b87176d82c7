from django.db import migrations, models


class Migration(migrations.Migration):
    """The permissions of the admin's live view: an unmanaged model, so no table (django_ws/models.py)."""

    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Realtime",
            fields=[
                ("id", models.AutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
            ],
            options={
                "verbose_name": "realtime",
                "verbose_name_plural": "realtime",
                "managed": False,
                "default_permissions": ("view",),
                "permissions": [
                    ("close_connection", "Can close a connection from the live view"),
                    ("send_test_message", "Can send a test message to a group from the live view"),
                ],
            },
        ),
    ]
