from django.db import models


class Message(models.Model):
    """One chat message, saved before it is sent to its room."""

    room = models.CharField(max_length=64)
    body = models.TextField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "chat"
