"""The edge: a Tornado application that holds the clients' WebSockets."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import tornado.web
from django.conf import settings
from django.http.request import validate_host

from django_ws.conf import ws_settings
from django_ws.handlers import CloseCode
from django_ws.routing import Mount

from .bridge import Bridge
from .handler import EdgeWebSocketHandler, Keepalive
from .stats import stats_routes

logger = logging.getLogger("django_ws.edge")


class Edge:
    """Everything one edge process runs: the HTTP listener and its ZeroMQ bridge."""

    def __init__(self, mount: Mount, push_endpoint: str, sub_endpoint: str, *, max_connections: int = 0):
        self.mount = mount
        self.max_connections = max_connections
        self.bridge = Bridge(
            push_endpoint,
            sub_endpoint,
            heartbeat_interval=float(ws_settings.WS_HEARTBEAT_INTERVAL),
            heartbeat_timeout=float(ws_settings.WS_HEARTBEAT_TIMEOUT),
            handshake_timeout=float(ws_settings.WS_HANDSHAKE_TIMEOUT),
            queue_limit=int(ws_settings.WS_QUEUE_LIMIT),
            send_key_ttl=float(ws_settings.WS_SEND_KEY_TTL),
        )
        self._allowed_origins = self._origin_hosts()
        #: Pings every open client (WS_PING_INTERVAL) from one timer.
        self.keepalive = Keepalive()
        #: Tornado's per-connection protocol parameters, the same for all: made by the first handshake.
        self.websocket_params = None
        self.application = tornado.web.Application(
            # The stats routes first: with --websocket-url=/ the websocket
            # pattern would match them too.
            [*stats_routes(self.bridge), (mount.tornado_pattern, EdgeWebSocketHandler, {"edge": self})],
            websocket_max_message_size=int(ws_settings.WS_MAX_MESSAGE_SIZE),
            # Keepalive: a client that does not answer a ping within the timeout
            # is closed (Tornado then waits 5 s for its close frame, then drops it).
            websocket_ping_interval=float(ws_settings.WS_PING_INTERVAL or 0) or None,
            websocket_ping_timeout=float(ws_settings.WS_PING_TIMEOUT or 0) or None,
        )
        self.server = None

    @staticmethod
    def _origin_hosts() -> list[str]:
        allowed = ws_settings.WS_ALLOWED_ORIGINS
        if allowed is None:
            allowed = list(settings.ALLOWED_HOSTS)
            if settings.DEBUG and not allowed:
                # What Django itself accepts as Host in DEBUG with an empty list.
                allowed = [".localhost", "127.0.0.1", "[::1]"]
        return list(allowed)

    def origin_allowed(self, origin: str) -> bool:
        """Browsers send Origin; accept it only for the project's own hosts."""
        try:
            host = urlsplit(origin).hostname
        except ValueError:
            return False
        if not host:
            return False
        if ":" in host:
            host = f"[{host}]"
        return validate_host(host, self._allowed_origins)

    def start(self, address: str, port: int) -> None:
        self.bridge.start()
        # A deep accept queue: thousands of browsers reconnecting at once
        # (a restart) must not have their SYNs dropped and retried a second later.
        xheaders = bool(ws_settings.WS_TRUST_PROXY_HEADERS)
        self.server = self.application.listen(port, address, xheaders=xheaders,
                                              backlog=int(ws_settings.WS_LISTEN_BACKLOG),
                                              idle_connection_timeout=float(ws_settings.WS_HEADER_TIMEOUT))

    async def shutdown(self, timeout: float) -> None:
        """Stop accepting, close every client with 1001, tell the workers."""
        if self.server is not None:
            self.server.stop()
        for conn in list(self.bridge.connections.values()):
            conn.close(CloseCode.GOING_AWAY, "server shutdown")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.bridge.connections and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.bridge.connections.values()):
            # Clients that never answered the close frame: drop them.
            conn.on_connection_close()
        self.bridge.stop()
