"""The server side of RFC 6455 (and RFC 7692's permessage-deflate) without I/O.

One :class:`ServerProtocol` per connection turns the bytes a client sent into
events, and the messages the server sends into bytes; it reads no socket and
starts no timer, so that any transport can drive it and a test can check it
on bytes alone (the shape of the ``websockets`` library's protocol.py, of
wsproto and of h11). It imports only the standard library.

The interface::

    protocol = ServerProtocol(max_message_size, deflate=None, mask=apply_mask)

    protocol.receive_data(data) -> list[Event]   # what the client sent
    protocol.data_to_send() -> bytes             # what the protocol queued itself:
                                                 # pongs, the close reply, close frames for errors
    protocol.receive_eof() -> None               # the client's TCP half-close or reset
    protocol.send_message(binary, payload) -> bytes
    protocol.send_ping(payload=b"") -> bytes
    protocol.send_close(code, reason="") -> bytes
    protocol.close_expected() -> bool            # time to close the TCP connection
    protocol.state, protocol.close_sent, protocol.close_received

The events are :class:`Message`, :class:`Ping`, :class:`Pong`,
:class:`CloseReceived` and :class:`ProtocolFailed`.

A transport adapter's loop, for each read from its socket::

    events = protocol.receive_data(data)
    write(protocol.data_to_send())     # first: a pong or a close reply goes out at once
    ... handle events (forward Message, log ProtocolFailed, ...)
    if protocol.close_expected():
        close the TCP connection (once the write above is flushed)

What stays with the adapter, since the protocol has no clock and no socket:
a timeout on the closing handshake (after ``send_close`` the state stays
CLOSING until the client answers); closing "lingering" after a failure
(shut down writing, then read and discard until EOF or a few seconds: a
socket closed with unread input, such as the rest of a message too big,
sends a TCP reset that can destroy the close frame before the client reads
it); calling ``data_to_send()`` after ``send_*`` is not needed (those return
their bytes), but after every ``receive_data``.

For the handshake (:mod:`django_ws.edge.handshake`, re-exported here):
:func:`invalid_handshake` checks the client's request,
:func:`accept_key` answers its ``Sec-WebSocket-Key``, and
:func:`django_ws.edge.deflate.negotiate_deflate` its
``Sec-WebSocket-Extensions`` (permessage-deflate, RFC 7692, has a module of
its own: :mod:`django_ws.edge.deflate`).

The rules it applies on input, each failure answered with a close frame
with the code shown and then the end of the connection:

- 1002 (protocol error): a frame without the client's mask; reserved bits
  set (RSV1 is allowed only on the first frame of a message, and only when
  permessage-deflate was negotiated; RSV2 and RSV3 never); a reserved opcode
  (3-7, 0xB-0xF); a control frame over 125 bytes, or fragmented; a
  continuation frame with no message to continue; a new data frame while a
  fragmented message is open; a 64-bit length with its top bit set; a close
  frame with a 1-byte payload or an invalid close code.
- 1007 (invalid data): a close reason that is not UTF-8; a text message that
  is not UTF-8, failed as soon as the invalid bytes arrive: at the fragment
  that holds them, and inside a frame at the read that brings them, before
  the rest of the frame (a code point split across fragments or reads is fine
  until its next bytes prove it invalid; a compressed message is checked as
  it inflates, frame by frame); a compressed message that does not inflate.
- 1009 (too big): a message over ``max_message_size`` after reassembly and
  after inflation, refused from the frame header before the excess is
  buffered, and inflated at most one byte past the limit.

Valid close codes are 1000-1003, 1007-1014 and 3000-4999. 1012 (service
restart), 1013 (try again later) and 1014 (bad gateway) were registered
with IANA after RFC 6455 and this server sends 1012 and 1013 itself, so it
accepts them from clients too. A valid close frame is answered with a close
frame carrying the same code (an empty one with an empty one) and gives a
:class:`CloseReceived` event. Pings are answered with pongs carrying the same
payload at once, also between the fragments of a message; pongs are
reported as :class:`Pong` events and need no answer.

After the close handshake or a failure the protocol ignores further input,
and ``send_*`` return ``b""``: nothing may follow a close frame.
"""

from __future__ import annotations

import codecs
import enum
import struct
import typing
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from django_ws.codes import is_valid_close_code

from .deflate import compress, inflate
from .handshake import accept_key, invalid_handshake

if typing.TYPE_CHECKING:  # pragma: no cover
    from .deflate import DeflateParams

__all__ = ["CloseReceived", "Event", "Message", "Ping", "Pong", "ProtocolFailed", "ProtocolState", "ServerProtocol",
           "accept_key", "apply_mask", "invalid_handshake", "is_valid_close_code"]

_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_FIN, _RSV1, _RSV_ALL, _MASKED = 0x80, 0x40, 0x70, 0x80

_pack_short = struct.Struct("!BB").pack
_pack_medium = struct.Struct("!BBH").pack
_pack_long = struct.Struct("!BBQ").pack
_unpack_medium = struct.Struct("!H").unpack_from
_unpack_long = struct.Struct("!Q").unpack_from

_utf8_decoder = codecs.getincrementaldecoder("utf-8")


def apply_mask(mask: bytes, data: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated (RFC 6455 5.3).

    The argument order is that of ``tornado.speedups.websocket_mask``, the C
    version an adapter may pass to :class:`ServerProtocol` instead. One big
    integer XOR: a few hundred MB/s, against a few MB/s for a loop in Python.
    """
    size = len(data)
    if not size:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


class ProtocolState(enum.Enum):
    """Where a connection is in its life, as far as the WebSocket protocol goes."""

    OPEN = 1  #: messages flow both ways
    CLOSING = 2  #: this side sent a close frame and waits for the peer's
    CLOSED = 3  #: the close handshake is over, the connection failed, or the TCP connection ended


_OPEN, _CLOSING, _CLOSED = ProtocolState.OPEN, ProtocolState.CLOSING, ProtocolState.CLOSED


@dataclass(frozen=True, slots=True)
class Message:
    """A whole data message from the client; a text one was checked to be UTF-8 (it stays bytes)."""

    binary: bool
    payload: bytes


@dataclass(frozen=True, slots=True)
class Ping:
    """A ping from the client; its pong is already queued in ``data_to_send()``."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    """A pong from the client (an answer to a ping, or unsolicited)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class CloseReceived:
    """The client's valid close frame; 1005 and ``""`` stand for an empty one.

    If this side had not sent a close frame yet, the reply is queued in
    ``data_to_send()``.
    """

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class ProtocolFailed:
    """The client broke the protocol; a close frame with ``code`` is queued in ``data_to_send()``.

    (Unless this side had already sent its close frame: then none can follow,
    and the connection just ends.)
    """

    code: int
    reason: str


Event = Message | Ping | Pong | CloseReceived | ProtocolFailed


# ---------------------------------------------------------------------------
# Frames


def _frame(first: int, payload: bytes) -> bytes:
    """A server frame (never masked): ``first`` is FIN, RSV and opcode."""
    size = len(payload)
    if size < 126:
        return _pack_short(first, size) + payload
    if size < 65536:
        return _pack_medium(first, 126, size) + payload
    return _pack_long(first, 127, size) + payload


class _LastFrame:
    """The frame of the last uncompressed message encoded, by the identity of its payload.

    A group message reaches every member with the same payload object: its
    frame is built once and written to all (the members' protocols compress
    nothing). The payload is kept referenced, so its identity cannot be
    reused by another object while it is remembered; one message at most.
    """

    __slots__ = ("first", "frame", "payload")

    def __init__(self) -> None:
        self.payload: bytes | None = None
        self.first = 0
        self.frame = b""

    def frame_of(self, first: int, payload: bytes) -> bytes:
        if payload is self.payload and first == self.first:
            return self.frame
        frame = _frame(first, payload)
        self.payload, self.first, self.frame = payload, first, frame
        return frame


_last_frame = _LastFrame()


def _close_payload(code: int, reason: str) -> bytes:
    """A close frame's payload; the reason is cut (on a character boundary) to fit 125 bytes."""
    encoded = reason.encode("utf-8")
    if len(encoded) > 123:
        encoded = encoded[:123].decode("utf-8", "ignore").encode("utf-8")
    return code.to_bytes(2, "big") + encoded


class ServerProtocol:
    """One connection's WebSocket protocol, server side, with no I/O (see the module docstring).

    ``max_message_size`` bounds a message (after reassembly and inflation)
    in bytes; ``deflate`` is what :func:`~django_ws.edge.deflate.negotiate_deflate` agreed, or None;
    ``mask(mask4, data)`` unmasks client frames (``tornado.speedups.websocket_mask``
    is a faster one).

    An idle connection holds this object and nothing else: the buffers of a
    partial frame or message, the UTF-8 decoder of a text message that comes
    in several frames or reads, and zlib's state exist only while they are
    needed (zlib's state between messages only with context takeover).
    """

    __slots__ = ("_buffer", "_checked", "_close_received", "_close_sent", "_decoder", "_deflate", "_deflater",
                 "_inflater", "_mask", "_max_size", "_message", "_out", "_parts", "_size", "_state", "_wire")

    def __init__(self, max_message_size: int, deflate: DeflateParams | None = None,
                 mask: Callable[[bytes, bytes], bytes] = apply_mask):
        self._max_size = max_message_size
        self._deflate = deflate
        self._mask = mask
        self._state = _OPEN
        self._buffer: bytes | bytearray = b""  # the start of a frame not complete yet
        self._out: list[bytes] | None = None  # frames the protocol queued itself (a list: a ping flood stays linear)
        self._close_sent: tuple[int, str] | None = None
        self._close_received: tuple[int, str] | None = None
        # The fragmented message being received: the first byte of its first
        # frame (opcode and RSV1), 0 when there is none.
        self._message = 0
        self._parts: list[bytes] | None = None
        self._size = 0  # its bytes so far (inflated)
        self._wire = 0  # its bytes so far on the wire, when compressed
        self._decoder = None  # UTF-8 check of a text message, from its first non-ASCII bytes
        # The payload bytes of the frame not complete yet that the UTF-8 check
        # has seen already (a text frame arriving in several reads).
        self._checked = 0
        self._inflater = None
        self._deflater = None

    @property
    def state(self) -> ProtocolState:
        """OPEN, CLOSING (this side sent a close frame and waits) or CLOSED."""
        return self._state

    @property
    def close_sent(self) -> tuple[int, str] | None:
        """The (code, reason) of the close frame this side sent or queued; (1005, "") for an empty one."""
        return self._close_sent

    @property
    def close_received(self) -> tuple[int, str] | None:
        """The (code, reason) of the client's valid close frame; None if none came (1006 for a close)."""
        return self._close_received

    def close_expected(self) -> bool:
        """Whether the TCP connection should now be closed: CLOSED, with everything queued taken.

        The adapter closes it once what it wrote last is flushed (RFC 6455
        7.1.1: the server closes TCP first).
        """
        return self._state is _CLOSED and not self._out

    def data_to_send(self) -> bytes:
        """The frames the protocol queued itself (pongs, close frames), once; ``b""`` if none."""
        out, self._out = self._out, None
        return b"".join(out) if out else b""

    # -- output --------------------------------------------------------------

    def send_message(self, binary: bool, payload: bytes) -> bytes:
        """The frame of one data message (text ``payload`` is UTF-8 already), compressed if agreed.

        ``b""`` once a close frame was sent or received.
        """
        if self._state is not _OPEN:
            return b""
        first = 0x82 if binary else 0x81
        deflate = self._deflate
        if deflate is not None and len(payload) >= deflate.min_size:
            payload, self._deflater = compress(payload, deflate, self._deflater)
            return _frame(first | _RSV1, payload)
        return _last_frame.frame_of(first, payload)

    def send_ping(self, payload: bytes = b"") -> bytes:
        """A ping frame; ``b""`` once a close frame was sent or received. At most 125 bytes."""
        if len(payload) > 125:
            raise ValueError(f"a ping's payload is at most 125 bytes, not {len(payload)}")
        if self._state is not _OPEN:
            return b""
        return _frame(0x80 | _PING, payload)

    def send_close(self, code: int, reason: str = "") -> bytes:
        """The close frame that starts the closing handshake; the state becomes CLOSING.

        ``code`` 1005 sends an empty close frame; ``reason`` is cut to fit the
        frame (123 bytes of UTF-8). ``b""`` if a close frame was already sent
        or received. Raises ValueError for a code that may not be sent.
        """
        if code != 1005 and not is_valid_close_code(code):
            raise ValueError(f"close code {code} may not be sent in a close frame")
        if self._state is not _OPEN:
            return b""
        self._state = _CLOSING
        if code == 1005:
            self._close_sent = (1005, "")
            return _frame(0x80 | _CLOSE, b"")
        payload = _close_payload(code, reason)
        self._close_sent = (code, payload[2:].decode("utf-8"))
        return _frame(0x80 | _CLOSE, payload)

    # -- input ---------------------------------------------------------------

    def receive_eof(self) -> None:
        """The client's TCP connection ended (a clean close if ``close_received`` is set, else 1006)."""
        self._state = _CLOSED
        self._release()

    def receive_data(self, data: bytes) -> list[Event]:
        """The events in ``data``, the next bytes from the client; a partial frame waits for the rest."""
        if self._state is _CLOSED or not data:
            return []
        buf = self._buffer
        if buf:
            buf += data  # a bytearray, extended in place
        else:
            buf = data
        events: list[Event] = []
        end = len(buf)
        pos = 0
        mask = self._mask
        while end - pos >= 2:
            first = buf[pos]
            second = buf[pos + 1]
            error = self._check_header(first, second)
            if error is not None:
                self._fail(*error, events)
                break
            length = second & 0x7F
            if length < 126:
                start = pos + 6
            elif length == 126:
                start = pos + 8
                if end < start:
                    break
                length = _unpack_medium(buf, pos + 2)[0]
            else:
                start = pos + 14
                if end < start:
                    break
                length = _unpack_long(buf, pos + 2)[0]
                if length >> 63:
                    self._fail(1002, "frame length with its most significant bit set", events)
                    break
            if first & 0x08 == 0:  # a data frame: its size is checked before its payload is read
                error = self._check_size(first, length)
                if error is not None:
                    self._fail(*error, events)
                    break
            stop = start + length
            if end < stop:
                if end > start and not first & 0x08:
                    # Not the common case (a frame in one read): fail a text
                    # frame on the read with the invalid bytes, not its last.
                    self._check_partial(first, buf, start, end, events)
                break
            if type(buf) is bytes:
                key = buf[start - 4:start]
                payload = mask(key, buf[start:stop]) if length else b""
            else:
                view = memoryview(buf)
                key = bytes(view[start - 4:start])
                payload = mask(key, bytes(view[start:stop])) if length else b""
                view.release()
            pos = stop
            if first & 0x08:
                self._receive_control(first & 0x0F, payload, events)
            else:
                self._receive_data_frame(first, payload, events)
            if self._state is _CLOSED:
                break
        if self._state is _CLOSED or pos == end:
            self._buffer = b""
        elif buf is data:
            self._buffer = bytearray(memoryview(data)[pos:])
        else:
            del buf[:pos]
            self._buffer = buf
        return events

    def _check_header(self, first: int, second: int) -> tuple[int, str] | None:
        """What is wrong with a frame's first two bytes, as (close code, reason), or None."""
        if not second & _MASKED:
            return 1002, "client frame not masked"
        opcode = first & 0x0F
        rsv = first & _RSV_ALL
        if opcode & 0x08:
            if opcode > _PONG:
                return 1002, f"reserved opcode {opcode:#x}"
            if not first & _FIN:
                return 1002, "fragmented control frame"
            if rsv:
                return 1002, "reserved bits set on a control frame"
            if (second & 0x7F) > 125:
                return 1002, "control frame over 125 bytes"
            return None
        if opcode > _BINARY:
            return 1002, f"reserved opcode {opcode:#x}"
        if opcode == _CONTINUATION:
            if not self._message:
                return 1002, "continuation frame with no message to continue"
            if rsv:
                return 1002, "reserved bits set on a continuation frame"
            return None
        if self._message:
            return 1002, "new data frame inside a fragmented message"
        if rsv and (rsv != _RSV1 or self._deflate is None):
            return 1002, "reserved bits set without an extension that defines them"
        return None

    def _check_size(self, first: int, length: int) -> tuple[int, str] | None:
        """Refuse a data frame that would carry its message over the limit, from its header alone."""
        if first & 0x0F:
            compressed, so_far = first & _RSV1, 0
        else:
            compressed = self._message & _RSV1
            so_far = self._wire if compressed else self._size
        limit = self._max_size
        if compressed:
            # Compressed data may be a little larger than what it inflates
            # to (zlib's deflateBound: about 1/4096 more, plus a few bytes);
            # what it inflates to is checked while inflating.
            limit += (limit >> 10) + 64
        if so_far + length > limit:
            return 1009, f"message over {self._max_size} bytes"
        return None

    def _check_partial(self, first: int, buf: bytes | bytearray, start: int, end: int, events: list[Event]) -> None:
        """Check the bytes so far of an incomplete uncompressed text frame's payload (``buf[start:end]``).

        Only the bytes no earlier read brought are unmasked and decoded, so a
        frame in many reads costs one pass over its payload in all; the
        decoder keeps a code point cut at ``end`` until its next bytes come.
        A compressed frame waits to be whole: it is checked once inflated.
        """
        kind = first if first & 0x0F else self._message  # a continuation: what its message is
        if kind & (_RSV1 | 0x0F) != _TEXT:
            return
        checked = self._checked
        new = start + checked
        if new >= end:
            return
        key = bytes(buf[start - 4:start])
        if checked & 3:  # the mask goes on from where the last read stopped
            key = key[checked & 3:] + key[:checked & 3]
        chunk = self._mask(key, bytes(buf[new:end]))
        self._checked = end - start
        decoder = self._decoder
        if decoder is None:
            if chunk.isascii():
                return  # no code point can be left half-read: no decoder yet
            decoder = self._decoder = _utf8_decoder()
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError:
            self._fail(1007, "text message is not valid UTF-8", events)

    def _receive_data_frame(self, first: int, payload: bytes, events: list[Event]) -> None:
        opcode = first & 0x0F
        fin = first & _FIN
        checked = self._checked  # the start of the payload checked already, read by read
        if checked:
            self._checked = 0
        if opcode:
            if fin and not first & _RSV1 and not checked:  # a whole message in one frame and one read: the common case
                if opcode == _TEXT and not payload.isascii():
                    try:
                        payload.decode("utf-8")
                    except UnicodeDecodeError:
                        self._fail(1007, "text message is not valid UTF-8", events)
                        return
                events.append(Message(opcode == _BINARY, payload))
                return
            self._message = first
            self._parts = []
            self._size = self._wire = 0
        message = self._message
        if message & _RSV1:
            self._wire += len(payload)
            payload = self._inflate(payload, fin, events)
            if payload is None:
                return
        self._size += len(payload)
        if message & 0x0F == _TEXT and (self._decoder is not None or not payload.isascii()):
            # Only the bytes since the first non-ASCII ones need the
            # decoder: before them, no code point can be left half-read.
            if self._decoder is None:
                self._decoder = _utf8_decoder()
            try:
                self._decoder.decode(payload[checked:] if checked else payload, bool(fin))
            except UnicodeDecodeError:
                self._fail(1007, "text message is not valid UTF-8", events)
                return
        parts = self._parts
        parts.append(payload)
        if fin:
            self._message = 0
            self._parts = self._decoder = None
            events.append(Message(message & 0x0F == _BINARY, b"".join(parts)))

    def _inflate(self, payload: bytes, fin: int, events: list[Event]) -> bytes | None:
        """Inflate a compressed message's frame, at most to the size left under the limit, or fail."""
        room = self._max_size - self._size
        try:
            data, self._inflater = inflate(payload, bool(fin), room, self._deflate, self._inflater)
        except zlib.error:
            self._fail(1007, "compressed message does not inflate", events)
            return None
        if len(data) > room:
            self._fail(1009, f"message over {self._max_size} bytes", events)
            return None
        return data

    def _receive_control(self, opcode: int, payload: bytes, events: list[Event]) -> None:
        if opcode == _PING:
            if self._state is _OPEN:
                self._queue(_frame(0x80 | _PONG, payload))
            events.append(Ping(payload))
        elif opcode == _PONG:
            events.append(Pong(payload))
        else:
            self._receive_close(payload, events)

    def _receive_close(self, payload: bytes, events: list[Event]) -> None:
        if not payload:
            code, reason = 1005, ""
        elif len(payload) == 1:
            self._fail(1002, "close frame with a 1-byte payload", events)
            return
        else:
            code = int.from_bytes(payload[:2], "big")
            if not is_valid_close_code(code):
                self._fail(1002, f"invalid close code {code}", events)
                return
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                self._fail(1007, "close reason is not valid UTF-8", events)
                return
        self._close_received = (code, reason)
        if self._state is _OPEN:
            # RFC 6455 5.5.1: the reply typically echoes the status code.
            self._queue(_frame(0x80 | _CLOSE, payload[:2]))
            self._close_sent = (code, "")
        self._state = _CLOSED
        self._release()
        events.append(CloseReceived(code, reason))

    def _queue(self, data: bytes) -> None:
        if self._out is None:
            self._out = [data]
        else:
            self._out.append(data)

    def _fail(self, code: int, reason: str, events: list[Event]) -> None:
        """Fail the connection (RFC 6455 7.1.7): a close frame with ``code`` if none was sent yet."""
        if self._state is _OPEN:
            payload = _close_payload(code, reason)
            self._queue(_frame(0x80 | _CLOSE, payload))
            self._close_sent = (code, reason)
        self._state = _CLOSED
        self._release()
        events.append(ProtocolFailed(code, reason))

    def _release(self) -> None:
        """Drop what only an open connection needs (buffers, zlib's state)."""
        self._buffer = b""
        self._parts = self._decoder = self._inflater = self._deflater = None
        self._message = self._checked = 0
