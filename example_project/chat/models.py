from django.db import models


class Message(models.Model):
    """One line said in a room; the chat handler writes and reads these."""

    room = models.CharField(max_length=100, db_index=True)
    author = models.CharField(max_length=100)
    text = models.TextField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created", "id"]

    def __str__(self):
        return f"[{self.room}] {self.author}: {self.text}"
