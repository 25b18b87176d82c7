"""Handlers the end-to-end tests talk to. Each one makes one behaviour visible."""

import json
import os
import threading
import time

from django_ws import JsonWebSocketHandler, WebSocketHandler, close_group, send_to_group

from .models import Visit

OBSERVERS = "observers"


def report(event: str, **data) -> None:
    """Tell every ObserverHandler connection what happened (on_close runs, ...)."""
    send_to_group(OBSERVERS, json.dumps({"event": event, "pid": os.getpid(), **data}))


class EchoHandler(WebSocketHandler):
    def on_message(self, message):
        self.send(message)


class UpperHandler(WebSocketHandler):
    def on_message(self, message):
        self.send(message.upper())


class OpenContractHandler(WebSocketHandler):
    """on_open returns None, True or False as the route says."""

    def on_open(self, message):
        self.send(f"open:{message}")
        return {"none": None, "true": True, "false": False}[self.kwargs["result"]]

    def on_message(self, message):
        self.send(f"message:{message}")


class ObserverHandler(WebSocketHandler):
    def on_open(self, message):
        self.join(OBSERVERS)
        self.send("observing")
        return True


class TrackedHandler(WebSocketHandler):
    """Echoes, and reports on_open/on_close so tests can count them."""

    def on_open(self, message):
        self.opened_at = time.monotonic()
        report("open", tag=self.kwargs["tag"], conn=self.connection_id)

    def on_message(self, message):
        self.send(message)

    def on_close(self):
        report("close", tag=self.kwargs["tag"], conn=self.connection_id, code=self.close_code,
               reason=self.close_reason)


class FailingHandler(TrackedHandler):
    def on_message(self, message):
        if message == "boom":
            raise RuntimeError("boom, as the test asked")
        self.send(message)


class LoopHandler(WebSocketHandler):
    """The original 'visitors' example: a handler that never returns on its own."""

    def on_message(self, message):
        count = 0
        report("loop-start", tag=self.kwargs["tag"])
        while True:
            self.send(str(count))
            count += 1
            time.sleep(0.05)

    def on_close(self):
        report("close", tag=self.kwargs["tag"], conn=self.connection_id)


class ClosingHandler(WebSocketHandler):
    def on_message(self, message):
        if message.startswith("close "):  # "close <code>": an invalid code raises here, in the handler
            try:
                self.close(int(message.split()[1]), "asked")
            except ValueError as exc:
                self.send(f"ValueError: {exc}")
        elif message == "close":
            self.close(4000, "bye")
            try:
                self.send("after close")
            except Exception as exc:  # the contract: send() raises once closed
                report("send-after-close", error=type(exc).__name__)
        else:
            self.send(message)


class RoomHandler(JsonWebSocketHandler):
    def on_open_json(self, content):
        self.join(f"room.{self.kwargs['room']}")
        self.send_json({"joined": self.kwargs["room"], "id": self.connection_id})
        return True

    def on_json(self, content):
        if content.get("leave"):
            self.leave(f"room.{self.kwargs['room']}")
            self.send_json({"left": True})
        elif content.get("close_room"):  # tests/e2e/test_groups.py: close_group() from inside a worker
            result = close_group(f"room.{self.kwargs['room']}", 4000, content["close_room"])
            assert result.delivered is None, "a worker does not wait for a count"
        else:
            send_to_group(f"room.{self.kwargs['room']}", json.dumps(content))


class PresenceWatchHandler(JsonWebSocketHandler):
    """Watches ``room.<room>`` and tells its client each join and leave there."""

    def on_open_json(self, content):
        self.watch_presence(f"room.{self.kwargs['room']}")
        self.send_json({"watching": self.kwargs["room"]})
        return True

    def on_json(self, content):
        if content.get("unwatch"):
            self.unwatch_presence(f"room.{self.kwargs['room']}")
            self.send_json({"unwatched": True})

    def on_presence(self, group, joined, left):
        self.send_json({"group": group, "joined": joined, "left": left})


class PeopleHandler(JsonWebSocketHandler):
    """``people/<room>``: the first message joins ``people.<room>`` as its user (``info``: with that info;
    ``watch``: and relays each on_user_presence); ``{"info": ...}`` later updates it."""

    def on_open_json(self, content):
        group = f"people.{self.kwargs['room']}"
        if content.get("watch"):
            self.watch_presence(group)
        self.join(group, presence=content.get("info", True))
        self.send_json({"joined": self.kwargs["room"], "id": self.connection_id})
        return True

    def on_json(self, content):
        self.update_presence(f"people.{self.kwargs['room']}", content["info"])

    def on_user_presence(self, group, joined, left):
        self.send_json({"group": group, "users_joined": joined, "users_left": left})


class WhoAmIHandler(JsonWebSocketHandler):
    def on_json(self, content):
        user = self.request.user
        self.send_json({
            "user": user.get_username() if user.is_authenticated else None,
            "path": self.request.path,
            "query": self.request.GET.dict(),
            "cookie_names": sorted(self.request.COOKIES),
            "user_agent": self.request.headers.get("User-Agent"),
        })


class PrivateHandler(WhoAmIHandler):
    login_required = True


class KeptPrivateHandler(PrivateHandler):
    """Stays open when its user's credentials end (tests/e2e/test_credentials.py)."""

    close_with_credentials = False


class DatabaseHandler(WebSocketHandler):
    def on_message(self, message):
        Visit.objects.create(tag=self.kwargs["tag"])
        self.send(str(Visit.objects.filter(tag=self.kwargs["tag"]).count()))


class InfoHandler(JsonWebSocketHandler):
    def on_json(self, content):
        self.send_json({
            "kwargs": self.kwargs,
            "url_name": self.request.resolver_match.url_name,
            "namespace": self.request.resolver_match.namespace,
            "thread": threading.current_thread().name,
            "pid": os.getpid(),
        })


# -- request context and defences (tests/e2e/test_security.py) ----------------------------


class RequestInfoHandler(JsonWebSocketHandler):
    """Reports what self.request holds."""

    def on_json(self, content):
        request = self.request
        self.send_json({
            "path": request.path,
            "GET": {key: request.GET.getlist(key) for key in request.GET},
            "x_custom": request.headers.get("X-Custom"),
            "meta_x_custom": request.META.get("HTTP_X_CUSTOM"),
            "cookies": request.COOKIES,
            "server_name": request.META.get("SERVER_NAME"),
            "remote_addr": request.META.get("REMOTE_ADDR"),
            "scheme": request.scheme,
        })


class PermissionHandler(WhoAmIHandler):
    permission_required = "auth.change_user"


class ConnectReportHandler(WebSocketHandler):
    """Reports on_connect, so a test can tell whether a handshake reached a handler."""

    def on_connect(self):
        report("connect", tag=self.kwargs["tag"])

    def on_message(self, message):
        self.send(message)


class TokenHandler(WebSocketHandler):
    """Refuses the handshake with 401 unless ?token=letmein."""

    def on_connect(self):
        from django_ws import HandshakeDenied

        if self.request.GET.get("token") != "letmein":
            raise HandshakeDenied(401, "token required")

    def on_message(self, message):
        self.send(f"welcome:{message}")


class SubprotocolHandler(WebSocketHandler):
    """Picks ?pick= (default "b") from the offered subprotocols."""

    def select_subprotocol(self, subprotocols):
        wanted = self.request.GET.get("pick", "b")
        return wanted if wanted in subprotocols or wanted == "not-offered" else None

    def on_message(self, message):
        self.send(message)


class FloodHandler(WebSocketHandler):
    """On a message N, sends up to N MB in 64 KB text messages as fast as it can."""

    def on_message(self, message):
        limit = int(message) * 1024 * 1024
        chunk, sent = "x" * 65536, 0
        report("flood-start", tag=self.kwargs["tag"])
        while sent < limit:
            self.send(chunk)  # raises ConnectionClosed once the edge has closed us
            sent += len(chunk)
        report("flood-done", tag=self.kwargs["tag"], sent=sent)

    def on_close(self):
        report("close", tag=self.kwargs["tag"], conn=self.connection_id)


class GatedConnectHandler(WebSocketHandler):
    """on_connect waits (at most 10 s) until the file ?gate= exists: holds handshakes open."""

    def on_connect(self):
        gate = self.request.GET["gate"]
        deadline = time.monotonic() + 10
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.02)

    def on_message(self, message):
        self.send(message)


# -- tokens (tests/e2e/test_tokens.py) ------------------------------------------------------


class ScopedHandler(WhoAmIHandler):
    """Accepts only tokens minted for the "chat" scope."""

    token_scope = "chat"


class TokenConnectReportHandler(WhoAmIHandler):
    """Reports on_connect with the user a token gave, so a test sees whether a handler ran."""

    def on_connect(self):
        user = self.request.user
        report("connect", tag=self.kwargs["tag"], user=user.get_username() if user.is_authenticated else None)


class HistoryRoomHandler(WebSocketHandler):
    """Joins ``hist.<room>`` (a group with history) in on_connect and says when the handler hears of a recovery."""

    def on_connect(self):
        self.join(f"hist.{self.kwargs['room']}")
        self.send(json.dumps({"joined": self.kwargs["room"], "recovering": sorted(self.recovering)}))

    def on_open(self, message):
        return True

    def on_recovered(self, group):
        self.send(json.dumps({"recovered": group}))

    def on_resync(self, group):
        self.send(json.dumps({"resync": group}))
