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
    """A room: every line saved and broadcast; the room's recent lines for a page that has none.

    Messages are JSON: the client sends ``{"author": ..., "text": ...}``; the
    room receives ``{"type": "message", "author", "text", "id"}``, and a page
    that must (re)load its state ``{"type": "history", "lines": [...]}``.
    A page that reconnects with its positions gets the lines it missed from
    the edge's group history (WS_GROUP_HISTORY), not from here.
    """

    def on_open_json(self, content):
        self.room = self.kwargs["room"]
        # Logged-in people are listed in the room's presence (one entry each, with a count of
        # their tabs); anonymous pages are members, not listed.
        self.join(self.group, presence=True)
        self.watch_presence(self.group)
        self.send_presence(self.group)  # who is here: the page's socket.presence(group) shows it
        if self.group not in self.recovering:
            self.send_history()
        # Returning None: the first message is also handled by on_json.

    def on_user_presence(self, group, joined, left):
        # Someone arrived (or changed their info) or left: the page hears the change.
        self.send_presence(group, joined, left)

    def on_presence(self, group, joined, left):
        # A tab opened or closed: a fresh snapshot keeps the tab counts exact (fine for a
        # chat room; a room of thousands would send only the on_user_presence changes).
        self.send_presence(group)

    def on_resync(self, group):
        # The edge could not replay what the page missed (it restarted, or the gap is too old).
        self.send_history()

    def send_history(self):
        recent = Message.objects.filter(room=self.room).order_by("-created", "-id")[:HISTORY]
        self.send_json({"type": "history", "lines": [
            {"author": line.author, "text": line.text, "id": line.id} for line in reversed(list(recent))
        ]})

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
