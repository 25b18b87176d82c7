"""The WebSocket transport: RFC 6455 over Tornado's HTTP server, as a thin adapter around the core.

Tornado serves the HTTP handshake (:class:`WebSocketHandshake`, a plain
``RequestHandler``); after the 101 the stream is detached from Tornado's HTTP
machinery and one :class:`WebSocketConnection` drives it: bytes read go to
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

#: Bytes asked of the stream per read: a whole batch of small frames at once.
READ_CHUNK = 65536
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
            self._upgrade(answer)
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

    def _upgrade(self, answer: Upgrade) -> None:
        """Answer 101, take the stream from Tornado's HTTP server and start the WebSocket connection."""
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
        WebSocketConnection(edge, conn, stream, protocol).start()


class WebSocketConnection:
    """One open WebSocket: its stream, its protocol state and its record in the core.

    An edge holds thousands of these, mostly idle, so it is small: slots, one
    pending read, no task of its own.
    """

    __slots__ = ("_closer", "_failing", "_unflushed", "conn", "edge", "keepalive", "pong_received", "protocol",
                 "stream")

    def __init__(self, edge: EdgeServices, conn: Connection, stream: tornado.iostream.IOStream,
                 protocol: ws.ServerProtocol):
        self.edge, self.conn, self.stream, self.protocol = edge, conn, stream, protocol
        self.pong_received = False
        self.keepalive: Watched | None = None
        self._closer: asyncio.TimerHandle | None = None
        self._failing = False
        #: Data frames waiting for the end of the edge's current execute() (see Edge.execute).
        self._unflushed: list[bytes] | None = None

    def start(self) -> None:
        stream = self.stream
        stream.set_nodelay(True)
        # What one client that does not read can make this process hold:
        # past it, deliver() closes the connection with 1008.
        tornado_compat.set_write_limit(stream, self.edge.max_buffer_size or None)
        stream.set_close_callback(self._ended)
        self.conn.transport = self
        self.edge.execute(self.edge.core.opened(self.conn))
        if self.conn.state is ConnectionState.OPEN:
            self.keepalive = self.edge.keepalive.watch(self)
        self._read()

    # -- reading ----------------------------------------------------------------------

    def _read(self) -> None:
        try:
            future = self.stream.read_bytes(READ_CHUNK, partial=True)
        except tornado.iostream.StreamClosedError:
            return  # _ended runs from the close callback
        future.add_done_callback(self._on_read)

    def _on_read(self, future: asyncio.Future) -> None:
        if future.cancelled() or future.exception() is not None:
            return  # the stream closed: _ended runs from its close callback
        protocol = self.protocol
        events = protocol.receive_data(future.result())
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
            return
        self._read()

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
            self._write(frames[0] if len(frames) == 1 else b"".join(frames))

    def _write(self, frame: bytes) -> None:
        stream = self.stream
        if not stream.writing() and not stream.closed():
            # Nothing buffered before it, so order allows it: one send() on the
            # socket, as IOStream.write would do first, without its Future,
            # its buffer bookkeeping and the loop callbacks that resolving the
            # Future schedules. What the kernel does not take (a slow reader),
            # and any error, go through IOStream.write below as before.
            try:
                sent = stream.socket.send(frame)
            except OSError:  # BlockingIOError, or a reset that IOStream.write reports and closes on
                sent = 0
            if sent == len(frame):
                return
            frame = frame[sent:]
        try:
            # Tornado references a failed write's exception itself (no "never retrieved" warning).
            stream.write(frame)
        except tornado.iostream.StreamClosedError:
            pass
        except tornado.iostream.StreamBufferFullError:
            self._buffer_full(frame)

    def _write_control(self, frames: bytes) -> None:
        """Write control frames (pongs, close): small, so they pass the write-buffer limit.

        Data frames gathered before them go first: a close frame is the last thing a client reads.
        """
        if self._unflushed:
            self.flush()
        stream = self.stream
        limit = tornado_compat.write_limit(stream)
        tornado_compat.set_write_limit(stream, None)
        try:
            self._write(frames)
        finally:
            tornado_compat.set_write_limit(stream, limit)

    def _buffer_full(self, frame: bytes) -> None:
        stream = self.stream
        if stream.writing():
            self._not_reading()
            return
        # One message bigger than the whole limit, for a client that has read
        # everything else: refusing it would punish a reader.
        self._write_control(frame)

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
        elif self._closer is None and not self.stream.closed():
            self._closer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.stream.close)

    def abort(self) -> None:
        """Drop the TCP connection now (a shutdown whose clients did not answer in time)."""
        self.stream.close()

    def _fail(self) -> None:
        """Fail the connection (RFC 6455 7.1.7): the close frame goes out, the client's input is discarded unread.

        Closing a socket with unread input answers with a TCP reset, which may
        destroy the close frame before the client reads it (it would see 1006,
        not 1009). So, as HTTP servers do, close lingering: finish writing,
        send FIN, read and discard until the client closes too, or
        CLOSE_TIMEOUT passes.
        """
        if not self._failing:
            self._failing = True
            asyncio.ensure_future(_close_lingering(self.stream))

    def _close_when_flushed(self) -> None:
        """The close handshake is over: the server closes the TCP connection first (RFC 6455 7.1.1)."""
        stream = self.stream
        try:
            stream.write(b"").add_done_callback(lambda _: stream.close())
        except tornado.iostream.StreamClosedError:
            pass

    def ping(self) -> bool:
        """Keepalive: send a ping; False once the connection is ending."""
        frame = self.protocol.send_ping(b"")
        if not frame or self.stream.closed():
            return False
        self._write_control(frame)
        return True

    def keepalive_expired(self) -> None:
        """No pong within WS_PING_TIMEOUT: close with 1011 and drop the TCP connection without waiting."""
        logger.info("connection %s: no pong within the keepalive timeout; closing it with 1011", self.conn.id)
        self.edge.execute(self.edge.core.close(self.conn, CloseCode.INTERNAL_ERROR, "keepalive ping timeout",
                                               fail=True, release=True))

    def _ended(self) -> None:
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


async def _close_lingering(stream: tornado.iostream.IOStream, timeout: float = CLOSE_TIMEOUT) -> None:
    """Write what is buffered, half-close, discard input until EOF or ``timeout``, close."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        await asyncio.wait_for(stream.write(b""), timeout)  # resolves once all before it is written
        if stream.closed():  # the client went first
            return
        stream.socket.shutdown(socket.SHUT_WR)
        while True:
            await asyncio.wait_for(stream.read_bytes(READ_CHUNK, partial=True), deadline - loop.time())
    except (tornado.iostream.StreamClosedError, asyncio.TimeoutError, OSError):  # noqa: UP041 (3.10)
        pass
    finally:
        stream.close()
