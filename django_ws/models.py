"""The one model of django_ws: a holder for the admin live view's permissions (no table).

Django's permissions belong to a model's content type, so the live view
needs a model to hang ``django_ws.view_realtime`` and its two actions on.
``managed = False`` and no fields but the implicit id: ``migrate`` creates no
table, only the content type and the permissions (docs/operating.rst says
why this and not, say, ``auth``'s permissions on another app's model).
"""

from django.db import models


class Realtime(models.Model):
    """The admin's "Realtime" page: what staff may see and do there."""

    class Meta:
        managed = False
        verbose_name = "realtime"
        verbose_name_plural = "realtime"
        # Only "view" of the defaults: there is nothing to add, change or delete.
        default_permissions = ("view",)
        permissions = [
            ("close_connection", "Can close a connection from the live view"),
            ("send_test_message", "Can send a test message to a group from the live view"),
        ]
