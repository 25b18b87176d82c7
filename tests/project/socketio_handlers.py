"""A handler tests/e2e/test_socketio.py drives over Socket.IO (and WebSocket): events, acks, denial, on_close."""

from django_ws import HandshakeDenied, JsonWebSocketHandler, on_type

from .handlers import report


class EventsHandler(JsonWebSocketHandler):
    """Greets with what it sees of the request; answers events; reports on_close with its code."""

    def on_connect(self):
        if self.request.GET.get("deny"):
            raise HandshakeDenied(403, "denied, as the test asked")
        self.send_json({
            "welcome": self.kwargs["tag"],
            "transport": self.request.transport,
            "path": self.request.path,
            "query": self.request.GET.dict(),
            "cookies": sorted(self.request.COOKIES),
            "remote_addr": self.request.META["REMOTE_ADDR"],
            "id": self.connection_id,
        })

    @on_type("add")
    def add(self, payload):
        return payload["a"] + payload["b"]

    @on_type("pair")
    def pair(self, payload):
        return payload, "second"

    @on_type("shout")
    def shout(self, payload):
        self.send_json({"shouted": payload})

    @on_type("boom")
    def boom(self, payload):
        raise RuntimeError("boom, as the test asked")

    @on_type("bye")
    def bye(self, payload):
        self.close(payload["code"], payload["reason"])

    def on_event(self, name, payload):
        return {"unrouted": name, "payload": payload}

    def on_json(self, content):
        self.send_json({"json": content})

    def on_close(self):
        report("close", tag=self.kwargs["tag"], conn=self.connection_id, code=self.connection.close_code,
               transport=self.request.transport)
