"""The WebSocket transport: RFC 6455 over Tornado's HTTP server, as a thin adapter around the core.

Tornado serves the HTTP handshake (:class:`WebSocketHandshake`, a plain
``RequestHandler``); after the 101 the socket leaves Tornado for the event
loop's own transport, and one :class:`WebSocketConnection` (an asyncio
protocol) drives it: bytes read go to
the connection's :class:`~django_ws.edge.protocol.ServerProtocol`, the
events it returns go to the core, and what the protocol and the core want
written is written. Nothing here decides who a connection belongs to or how
it ends: the core does (:mod:`django_ws.edge.core`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import typing

import tornado.iostream
import tornado.web

from django_ws.codes import CloseCode
from django_ws.history import BadPositions, Position, envelope, parse_positions, without_positions

from .. import protocol as ws
from .. import tornado_compat
from ..core import ConnectionState, Refuse, Upgrade
from ..deflate import negotiate_deflate
from ..logs import redact_uri
from .http import request_meta

if typing.TYPE_CHECKING:  # pragma: no cover
    from ..core import Connection
    from ..keepalive import Watched
    from .base import EdgeServices

logger = logging.getLogger("django_ws.edge")

#: Seconds a close this side started waits for the client's close frame before the TCP connection is dropped.
CLOSE_TIMEOUT = 5.0


class WebSocketHandshake(tornado.web.RequestHandler):
    """The HTTP side of a WebSocket handshake.

    Everything that can be decided here is, before any worker is involved:
    an unknown route gets 404, a request that is not a valid RFC 6455
    handshake 400 or 426, a foreign Origin 403. Then the core decides
    (capacity 503, a worker's on_connect: Accept or Deny), and an accepted
    handshake is answered 101 and handed to a :class:`WebSocketConnection`.
    """

    def initialize(self, edge: EdgeServices) -> None:
        # Whatever Tornado logs of this request (a failing callback) shows no token.
        self.request.uri = redact_uri(self.request.uri)
        self.edge = edge
        self.conn: Connection | None = None
        self._answer: asyncio.Future | None = None

    async def get(self, route: str | None = None, *args: str) -> None:
        route = route or ""
        edge = self.edge
        if not edge.core.knows(route):
            self._refuse(404, "no websocket route here")
            return
        invalid = ws.invalid_handshake(self.request.method, self.request.headers)
        if invalid:
            self._refuse(*invalid)
            return
        origin = self.request.headers.get("Origin") or self.request.headers.get("Sec-Websocket-Origin")
        if origin and not edge.origin_allowed(origin):
            self._refuse(403, "origin not allowed")
            return
        try:
            positions = parse_positions(self.request.query)
        except BadPositions as exc:
            self._refuse(400, str(exc))
            return
        self._answer = asyncio.get_running_loop().create_future()
        meta = request_meta(self.request)
        if positions is not None:
            meta["query"] = without_positions(meta["query"])
            meta["recovering"] = sorted(positions.positions)
        if edge.tracing is None:
            await self._handshake(edge, route, meta, positions)
            return
        with edge.tracing.handshake(self.request.path, meta):
            await self._handshake(edge, route, meta, positions)

    async def _handshake(self, edge, route: str, meta: dict, positions) -> None:
        """Hand the handshake to the core, wait for its worker's answer, and upgrade or refuse."""
        conn, actions = edge.core.connect(route, meta, self, address=self.request.remote_ip, positions=positions)
        if conn is None:  # refused at once, before a record was made
            (refusal,) = actions
            self._refuse(refusal.status, refusal.reason, refusal.headers, counted=True)
            return
        self.conn = conn
        answer = await edge.handshake(conn, actions, self._answer)
        if answer is None:
            return  # the client left meanwhile (on_connection_close)
        if isinstance(answer, Upgrade):
            await self._upgrade(answer)
        else:
            self._refuse(answer.status, answer.reason, answer.headers, counted=True)

    def answered(self, action: Upgrade | Refuse) -> None:
        """The core's answer for this handshake (called by the edge when it carries out the action)."""
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(action)

    def on_connection_close(self) -> None:
        """The client left before the handshake was answered."""
        self.abort()

    def abort(self) -> None:
        """End the handshake where it stands (the client left, or the edge shuts down)."""
        conn = self.conn
        if conn is not None and conn.state in (ConnectionState.CONNECTING, ConnectionState.UPGRADING):
            self.edge.execute(self.edge.core.closed(conn))
        if self._answer is not None and not self._answer.done():
            self._answer.cancel()

    def _refuse(self, status: int, reason: str, headers: dict[str, str] | None = None, counted: bool = False) -> None:
        """Answer the handshake with an HTTP error; ``counted``: the core has counted it already."""
        if self._finished:
            return
        if not counted:
            self.edge.core.stats.refused[status] += 1
        self.set_status(status if 400 <= status < 600 else 403)
        for name, value in (headers or {}).items():
            self.set_header(name, value)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status} {reason}\n")

    async def _upgrade(self, answer: Upgrade) -> None:
        """Answer 101, take the socket from Tornado and open the WebSocket on the event loop's own transport."""
        conn = answer.conn
        edge = self.edge
        headers = self.request.headers
        self.clear_header("Content-Type")
        self.set_status(101)
        self.set_header("Upgrade", "websocket")
        self.set_header("Connection", "Upgrade")
        self.set_header("Sec-WebSocket-Accept", ws.accept_key(headers["Sec-WebSocket-Key"]))
        if answer.subprotocol:
            self.set_header("Sec-WebSocket-Protocol", answer.subprotocol)
        deflate = None
        if edge.compression is not None:
            agreed = negotiate_deflate(headers.get("Sec-WebSocket-Extensions", ""), edge.compression)
            if agreed is not None:
                self.set_header("Sec-WebSocket-Extensions", agreed[0])
                deflate = agreed[1]
        self.finish()  # writes the 101 and the access log line
        stream = self.detach()
        mask = tornado_compat.websocket_mask
        protocol = (ws.ServerProtocol(edge.max_message_size, deflate, mask) if mask is not None
                    else ws.ServerProtocol(edge.max_message_size, deflate))
        try:
            if stream.writing():  # a 101 the kernel did not take at once
                await stream.write(b"")
            sock, buffered = tornado_compat.take_socket(stream)
        except tornado.iostream.StreamClosedError:
            self.abort()  # the client left before the 101 was written
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = WebSocketConnection(edge, conn, protocol, buffered)
        try:
            # connection_made() opens it: before the loop reads a byte of the socket.
            await asyncio.get_running_loop().connect_accepted_socket(lambda: connection, sock)
        except OSError:  # the socket died meanwhile
            sock.close()
            if connection.transport is None:
                self.abort()


class WebSocketConnection(asyncio.Protocol):
    """One open WebSocket: the event loop's transport for its socket, its protocol state and its record in the core.

    After the 101 the socket leaves Tornado for the event loop's own
    transport (uvloop's, written in C, when installed): bytes arrive in
    :meth:`data_received` with no future and no buffer bookkeeping of
    Tornado's per read, and ``transport.write()`` sends at once what the
    kernel takes and buffers the rest. An edge holds thousands of these,
    mostly idle, so it is small: slots, no task of its own.
    """

    __slots__ = ("_buffered", "_closer", "_failing", "_unflushed", "conn", "edge", "keepalive", "pong_received",
                 "protocol", "transport")

    def __init__(self, edge: EdgeServices, conn: Connection, protocol: ws.ServerProtocol, buffered: bytes = b""):
        self.edge, self.conn, self.protocol = edge, conn, protocol
        self.transport: asyncio.Transport | None = None
        self.pong_received = False
        self.keepalive: Watched | None = None
        self._closer: asyncio.TimerHandle | None = None
        self._failing = False
        #: Data frames waiting for the end of the edge's current execute() (see Edge.execute).
        self._unflushed: list[bytes] | None = None
        #: What Tornado read past the handshake's headers: the first bytes of the WebSocket.
        self._buffered: bytes | None = buffered or None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """The loop's transport has the socket: the connection is open (the core says so to the worker)."""
        self.transport = typing.cast(asyncio.Transport, transport)
        self.conn.transport = self
        self.edge.execute(self.edge.core.opened(self.conn))
        if self.conn.state is ConnectionState.OPEN:
            self.keepalive = self.edge.keepalive.watch(self)
        buffered, self._buffered = self._buffered, None
        if buffered:
            self.data_received(buffered)

    # -- reading ----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._failing:
            return  # the connection failed: the rest of its input goes unread
        protocol = self.protocol
        events = protocol.receive_data(data)
        out = protocol.data_to_send()  # pongs and close replies go out first
        if out:
            self._write_control(out)
        core, execute, conn = self.edge.core, self.edge.execute, self.conn
        for event in events:
            kind = type(event)
            if kind is ws.Message:
                execute(core.received(conn, event.binary, event.payload))
            elif kind is ws.Pong:
                self.pong_received = True
            elif kind is ws.ProtocolFailed:
                # The protocol has queued the close frame: the core records why, the transport fails.
                logger.info("connection %s: %s; closing it with %d", conn.id, event.reason, event.code)
                # Failed, not closed: the worker hears now, not once the lingering close is over.
                execute(core.close(conn, event.code, event.reason, fail=True, release=True))
                self._fail()
                return
            if self._failing:
                return  # a limit failed the connection: the rest of its input goes unread
        if protocol.close_expected():
            self._close_when_flushed()

    def eof_received(self) -> bool:
        """The client half-closed: the transport closes, and connection_lost records how it ended."""
        return False

    # -- writing ----------------------------------------------------------------------

    def deliver(self, binary: bool, payload: bytes, position: Position | None = None) -> None:
        """Write one message from a worker; text payloads are UTF-8 already.

        A client that asked for positions gets every message in the envelope
        of docs/protocol.rst; any other client, the payload alone.
        """
        if self.conn.positions is not None:
            payload = envelope(position, payload)
        frame = self.protocol.send_message(binary, payload)
        if frame:
            unflushed = self._unflushed
            if unflushed is None:
                self._unflushed = [frame]
                self.edge.unflushed(self)
            else:
                unflushed.append(frame)

    def flush(self) -> None:
        """Write the data frames gathered since the last flush, in one write."""
        frames, self._unflushed = self._unflushed, None
        if frames:
            self._write_data(frames[0] if len(frames) == 1 else b"".join(frames))

    def _write_data(self, data: bytes) -> None:
        """Write data frames, unless the client lets WS_MAX_BUFFER_SIZE bytes pile up (then 1008).

        One message bigger than the whole limit, for a client that has read
        everything else, goes out: refusing it would punish a reader.
        """
        transport = self.transport
        limit = self.edge.max_buffer_size
        if limit:
            waiting = transport.get_write_buffer_size()
            if waiting and waiting + len(data) > limit:
                self._not_reading()
                return
        if not transport.is_closing():
            transport.write(data)

    def _write_control(self, frames: bytes) -> None:
        """Write control frames (pongs, close): small, so they pass the write-buffer limit.

        Data frames gathered before them go first: a close frame is the last thing a client reads.
        """
        if self._unflushed:
            self.flush()
        transport = self.transport
        if not transport.is_closing():
            transport.write(frames)

    def _not_reading(self) -> None:
        """The client has let WS_MAX_BUFFER_SIZE bytes pile up: end it with 1008.

        The close frame waits behind what is buffered; the TCP connection is
        dropped if the client has not answered within CLOSE_TIMEOUT. The
        worker hears at once, so its handler's next send raises
        ConnectionClosed instead of feeding a buffer nobody reads.
        """
        logger.warning("connection %s: the client stopped reading (over %s bytes wait for it); closing it with 1008",
                       self.conn.id, self.edge.max_buffer_size)
        self.edge.execute(self.edge.core.close(self.conn, CloseCode.POLICY_VIOLATION, "client not reading",
                                               release=True))

    # -- closing ----------------------------------------------------------------------

    def close(self, code: int, reason: str, fail: bool = False) -> None:
        """Start the close handshake with ``code`` (the core's CloseClient); ``fail``: do not wait for the client."""
        frame = self.protocol.send_close(code, reason)
        if frame:
            self._write_control(frame)
        if fail:
            self._fail()
        elif self._closer is None and not self.transport.is_closing():
            self._closer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.transport.abort)

    def abort(self) -> None:
        """Drop the TCP connection now (a shutdown whose clients did not answer in time)."""
        self.transport.abort()

    def _fail(self) -> None:
        """Fail the connection (RFC 6455 7.1.7): the close frame goes out, the client's input is discarded unread.

        Closing a socket with unread input answers with a TCP reset, which may
        destroy the close frame before the client reads it (it would see 1006,
        not 1009). So, as HTTP servers do, close lingering: finish writing,
        send FIN (write_eof), discard input until the client closes too
        (eof_received), or drop the connection after CLOSE_TIMEOUT.
        """
        if self._failing:
            return
        self._failing = True
        transport = self.transport
        if transport.is_closing():
            return
        if transport.can_write_eof():
            transport.write_eof()
        else:
            transport.close()
        if self._closer is not None:
            self._closer.cancel()
        self._closer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, transport.abort)

    def _close_when_flushed(self) -> None:
        """The close handshake is over: the server closes the TCP connection first (RFC 6455 7.1.1)."""
        self.transport.close()  # once what is buffered is written

    def ping(self) -> bool:
        """Keepalive: send a ping; False once the connection is ending."""
        frame = self.protocol.send_ping(b"")
        if not frame or self.transport.is_closing():
            return False
        self._write_control(frame)
        return True

    def keepalive_expired(self) -> None:
        """No pong within WS_PING_TIMEOUT: close with 1011 and drop the TCP connection without waiting."""
        logger.info("connection %s: no pong within the keepalive timeout; closing it with 1011", self.conn.id)
        self.edge.execute(self.edge.core.close(self.conn, CloseCode.INTERNAL_ERROR, "keepalive ping timeout",
                                               fail=True, release=True))

    def connection_lost(self, exc: Exception | None) -> None:
        """The TCP connection is closed, whoever closed it: the core records how it ended."""
        if self.keepalive is not None:
            self.keepalive.cancel()
            self.keepalive = None
        if self._closer is not None:
            self._closer.cancel()
            self._closer = None
        protocol = self.protocol
        received = protocol.close_received
        protocol.receive_eof()
        clean = received is not None and received[0] == CloseCode.NO_STATUS
        self.edge.execute(self.edge.core.closed(self.conn, received=None if clean else received, clean=clean))


