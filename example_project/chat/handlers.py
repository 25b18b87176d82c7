"""The example's websocket handlers: an echo and an ORM-backed chat room."""

from django_ws import JsonWebSocketHandler, WebSocketHandler, send_to_group

from .models import Message

HISTORY = 20


class EchoHandler(WebSocketHandler):
    """Sends every message back as it came: text as text, bytes as bytes."""

    def on_open(self, message):
        return None  # the first message is echoed by on_message too

    def on_message(self, message):
        self.send(message)


class ChatHandler(JsonWebSocketHandler):
    """A room: history from the database on join, every line saved and broadcast.

    Messages are JSON: the client sends ``{"author": ..., "text": ...}``; the
    room receives ``{"type": "message", "author", "text", "id"}``.
    """

    def on_open_json(self, content):
        self.room = self.kwargs["room"]
        self.join(self.group)
        recent = Message.objects.filter(room=self.room).order_by("-created", "-id")[:HISTORY]
        for line in reversed(list(recent)):
            self.send_json({"type": "message", "author": line.author, "text": line.text, "id": line.id})
        # Returning None: the first message is also handled by on_json.

    @property
    def group(self):
        return f"chat.{self.room}"

    def on_json(self, content):
        if not isinstance(content, dict) or not content.get("text"):
            return  # a hello or an empty line: nothing to say
        line = Message.objects.create(
            room=self.room, author=str(content.get("author") or "anonymous")[:100], text=str(content["text"])
        )
        send_to_group(self.group, self.encode(
            {"type": "message", "author": line.author, "text": line.text, "id": line.id}
        ))
