"""The handlers the benchmark drives.

``EchoHandler`` sends every frame back. ``BroadcastHandler`` puts every
connection of ``room/<name>`` in the group ``room.<name>`` from
``on_connect`` (the benchmark's receivers never send, so ``on_open`` would
never run for them; the edge applies a join made during the handshake when
the connection opens) and sends every frame it receives to that group, so
each frame sent on a URL reaches every connection on that URL, the sender
included. ``ChatHandler`` does the same after saving each message through
the ORM (the chat scenario).
"""

from chat.models import Message

from django_ws import WebSocketHandler, send_to_group


class EchoHandler(WebSocketHandler):
    """Every frame back, unchanged (on_open returns None: the first one too)."""

    def on_message(self, message):
        self.send(message)


class BroadcastHandler(WebSocketHandler):
    def on_connect(self):
        self.group = f"room.{self.kwargs['room']}"
        self.join(self.group)

    def on_message(self, message):
        send_to_group(self.group, message)


class ChatHandler(WebSocketHandler):
    """A chat room: each message is saved to the database, then sent to everyone in the room."""

    def on_connect(self):
        self.room = self.kwargs["room"]
        self.join(f"chat.{self.room}")

    def on_message(self, message):
        Message.objects.create(room=self.room, body=message)
        send_to_group(f"chat.{self.room}", message)
