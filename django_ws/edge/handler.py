"""The Tornado side of one client connection."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import math
import socket
import sys
import time
import typing
from urllib.parse import unquote_plus

import tornado.httputil
import tornado.iostream
import tornado.web
import tornado.websocket

from django_ws import wire
from django_ws.conf import ws_settings
from django_ws.codes import CloseCode

from .bridge import AT_CAPACITY
from .limits import MessageLimits

if typing.TYPE_CHECKING:  # pragma: no cover
    from .app import Edge

logger = logging.getLogger("django_ws.edge")
access_log = logging.getLogger("tornado.access")


class EdgeWebSocketHandler(tornado.websocket.WebSocketHandler):
    """Holds one browser's WebSocket and relays it to the worker that took it.

    The handshake is decided before the upgrade: an unknown route gets 404,
    a request that is not a valid RFC 6455 handshake 400 or 426, a foreign
    Origin 403 and a full server 503, all without involving a worker; then a
    worker runs the handler's ``on_connect`` and answers Accept or Deny, so
    no frame can reach a handler that has not accepted its connection.
    """

    #: The two Data headers (text, binary) of this connection, set by the bridge on first use.
    data_headers: tuple[bytes, bytes] | None = None

    # An edge holds thousands of these, mostly idle: per connection memory is
    # what limits it. Our own state lives in slots (no dict entry each), and
    # once the connection is open _shed_handshake() drops what Tornado kept
    # for the HTTP exchange (see there).
    __slots__ = ("_close_received", "_close_sent", "_early_sends", "_groups", "_refuse_after_upgrade",
                 "_subprotocol", "bridge", "client_address", "conn_id", "edge", "limits", "released", "route",
                 "worker")

    def initialize(self, edge: Edge) -> None:
        # Whatever Tornado logs of this request (a failing callback, the
        # request summary of an open connection) shows no token.
        self.request.uri = redact_uri(self.request.uri)
        self.edge = edge
        #: The address whose per-address limits this connection counts in, until released.
        self.client_address: str | None = None
        #: Its budget of messages and bytes, made on its first message (see _within_limits).
        self.limits: MessageLimits | None = None
        self.bridge = edge.bridge
        self.conn_id: str | None = None
        self.route: str | None = None
        self.worker = None
        self._groups: set[str] | None = None
        self._early_sends: list[tuple[bool, bytes]] | None = None
        self.released = False
        self._subprotocol = ""
        self._refuse_after_upgrade: tuple[int, str] | None = None
        #: (code, reason) of a close this side started, set by _EdgeProtocol.
        self._close_sent: tuple[int, str] | None = None
        #: True once the client's close frame arrived, set by _EdgeProtocol.
        self._close_received = False

    @property
    def groups(self) -> set[str]:
        """The groups this connection is in (the bridge keeps the reverse index).

        Made on first use: most connections never join one.
        """
        if self._groups is None:
            self._groups = set()
        return self._groups

    @property
    def early_sends(self) -> list[tuple[bool, bytes]]:
        """What the handler sent from on_connect, written right after the upgrade."""
        if self._early_sends is None:
            self._early_sends = []
        return self._early_sends

    # -- handshake ---------------------------------------------------------------

    async def get(self, route: str | None = None, *args) -> None:
        route = route or ""
        if self.edge.mount.resolve(route) is None:
            self._refuse(404, "no websocket route here")
            return
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            await super().get(route)  # Tornado answers 400 and says why
            return
        invalid = self._invalid_handshake()
        if invalid:
            self._refuse(*invalid)
            return
        origin = self.request.headers.get("Origin") or self.request.headers.get("Sec-Websocket-Origin")
        if origin and not self.edge.origin_allowed(origin):
            self._refuse(403, "origin not allowed")
            return
        # Handshakes still waiting for a worker count too: a burst of them
        # must not carry the server past its limit.
        if self.edge.max_connections and (
            len(self.bridge.connections) + len(self.bridge.pending) >= self.edge.max_connections
        ):
            self._refuse(503, "too many connections")
            return
        limits = self.edge.address_limits
        if limits.enabled:
            # request.remote_ip is the proxy's view only with WS_TRUST_PROXY_HEADERS (Tornado's xheaders).
            address = self.request.remote_ip
            refusal = limits.admit(address, time.monotonic())
            if refusal is not None:
                self.bridge.stats.rate_limited[refusal.limit] += 1
                self.set_header("Retry-After", str(refusal.retry_after))
                self._refuse(429, "too many connections from this address" if refusal.limit == "concurrent"
                             else "too many new connections from this address")
                return
            # Released by bridge.release(), which every admitted handshake reaches (see finally).
            self.client_address = address
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
                self._refuse_after_upgrade = (CloseCode.TRY_AGAIN_LATER, "all workers at capacity")
                await super().get(route)
                return
            if isinstance(answer, wire.Deny):
                self._refuse(answer.status, answer.reason or "denied")
                return
            self._subprotocol = answer.subprotocol
            await super().get(route)
        finally:
            # After a refusal, or an upgrade that failed on Tornado's checks,
            # the worker must still learn that this connection is over. (One
            # upgraded only to be closed, with 1013 or 1012, is released by
            # on_close with that code: the frame loop outlives this method.)
            if self.conn_id not in self.bridge.connections and self._close_sent is None:
                self.bridge.release(self, CloseCode.ABNORMAL, "handshake not completed")

    def _invalid_handshake(self) -> tuple[int, str] | None:
        """What is wrong with the request as an RFC 6455 handshake, or None.

        Tornado would refuse these too, but only after a worker had run the
        handler's on_connect for nothing; here they never leave the edge.
        """
        headers = self.request.headers
        if "upgrade" not in (token.strip().lower() for token in headers.get("Connection", "").split(",")):
            return 400, 'the "Connection" header must include "Upgrade"'
        if headers.get("Sec-WebSocket-Version") != "13":
            self.set_header("Sec-WebSocket-Version", "13")
            return 426, "only WebSocket version 13 is supported"
        key = headers.get("Sec-WebSocket-Key", "")
        try:
            valid_key = len(base64.b64decode(key, validate=True)) == 16
        except (binascii.Error, ValueError):
            valid_key = False
        if not valid_key:
            return 400, "Sec-WebSocket-Key is missing or not 16 bytes in base64"
        if not headers.get("Host"):
            return 400, "the Host header is missing"
        return None

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

    def get_websocket_protocol(self):
        if self.request.headers.get("Sec-WebSocket-Version") != "13":
            return None
        # The same for every connection of this edge: made once, not per connection.
        params = self.edge.websocket_params
        if params is None:
            params = self.edge.websocket_params = tornado.websocket._WebSocketParams(
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                max_message_size=self.max_message_size,
                compression_options=self.get_compression_options(),
            )
        return _EdgeProtocol(self, False, params)

    # -- after the upgrade ---------------------------------------------------------

    # What every open connection has once _shed_handshake() has run: class
    # attributes, so its __dict__ does not carry them. (Until then, the
    # instance attributes RequestHandler and WebSocketHandler set hide these.)
    _status_code = 101
    _headers_written = True
    _finished = True
    _auto_finish = True
    _prepared_future = None
    close_code = None
    close_reason = None
    _on_close_called = False

    def _shed_handshake(self) -> None:
        """Drop what served the HTTP exchange, once the upgrade has succeeded.

        RequestHandler keeps the request (headers, HTTP1Connection, body and
        argument dicts), the response headers and buffers, the UI namespaces
        and the handshake's arguments; an open connection needs none of them,
        yet they would stay as long as it does. What Tornado reads from here
        on (ws_connection, the close fields, the status, log_exception's
        request summary) stays, in a dict rebuilt to its size. The response
        methods that _detach_stream() disabled still refuse to run (finish()
        and write() see ``_finished``), with another message.
        """
        state = self.__dict__
        kept = {name: state[name] for name in _KEPT_WHEN_OPEN if name in state}
        cls = type(self)
        for name in _DEFAULT_WHEN_OPEN:
            if name in state and state[name] != getattr(cls, name):
                kept[name] = state[name]
        request = state.get("request")
        if request is not None:
            kept["request"] = _OpenRequest(request)
        self.__dict__ = kept
        self._subprotocol = ""
        self._early_sends = None  # bridge.opened() has written them (or the connection closes on open)

    # -- connection ------------------------------------------------------------------

    def open(self, *args) -> None:
        self.set_nodelay(True)
        if self._refuse_after_upgrade:
            self.close(*self._refuse_after_upgrade)
            return
        # What one client that does not read can make this process hold:
        # past it, deliver() closes the connection with 1008.
        limit = int(ws_settings.WS_MAX_BUFFER_SIZE or 0)
        self.ws_connection.stream.max_write_buffer_size = limit or None
        self.bridge.opened(self)

    def on_message(self, message: str | bytes) -> None:
        if self._refuse_after_upgrade or self._close_sent is not None:
            return  # this side is closing: the handler must not see a gap, then more
        binary = isinstance(message, bytes)
        payload = message if binary else message.encode("utf-8")
        if self.edge.limit_settings.per_connection and not self._within_limits(len(payload)):
            return
        if not self.bridge.forward(self, binary, payload):
            self.close(
                CloseCode.SERVICE_RESTART if self.worker is None else CloseCode.TRY_AGAIN_LATER,
                "worker unavailable",
            )

    def _within_limits(self, size: int) -> bool:
        """Count one client message against WS_MESSAGES/BYTES_PER_CONNECTION; close with 1008 past them."""
        now = time.monotonic()
        limits = self.limits
        if limits is None:  # an idle connection never carries one
            limits = self.limits = MessageLimits(self.edge.limit_settings, now)
        broken = limits.allow(size, now)
        if broken is None:
            return True
        self.bridge.stats.rate_limited[broken] += 1
        reason = "message rate limit exceeded" if broken == "messages" else "byte rate limit exceeded"
        logger.info("connection %s: %s; closing it with 1008", self.conn_id, reason)
        self.close(CloseCode.POLICY_VIOLATION, reason)
        protocol = self.ws_connection
        if protocol is not None:
            # Fail the connection (RFC 6455, 7.1.7) rather than wait for the
            # client's close frame while parsing the rest of its flood frame
            # by frame: close lingering, which still delivers the close frame
            # but discards what arrives unread.
            protocol._linger = True
            protocol._abort()
        # The worker hears now, not when the client answers the close frame.
        self.bridge.release(self, CloseCode.POLICY_VIOLATION, reason)
        return False

    def deliver(self, binary: bool, payload: bytes) -> None:
        """Write one message from a worker; text payloads are UTF-8 already."""
        protocol = self.ws_connection
        if protocol is None or protocol.is_closing():
            return
        try:
            protocol.send_data(binary, payload)
        except tornado.iostream.StreamClosedError:
            pass
        except tornado.iostream.StreamBufferFullError:
            stream = protocol.stream
            if stream.writing():
                self._not_reading()
                return
            # One message bigger than the whole limit, for a client that has
            # read everything else: refusing it would punish a reader.
            with _unlimited(stream):
                protocol.send_data(binary, payload)

    def _not_reading(self) -> None:
        """The client has let WS_MAX_BUFFER_SIZE bytes pile up: end it with 1008.

        The close frame waits behind what is buffered; Tornado drops the TCP
        connection if the client has not answered it within a few seconds.
        The worker hears at once, so its handler's next send raises
        ConnectionClosed instead of feeding a buffer nobody reads.
        """
        logger.warning("connection %s: the client stopped reading (over %s bytes wait for it); closing it with 1008",
                       self.conn_id, ws_settings.WS_MAX_BUFFER_SIZE)
        self.close(CloseCode.POLICY_VIOLATION, "client not reading")
        self.bridge.release(self, CloseCode.POLICY_VIOLATION, "client not reading")

    def on_close(self) -> None:
        if self._close_sent is not None:  # this side started the close: say why
            code, reason = self._close_sent
        elif self.close_code is not None:
            code, reason = self.close_code, self.close_reason or ""
        elif self._close_received:
            code, reason = CloseCode.NO_STATUS, ""
        else:
            code, reason = CloseCode.ABNORMAL, "connection dropped without a close frame"
        self.bridge.release(self, code, reason)


#: What an open connection still reads from its __dict__ (see _shed_handshake).
_KEPT_WHEN_OPEN = ("application", "ws_connection", "data_headers")
#: Kept too when they differ from the class attribute an open connection would read.
_DEFAULT_WHEN_OPEN = ("_status_code", "_headers_written", "_finished", "_auto_finish", "_prepared_future",
                      "close_code", "close_reason", "_on_close_called")


def redact_uri(uri: str) -> str:
    """``uri`` with the value of the token query parameter (WS_TOKEN_QUERY_PARAM) replaced."""
    param = ws_settings.WS_TOKEN_QUERY_PARAM
    path, mark, query = uri.partition("?")
    if not param or not query:
        return uri
    # Compared decoded, as the worker's QueryDict reads them: "access%5Ftoken" is the same name.
    parts = [f"{key}=[redacted]" if unquote_plus(key) == param else part
             for part in query.split("&") for key in (part.split("=", 1)[0],)]
    return path + mark + "&".join(parts)


def log_request(handler: tornado.web.RequestHandler) -> None:
    """The edge's access log: Tornado's line, with any token redacted.

    429s are logged at INFO, not WARNING: a client over a rate limit is
    expected, counted in the stats, and would otherwise make the edge write a
    warning per refused handshake for anyone who cares to hammer it.
    """
    status = handler.get_status()
    if status < 400 or status == 429:
        log_method = access_log.info
    elif status < 500:
        log_method = access_log.warning
    else:
        log_method = access_log.error
    request = handler.request
    log_method("%d %s %s (%s) %.2fms", status, request.method, redact_uri(request.uri), request.remote_ip,
               1000.0 * request.request_time())


class _OpenRequest:
    """What an open connection keeps of its HTTPServerRequest.

    Tornado reads a handler's request after the upgrade only to log a failing
    callback (RequestHandler.log_exception: method, URI and client address).
    """

    __slots__ = ("method", "remote_ip", "uri")

    def __init__(self, request: tornado.httputil.HTTPServerRequest):
        self.method = sys.intern(request.method)  # "GET", one string for every connection
        self.uri = request.uri
        self.remote_ip = request.remote_ip

    def __repr__(self) -> str:
        return f"HTTPServerRequest(method={self.method!r}, uri={self.uri!r}, remote_ip={self.remote_ip!r})"


class _unlimited:
    """Lift a stream's write-buffer limit for the writes inside ``with``."""

    def __init__(self, stream: tornado.iostream.IOStream):
        self.stream = stream

    def __enter__(self) -> None:
        self.limit, self.stream.max_write_buffer_size = self.stream.max_write_buffer_size, None

    def __exit__(self, *exc) -> None:
        self.stream.max_write_buffer_size = self.limit


class _EdgeProtocol(tornado.websocket.WebSocketProtocol13):
    """Tornado's RFC 6455 protocol, closing with a code where Tornado has none.

    Tornado drops the TCP connection on a text frame that is not UTF-8, or a
    close frame whose reason is not; RFC 6455 (8.1) says fail it with 1007,
    which a browser's CloseEvent then shows. Control frames (close, ping,
    pong: small, and few since Tornado keeps one pong waiting at most) pass
    the write-buffer limit, so only data frames from ``deliver`` can hit it
    and a close frame can always be queued. The code of a close this side
    starts is kept for ``on_close``, which otherwise only knows the client's.

    This overrides private methods of WebSocketProtocol13 (Tornado 6.x).
    """

    handler: EdgeWebSocketHandler

    def _handle_message(self, opcode: int, data: bytes):
        if self.client_terminated or self._frame_compressed:
            return super()._handle_message(opcode, data)
        if opcode == 0x1:
            self._message_bytes_in += len(data)
            try:
                decoded = data.decode("utf-8")
            except UnicodeDecodeError:
                self._fail(CloseCode.INVALID_DATA, "text frame is not valid UTF-8")
                return None
            return self._run_callback(self.handler.on_message, decoded)
        if opcode == 0x8:
            try:
                data[2:].decode("utf-8")
            except UnicodeDecodeError:
                self._fail(CloseCode.INVALID_DATA, "close reason is not valid UTF-8")
                return None
            self.handler._close_received = True
        return super()._handle_message(opcode, data)

    def _fail(self, code: int, reason: str) -> None:
        logger.info("connection %s: %s; closing it with %d", self.handler.conn_id, reason, code)
        self.close(code, reason)
        self._abort()

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if not (self.server_terminated or self.client_terminated):
            if code is None:  # what Tornado puts in the frame
                code = CloseCode.NORMAL if reason is not None else CloseCode.NO_STATUS
            self.handler._close_sent = (int(code), reason or "")
            # Tornado follows these two with _abort() at once, the client possibly still sending.
            self._linger = code in (CloseCode.INVALID_DATA, CloseCode.MESSAGE_TOO_BIG)
        super().close(code if code != CloseCode.NO_STATUS else None, reason)

    _linger = False
    _lingering = False

    def _abort(self) -> None:
        stream = self.stream
        if self._lingering and not stream.closed():
            return  # the end of the receive loop calls this again; _close_lingering closes
        if not self._linger or stream is None or stream.closed():
            return super()._abort()
        # Closing a socket with unread input (the rest of a message too big)
        # answers with a TCP reset, and a reset may destroy the close frame
        # before the client reads it: it would see 1006, not 1009. So, as
        # HTTP servers do, close lingering: finish writing, send FIN, and
        # read and discard until the client closes too, or 5 seconds pass.
        self._linger, self._lingering = False, True
        self.client_terminated = self.server_terminated = True
        if self._waiting is not None:
            stream.io_loop.remove_timeout(self._waiting)
            self._waiting = None
        if self._ping_coroutine:
            self._ping_coroutine.cancel()
            self._ping_coroutine = None
        asyncio.ensure_future(_close_lingering(stream))

    async def _receive_frame_loop(self) -> None:
        """Start reading frames in a task of their own, and return at once.

        Tornado calls this at the end of a handshake that succeeded (the 101
        is written, ``open()`` has run), so the handler sheds its HTTP state
        here. Tornado awaits it there: the whole chain that served the HTTP
        request (RequestHandler._execute, get(), accept_connection(), each a
        suspended coroutine, and their task) would stay alive for as long as
        the connection is open. Run apart, the frame loop is all that stays;
        like Tornado's task for _execute, its task is held by the read it
        waits on (the stream's future, the stream by the I/O loop).
        """
        self.handler._shed_handshake()
        asyncio.ensure_future(super()._receive_frame_loop())

    def start_pinging(self) -> None:
        """Keepalive from the edge's one timer (see Keepalive), not a task per connection."""
        if self._ping_coroutine is None and self.ping_interval > 0:
            self._ping_coroutine = self.handler.edge.keepalive.watch(self)

    def send_data(self, binary: bool, payload: bytes) -> None:
        """``write_message`` for the edge's hot path: the same frame, without its Task.

        Tornado's write_message wraps every write in a coroutine and a Task,
        so that a caller may await it; the edge never does (its flow control
        is the write-buffer limit), and that Task cost more than the write
        itself: a loop callback per message on the busiest path there is.
        The stream's own write future still swallows a late failure.
        Raises StreamClosedError or StreamBufferFullError like the write.
        """
        flags = 0
        if self._compressor:
            payload = self._compressor.compress(payload)
            flags |= self.RSV1
        self._message_bytes_out += len(payload)
        self._write_frame(True, 0x2 if binary else 0x1, payload, flags=flags)

    def _write_frame(self, fin: bool, opcode: int, data: bytes, flags: int = 0):
        if opcode & 0x8 and self.stream.max_write_buffer_size is not None:
            with _unlimited(self.stream):
                return super()._write_frame(fin, opcode, data, flags)
        return super()._write_frame(fin, opcode, data, flags)


async def _close_lingering(stream: tornado.iostream.IOStream, timeout: float = 5.0) -> None:
    """Write what is buffered, half-close, discard input until EOF or ``timeout``, close."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        await asyncio.wait_for(stream.write(b""), timeout)  # resolves once all before it is written
        if stream.closed():  # the client went first
            return
        stream.socket.shutdown(socket.SHUT_WR)
        while True:
            await asyncio.wait_for(stream.read_bytes(65536, partial=True), deadline - loop.time())
    except (tornado.iostream.StreamClosedError, asyncio.TimeoutError, OSError):  # noqa: UP041 (3.10)
        pass
    finally:
        stream.close()


class Keepalive:
    """Pings the open connections of one edge, all from one timer.

    Tornado gives each connection a task that sleeps, pings, sleeps again and
    checks for the pong: a task, a coroutine, a future and a timer handle,
    about a kilobyte per idle connection. This keeps Tornado's schedule (the
    first ping ``ping_interval`` after the upgrade, then one every
    ``ping_interval``; no pong within ``ping_timeout`` closes the connection
    with "ping timed out") with one small record per connection, kept in
    buckets of ``resolution`` seconds that one timer serves: a ping or a
    check may come up to that much later than Tornado's would.

    Every connection of an edge has the same interval and timeout (the
    application's settings); the first connection's are used.
    """

    def __init__(self):
        self.interval = self.timeout = self.resolution = 0.0
        self._buckets: dict[int, set[_Pinged]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_bucket: int | None = None

    def watch(self, protocol: _EdgeProtocol) -> _Pinged:
        """Start pinging ``protocol``; the record's ``cancel()`` stops it."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self.interval, self.timeout = protocol.ping_interval, protocol.ping_timeout
            self.resolution = min(1.0, self.interval / 4, (self.timeout or self.interval) / 4)
        record = _Pinged(self, protocol)
        self._put(record, self._loop.time() + self.interval)
        return record

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._buckets.values())

    def _put(self, record: _Pinged, when: float) -> None:
        key = record.bucket = math.ceil(when / self.resolution)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = set()
        bucket.add(record)
        if self._timer_bucket is None or key < self._timer_bucket:
            self._arm(key)

    def _remove(self, record: _Pinged) -> None:
        bucket = self._buckets.get(record.bucket)
        if bucket is not None:
            bucket.discard(record)
            if not bucket:
                del self._buckets[record.bucket]

    def _arm(self, key: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_bucket = key
        self._timer = self._loop.call_at(key * self.resolution, self._run)

    def _run(self) -> None:
        self._timer = self._timer_bucket = None
        now = self._loop.time()
        for key in sorted(k for k in self._buckets if k * self.resolution <= now):
            for record in self._buckets.pop(key, ()):
                if record.protocol is not None:
                    try:
                        self._due(record, now)
                    except Exception:  # one connection's failure must not unschedule the others
                        logger.exception("keepalive failed for a connection; closing it")
                        record.protocol._abort()
        if self._buckets:
            first = min(self._buckets)
            if self._timer_bucket is None or first < self._timer_bucket:
                self._arm(first)

    def _due(self, record: _Pinged, now: float) -> None:
        protocol = record.protocol
        if record.ping_time is not None:  # a ping is out: was it answered in time?
            if self.timeout > 0 and not protocol._received_pong:
                protocol.close(reason="ping timed out")  # cancels the record
                return
            next_ping, record.ping_time = record.ping_time + self.interval, None
            if next_ping > now:
                self._put(record, next_ping)
                return
        protocol._received_pong = False
        record.ping_time = now
        try:
            protocol.write_ping(b"")
        except tornado.iostream.StreamClosedError:
            return  # the connection is ending: its frame loop sees to it
        self._put(record, now + self.timeout)


class _Pinged:
    """One connection that Keepalive pings; Tornado calls ``cancel()`` when it closes."""

    __slots__ = ("bucket", "keepalive", "ping_time", "protocol")

    def __init__(self, keepalive: Keepalive, protocol: _EdgeProtocol):
        self.keepalive, self.protocol = keepalive, protocol
        self.bucket = 0
        self.ping_time: float | None = None  # when the ping now awaiting its pong was sent

    def cancel(self) -> None:
        if self.protocol is not None:
            self.protocol = None
            self.keepalive._remove(self)
