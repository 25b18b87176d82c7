"""The Socket.IO transport: python-socketio on the edge's Tornado application, as a thin adapter around the core.

Only imported with ``WS_SOCKETIO = True`` (it needs the ``[socketio]``
extra). python-engineio serves Engine.IO v4 (long-polling, upgraded to
WebSocket) at ``<websocket-url prefix>/socket.io/``; python-socketio
multiplexes namespaces over it. Each namespace connection is one
:class:`SocketIOConnection`, and one connection in the core, whose route is
the namespace without its leading slash: ``io("/chat/lobby")`` reaches the
handler that ``ws://host/socket/chat/lobby`` reaches. docs/socketio.rst has
the mapping of frames to events, both ways.

What python-socketio offers beyond its documented API is used through
:mod:`django_ws.edge.transports.socketio_compat` only.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import re
import typing
from urllib.parse import parse_qsl, urlencode

import socketio
import tornado.web

from django_ws.codes import CloseCode
from django_ws.conf import ws_settings
from django_ws.history import ENVELOPE_PARAM, SINCE_PARAM, BadPositions, Position, parse_positions

from ..core import ConnectionState, Refuse, Upgrade
from ..logs import redact_uri
from . import socketio_compat as compat
from .http import request_meta

if typing.TYPE_CHECKING:  # pragma: no cover
    from ..core import Connection
    from .base import EdgeServices

logger = logging.getLogger("django_ws.edge")

#: Engine.IO's own query parameters: not the application's, so not in the handler's request.GET.
ENGINEIO_PARAMS = frozenset({"EIO", "transport", "sid", "t", "j", "b64"})
#: The event that tells a Socket.IO client why the server is about to disconnect it (docs/socketio.rst).
CLOSE_EVENT = "close"
#: How the end of a namespace connection that this side did not start maps to a close code.
_ENDINGS = {
    socketio.AsyncServer.reason.CLIENT_DISCONNECT: (CloseCode.NORMAL, "client disconnect"),
    socketio.AsyncServer.reason.PING_TIMEOUT: (CloseCode.INTERNAL_ERROR, "keepalive ping timeout"),
}


class SocketIOServer:
    """python-socketio's server, with every namespace routed to the core."""

    def __init__(self, edge: EdgeServices):
        self.edge = edge
        self.sio = compat.EventServer(
            self.event,
            async_mode="tornado",
            namespaces="*",
            # Events are handled in the order read, one at a time: the order of a connection's messages.
            async_handlers=False,
            cors_allowed_origins=lambda origin, environ: edge.origin_allowed(origin),
            ping_interval=float(ws_settings.WS_SOCKETIO_PING_INTERVAL),
            ping_timeout=float(ws_settings.WS_SOCKETIO_PING_TIMEOUT),
            max_http_buffer_size=edge.max_message_size,
            logger=False,
            engineio_logger=False,
        )
        self.sio.on("connect", self._connect, namespace="*")
        self.sio.on("disconnect", self._disconnect, namespace="*")
        #: Open namespace connections by Socket.IO sid.
        self.connections: dict[str, SocketIOConnection] = {}

    def routes(self) -> list[tuple]:
        """The Tornado route of ``<prefix>/socket.io/``: to go before the websocket pattern, which matches it too."""
        pattern = re.escape(self.edge.mount.prefix) + r"/socket\.io/?"
        return [(pattern, _handler_class(self.sio), {"edge": self.edge})]

    @property
    def max_body_size(self) -> int:
        """The largest HTTP body the edge reads: one polling POST of a message at the size limit, and its framing."""
        return self.edge.max_message_size + 65536

    # -- python-socketio's events -------------------------------------------------

    async def _connect(self, namespace: str, sid: str, environ: dict, auth: typing.Any) -> bool:
        """A client asks for ``namespace``: the core decides, through a worker's on_connect, as for a handshake.

        Refused, the client gets ``connect_error`` with the reason as its
        message and ``{"status": <HTTP status>}`` as its data.
        """
        edge = self.edge
        route = namespace[1:]
        http = environ["tornado.handler"].request  # the Engine.IO handshake's request
        positions = None
        if isinstance(auth, dict) and ENVELOPE_PARAM in auth:
            try:
                positions = _positions_from_auth(auth)
            except BadPositions as exc:
                raise socketio.exceptions.ConnectionRefusedError(str(exc), {"status": 400}) from None
        query = urlencode([(k, v) for k, v in parse_qsl(http.query, keep_blank_values=True)
                           if k not in ENGINEIO_PARAMS])
        meta = request_meta(http, path=f"{edge.mount.prefix}/{route}", query=query)
        meta["transport"] = "socketio"
        if positions is not None:
            meta["recovering"] = sorted(positions.positions)
        eio_sid = compat.session_of(self.sio, sid, namespace)
        transport = SocketIOConnection(self, sid, eio_sid, namespace)
        conn, actions = edge.core.connect(route, meta, transport, address=http.remote_ip, positions=positions)
        if conn is None:  # refused at once, before a record was made
            (refusal,) = actions
            raise _refused(refusal)
        transport.conn = conn
        answer = transport.answer = asyncio.get_running_loop().create_future()
        result = await edge.handshake(conn, actions, answer) or Refuse(conn, 503, "no worker available")
        if isinstance(result, Refuse):
            raise _refused(result)
        if not compat.session_alive(self.sio, eio_sid):
            # The client left while a worker decided: python-socketio would never report it.
            edge.execute(edge.core.closed(conn))
            return False
        self.connections[sid] = transport
        # python-socketio sends the CONNECT packet once this returns: the
        # connection opens (and what on_connect sent goes out) right after it.
        asyncio.get_running_loop().call_soon(transport.opened)
        return True

    async def _disconnect(self, namespace: str, sid: str, reason: str) -> None:
        transport = self.connections.pop(sid, None)
        if transport is not None:
            transport.ended(reason)

    def too_big(self, eio_sid: str) -> None:
        """The client of the Engine.IO session ``eio_sid`` sent more than WS_MAX_MESSAGE_SIZE at once: 1009."""
        core = self.edge.core
        for transport in [t for t in self.connections.values() if t.eio_sid == eio_sid]:
            logger.info("connection %s: a long-polling POST over %d bytes; closing it with 1009",
                        transport.conn.id, self.edge.max_message_size)
            self.edge.execute(core.close(transport.conn, CloseCode.MESSAGE_TOO_BIG, "message too big", release=True))

    def event(self, eio_sid: str, namespace: str, ack_id: int | None, data: typing.Any) -> None:
        """One event packet from a client, with its ack id (socketio_compat.EventServer)."""
        sid = compat.connection_of(self.sio, eio_sid, namespace)
        transport = self.connections.get(sid) if sid is not None else None
        if transport is None:
            return  # not (or no longer) connected to that namespace: python-socketio drops it too
        transport.received(data, ack_id)


def _handler_class(sio: socketio.AsyncServer) -> type[tornado.web.RequestHandler]:
    """python-engineio's Tornado handler for ``sio``, with the edge's Origin policy and logging."""

    class SocketIOHandler(compat.tornado_handler(sio)):
        """Every Engine.IO request: the handshake, each poll and POST, the WebSocket upgrade."""

        def initialize(self, edge: EdgeServices) -> None:
            # Whatever Tornado logs of this request shows no token.
            self.request.uri = redact_uri(self.request.uri)
            self.edge = edge

        def prepare(self) -> None:
            # Every request, the polling POSTs too: a sid alone must not let another site's page in.
            origin = self.request.headers.get("Origin")
            if origin and not self.edge.origin_allowed(origin):
                self._refuse(403, "origin not allowed")
            elif self.request.method == "POST" and len(self.request.body) > self.edge.max_message_size:
                # As a WebSocket message too big: its connections close with 1009 (python-engineio
                # would close the session instead, and hold this request until the client polls).
                self.edge.socketio.too_big(self.get_query_argument("sid", ""))
                self._refuse(413, "message too big")

        def _refuse(self, status: int, reason: str) -> None:
            self.set_status(status)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(f"{status} {reason}\n")

        def check_origin(self, origin: str) -> bool:
            return True  # prepare() has refused the foreign ones

        def get_compression_options(self) -> dict | None:
            return {} if self.edge.compression is not None else None

    return SocketIOHandler


def _refused(refusal: Refuse) -> socketio.exceptions.ConnectionRefusedError:
    data: dict[str, typing.Any] = {"status": refusal.status}
    retry = (refusal.headers or {}).get("Retry-After")
    if retry is not None:
        data["retry_after"] = int(retry)
    return socketio.exceptions.ConnectionRefusedError(refusal.reason, data)


def _positions_from_auth(auth: dict):
    """The positions a client presented in its connect ``auth`` (docs/socketio.rst), validated as the query's are."""
    params = {ENVELOPE_PARAM: str(auth[ENVELOPE_PARAM])}
    since = auth.get(SINCE_PARAM)
    if since is not None:
        params[SINCE_PARAM] = json.dumps(since)
    return parse_positions(urlencode(params))


def position_fields(position: Position | None) -> dict | None:
    """A message's position as a Socket.IO client that asked for positions receives it (None: no position)."""
    if position is None:
        return None
    if position.resync:
        return {"resync": position.group, "e": position.epoch, "o": position.offset}
    return {"g": position.group, "e": position.epoch, "o": position.offset}


class SocketIOConnection:
    """One namespace connection of one Socket.IO client, and its record in the core.

    What the core asks it to write goes out in order through one task at a
    time (``_drain``): python-socketio's sends are coroutines.
    """

    __slots__ = ("_backlog", "_outbox", "_task", "_unread", "answer", "conn", "eio_sid", "namespace", "owner", "sid")

    def __init__(self, owner: SocketIOServer, sid: str, eio_sid: str, namespace: str):
        self.owner, self.sid, self.eio_sid, self.namespace = owner, sid, eio_sid, namespace
        self.conn: Connection | None = None
        #: The core's answer to the connect (Upgrade or Refuse).
        self.answer: asyncio.Future | None = None
        self._outbox: collections.deque = collections.deque()
        self._task: asyncio.Future | None = None
        #: Bytes sent that the client has not fetched yet (an estimate, see _count), and the
        #: Engine.IO queue's length when last looked at.
        self._unread = 0
        self._backlog = 0

    # -- from the core (Edge carries out its actions) --------------------------------------

    def answered(self, action: Upgrade | Refuse) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(action)

    def deliver(self, binary: bool, payload: bytes, position: Position | None = None) -> None:
        """A message from a worker: a ``message`` event with a str (text) or bytes (binary) argument."""
        data = payload if binary else payload.decode("utf-8")
        if self.conn.positions is not None:
            self._send(["message", data, position_fields(position)])
        else:
            self._send(["message", data])

    def acknowledge(self, ack: int, payload: bytes) -> None:
        """The handler's answer to the client's event ``ack`` (a JSON array of its arguments)."""
        self._outbox.append((ack, json.loads(payload)))
        self._start()

    def close(self, code: int, reason: str, fail: bool = False) -> None:
        """Tell the client why (the ``close`` event), then disconnect its namespace connection."""
        self._send([CLOSE_EVENT, {"code": int(code), "reason": reason}])
        self._outbox.append(None)
        self._start()

    def abort(self) -> None:
        """End the namespace connection now (a shutdown whose clients did not go in time)."""
        conn = self.conn
        if conn is not None and conn.state in (ConnectionState.CONNECTING, ConnectionState.UPGRADING):
            self.owner.edge.execute(self.owner.edge.core.closed(conn))
            self.answered(Refuse(conn, 503, "server shutdown"))
            return
        self._outbox.append(None)
        self._start()

    def flush(self) -> None:
        """Nothing waits for the end of an Edge.execute() here: every send goes through _drain in order."""

    # -- to the core ------------------------------------------------------------------

    def opened(self) -> None:
        """python-socketio has sent the CONNECT packet: the connection is open."""
        sio, conn = self.owner.sio, self.conn
        if compat.connection_of(sio, self.eio_sid, self.namespace) is None or not compat.session_alive(
                sio, self.eio_sid):
            # The client left meanwhile, before python-socketio counted it connected.
            self.owner.connections.pop(self.sid, None)
            self.owner.edge.execute(self.owner.edge.core.closed(conn))
            return
        self.owner.edge.execute(self.owner.edge.core.opened(conn))

    def received(self, data: typing.Any, ack_id: int | None) -> None:
        """An event packet: ``message`` events go to the handler as messages, named ones as events."""
        edge, conn = self.owner.edge, self.conn
        if conn.state is ConnectionState.UPGRADING:
            self.opened()  # python-socketio counts it connected: its first event may beat the call_soon
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            logger.info("connection %s: a Socket.IO event without a name; closing it with 1007", conn.id)
            edge.execute(edge.core.close(conn, CloseCode.INVALID_DATA, "event without a name", release=True))
            return
        name, args = data[0], data[1:]
        try:
            if name == "message":
                binary, payload = _message(args)
                actions = edge.core.received(conn, binary, payload)
            else:
                payload = json.dumps(args, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
                actions = edge.core.received_event(conn, name, -1 if ack_id is None else ack_id, payload)
        except UnicodeEncodeError:
            # JSON may spell a lone surrogate ("\\ud800"): a str Python holds, but no UTF-8 text.
            logger.info("connection %s: a lone surrogate in the Socket.IO event %r; closing it with 1007", conn.id,
                        name)
            edge.execute(edge.core.close(conn, CloseCode.INVALID_DATA, "text that is not valid UTF-8", release=True))
            return
        except (TypeError, ValueError):
            logger.info("connection %s: binary data in the Socket.IO event %r; closing it with 1003", conn.id, name)
            edge.execute(edge.core.close(conn, CloseCode.UNSUPPORTED_DATA,
                                         "binary data only as the one argument of a message event", release=True))
            return
        edge.execute(actions)
        if name == "message" and ack_id is not None and conn.state is ConnectionState.OPEN:
            # on_message returns nothing: the acknowledgement says the edge passed the message on.
            self._outbox.append((ack_id, []))
            self._start()

    def ended(self, reason: str) -> None:
        """python-socketio reports the namespace connection gone, whoever ended it."""
        core = self.owner.edge.core
        ending = _ENDINGS.get(reason)
        self.owner.edge.execute(core.closed(self.conn, received=ending))

    # -- writing, in order -----------------------------------------------------------

    def _count(self, item: list) -> bool:
        """Count an event sent; True if the client has let WS_MAX_BUFFER_SIZE bytes pile up (it is then closed).

        python-engineio's queue has no bound and says nothing of bytes, so the
        bytes waiting are estimated: they shrink in proportion when the queue
        shrinks (the client fetched), and grow with each event. A client that
        reads keeps the queue short; one that does not poll makes it grow
        until the limit, as a WebSocket client that does not read (1008).
        """
        limit = self.owner.edge.max_buffer_size
        if not limit:
            return False
        queued = compat.backlog(self.owner.sio, self.eio_sid)
        if queued <= 1:
            self._unread = 0
        elif queued < self._backlog:
            self._unread = self._unread * queued // self._backlog
        self._backlog = queued
        self._unread += _size(item)
        if self._unread <= limit:
            return False
        logger.warning("connection %s: the Socket.IO client stopped reading (over %d bytes wait for it); "
                       "closing it with 1008", self.conn.id, limit)
        self._outbox.clear()
        edge = self.owner.edge
        edge.execute(edge.core.close(self.conn, CloseCode.POLICY_VIOLATION, "client not reading", release=True))
        return True

    def _send(self, data: list) -> None:
        self._outbox.append(data)
        self._start()

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        sio, outbox = self.owner.sio, self._outbox
        try:
            while outbox:
                item = outbox.popleft()
                if item is None:
                    outbox.clear()
                    await sio.disconnect(self.sid, namespace=self.namespace)
                elif type(item) is tuple:
                    await compat.send_ack(sio, self.eio_sid, self.namespace, *item)
                else:
                    await compat.send_event(sio, self.eio_sid, self.namespace, item)
                    self._count(item)  # past the bound, the outbox now holds the close
        except Exception:  # contain it here: the loop must not lose the edge's other clients
            logger.exception("connection %s: writing to the Socket.IO client failed", self.conn.id)
        finally:
            self._task = None


def _size(item: list) -> int:
    return sum(len(value) for value in item[1:2] if isinstance(value, (str, bytes)))


def _message(args: list) -> tuple[bool, bytes]:
    """A ``message`` event's argument as a WebSocket message: str as text, bytes as binary, else its JSON as text."""
    if len(args) == 1:
        (value,) = args
        if isinstance(value, str):
            return False, value.encode("utf-8")
        if isinstance(value, (bytes, bytearray)):
            return True, bytes(value)
        return False, json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return False, json.dumps(args, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
