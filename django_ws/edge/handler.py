"""The Tornado side of one client connection."""

from __future__ import annotations

import logging
import typing

import tornado.web
import tornado.websocket

from django_ws import wire
from django_ws.handlers import CloseCode

from .bridge import AT_CAPACITY

if typing.TYPE_CHECKING:  # pragma: no cover
    from .app import Edge

logger = logging.getLogger("django_ws.edge")


class EdgeWebSocketHandler(tornado.websocket.WebSocketHandler):
    """Holds one browser's WebSocket and relays it to the worker that took it.

    The handshake is decided before the upgrade: an unknown route gets 404
    and a foreign Origin 403 without involving a worker; then a worker runs
    the handler's ``on_connect`` and answers Accept or Deny, so no frame can
    reach a handler that has not accepted its connection.
    """

    def initialize(self, edge: Edge) -> None:
        self.edge = edge
        self.bridge = edge.bridge
        self.conn_id: str | None = None
        self.route: str | None = None
        self.worker = None
        self.groups: set[str] = set()
        self.released = False
        self._subprotocol = ""
        self._refuse_after_upgrade = False

    # -- handshake ---------------------------------------------------------------

    async def get(self, route: str | None = None, *args) -> None:
        route = route or ""
        if self.edge.mount.resolve(route) is None:
            self._refuse(404, "no websocket route here")
            return
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            await super().get(route)  # Tornado answers 400 and says why
            return
        origin = self.request.headers.get("Origin") or self.request.headers.get("Sec-Websocket-Origin")
        if origin and not self.edge.origin_allowed(origin):
            self._refuse(403, "origin not allowed")
            return
        if self.edge.max_connections and len(self.bridge.connections) >= self.edge.max_connections:
            self._refuse(503, "too many connections")
            return
        self.route = route
        self.conn_id = self.bridge.new_conn_id()
        try:
            answer = await self.bridge.handshake(self, route, self._request_meta())
            if self.released:  # the client left while a worker was deciding
                return
            if answer is None:
                self._refuse(503, "no worker available")
                return
            if answer is AT_CAPACITY:
                # Upgrade, then close with 1013: a browser sees a close code
                # (an HTTP status never reaches page JavaScript).
                self.bridge.stats.refused[1013] += 1
                self._refuse_after_upgrade = True
                await super().get(route)
                return
            if isinstance(answer, wire.Deny):
                self._refuse(answer.status, answer.reason or "denied")
                return
            self._subprotocol = answer.subprotocol
            await super().get(route)
        finally:
            # After a refusal, or an upgrade that failed on Tornado's checks,
            # the worker must still learn that this connection is over.
            if self.conn_id not in self.bridge.connections:
                self.bridge.release(self, CloseCode.ABNORMAL, "handshake not completed")

    def _refuse(self, status: int, reason: str) -> None:
        self.bridge.stats.refused[status] += 1
        self.set_status(status if 400 <= status < 600 else 403)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status} {reason}\n")

    def _request_meta(self) -> dict:
        request = self.request
        host, _, port = request.host.rpartition(":") if ":" in request.host else (request.host, "", "")
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        return {
            "path": request.path,
            "query": request.query,
            "headers": list(request.headers.get_all()),
            "remote_addr": request.remote_ip,
            "server_name": host,
            "server_port": port,
            "secure": request.protocol == "https",
            "subprotocols": [p.strip() for p in offered.split(",") if p.strip()],
        }

    def check_origin(self, origin: str) -> bool:
        return self.edge.origin_allowed(origin)

    def select_subprotocol(self, subprotocols):
        return self._subprotocol or None

    def get_compression_options(self):
        return None

    # -- connection ------------------------------------------------------------------

    def open(self, *args) -> None:
        self.set_nodelay(True)
        if self._refuse_after_upgrade:
            self.close(CloseCode.TRY_AGAIN_LATER, "all workers at capacity")
            return
        self.bridge.opened(self)

    def on_message(self, message: str | bytes) -> None:
        if self._refuse_after_upgrade:
            return
        if isinstance(message, bytes):
            ok = self.bridge.forward(self, True, message)
        else:
            ok = self.bridge.forward(self, False, message.encode("utf-8"))
        if not ok:
            self.close(
                CloseCode.SERVICE_RESTART if self.worker is None else CloseCode.TRY_AGAIN_LATER,
                "worker unavailable",
            )

    def deliver(self, binary: bool, payload: bytes) -> None:
        """Write one message from a worker; text payloads are UTF-8 already."""
        try:
            self.write_message(payload, binary=binary)
        except tornado.websocket.WebSocketClosedError:
            pass

    def on_close(self) -> None:
        code = self.close_code if self.close_code is not None else CloseCode.NO_STATUS
        self.bridge.release(self, code, self.close_reason or "")
