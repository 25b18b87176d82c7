"""Routes to handlers written with the usual mistakes (tests/unit/test_checks.py, W011 and W012)."""

from django_ws import JsonWebSocketHandler, WebSocketHandler, on_type
from django_ws.routing import ws_path


class ChannelsStyleHandler(WebSocketHandler):
    """Written as a Channels consumer: django-ws calls none of these."""

    def connect(self):
        pass

    def receive(self, text_data=None, bytes_data=None):
        pass

    def disconnect(self, code):
        pass


class TypedPlainHandler(WebSocketHandler):
    @on_type("move")
    def move(self, content):
        pass


class TypedJsonHandler(JsonWebSocketHandler):
    """Right: @on_type on a JSON handler."""

    @on_type("move")
    def move(self, content):
        pass


urlpatterns = [
    ws_path(r"^channels$", ChannelsStyleHandler),
    ws_path(r"^channels-again$", ChannelsStyleHandler),  # the same class: reported once
    ws_path(r"^plain-typed$", TypedPlainHandler),
    ws_path(r"^json-typed$", TypedJsonHandler),
]
