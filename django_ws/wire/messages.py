"""Message classes of the edge <-> worker protocol and their byte codec.

A message is one or two ZeroMQ frames::

    [header]            or    [header, payload]

and one ZeroMQ message may carry several messages back to back (a batch,
see :func:`encode_batch`): each header's kind says whether a payload follows.

    header = VERSION KIND (length field)*      length: 4 bytes, big-endian

``VERSION`` is 4 bytes, ``KIND`` one ASCII letter; then each field but the
payload, in order, as a 4-byte length and that many bytes. Field types map
to bytes in one obvious way each (see ``_CODECS``): ``str`` is UTF-8,
``int`` is ASCII decimal, ``bool`` is ``b"1"``/``b"0"``, ``dict`` is JSON.
The payload of Data, Event, EventAck, Send, GroupSend and SendTo travels alone in the second
frame, untouched. Two frames, not one per field: pyzmq handles every frame
separately in Python, and a frame per field made each hop several times
dearer. Nothing is pickled or evaluated: a peer can at worst send a message
that fails to decode, which raises :class:`ProtocolError`.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import typing
from typing import ClassVar

VERSION = b"DWS4"
_LENGTH = struct.Struct("!I")
_HEAD = len(VERSION) + 1  # version and kind


class ProtocolError(ValueError):
    """Frames that are not a valid message of this protocol version."""


def _decode_str(raw: bytes) -> str:
    return raw.decode("utf-8")


def _decode_int(raw: bytes) -> int:
    # int() would accept " 12", "1_000" and "+3"; the protocol only has digits.
    if not raw or not (raw.isdigit() or (raw[:1] == b"-" and raw[1:].isdigit())):
        raise ValueError(f"not an integer: {raw[:20]!r}")
    return int(raw)


def _decode_bool(raw: bytes) -> bool:
    if raw == b"1":
        return True
    if raw == b"0":
        return False
    raise ValueError(f"not a boolean: {raw[:20]!r}")


def _decode_dict(raw: bytes) -> dict:
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


# type -> (encode, decode)
_CODECS: dict[type, tuple[typing.Callable, typing.Callable]] = {
    str: (lambda v: v.encode("utf-8"), _decode_str),
    bytes: (bytes, bytes),
    int: (lambda v: b"%d" % v, _decode_int),
    bool: (lambda v: b"1" if v else b"0", _decode_bool),
    dict: (lambda v: json.dumps(v, separators=(",", ":")).encode("utf-8"), _decode_dict),
}

_REGISTRY: dict[bytes, type[Message]] = {}


class Message:
    """Base of every protocol message.

    Subclasses are frozen dataclasses registered with :func:`_message`, which
    records their one-letter ``KIND``, which field (if any) is the payload,
    and the codec of each other field, so encoding and decoding stay a flat
    loop on the hot path.
    """

    KIND: ClassVar[bytes]
    _encoders: ClassVar[tuple]
    _decoders: ClassVar[tuple]
    _names: ClassVar[tuple[str, ...]]  # header fields, in order
    _payload_index: ClassVar[int | None]  # where "payload" sits among all fields

    def encode(self) -> list[bytes]:
        """Return the frames of this message: [header] or [header, payload]."""
        pack = _LENGTH.pack
        parts = [VERSION, self.KIND]
        for name, encode in zip(self._names, self._encoders):
            raw = encode(getattr(self, name))
            parts.append(pack(len(raw)))
            parts.append(raw)
        header = b"".join(parts)
        if self._payload_index is None:
            return [header]
        return [header, self.payload]


_M = typing.TypeVar("_M", bound="type[Message]")


# Tells type checkers that a decorated class is a frozen dataclass (its
# fields are its constructor's arguments), as dataclasses.dataclass does.
@typing.dataclass_transform(frozen_default=True)
def _message(kind: bytes) -> typing.Callable[[_M], _M]:
    def register(cls: _M) -> _M:
        cls = dataclasses.dataclass(frozen=True, slots=True)(cls)
        hints = typing.get_type_hints(cls)
        fields = [f.name for f in dataclasses.fields(cls)]
        cls.KIND = kind
        cls._payload_index = fields.index("payload") if "payload" in fields else None
        names = tuple(name for name in fields if name != "payload")
        cls._names = names
        cls._encoders = tuple(_CODECS[hints[name]][0] for name in names)
        cls._decoders = tuple(_CODECS[hints[name]][1] for name in names)
        if kind in _REGISTRY:
            raise RuntimeError(f"message kind {kind!r} registered twice")
        _REGISTRY[kind] = cls
        return cls

    return register


def payload(data: str | bytes | bytearray | memoryview) -> tuple[bool, bytes]:
    """(binary, bytes) of what a handler or a sender passes: str is a text frame, bytes a binary one.

    The one rule for every way of sending (Connection.send, send_to_group,
    send_to_connection), so that each says the same thing about a wrong type.
    """
    if isinstance(data, str):
        return False, data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return True, bytes(data)
    raise TypeError(f"send str (a text frame) or bytes (a binary frame), not {type(data).__name__}; "
                    "JsonWebSocketHandler.send_json sends other objects as JSON")


def decode(frames: typing.Sequence[bytes]) -> Message:
    """Decode one multipart message, or raise :class:`ProtocolError`.

    ``frames`` may hold ``bytes`` or anything with a ``bytes`` buffer (such as
    zmq.Frame or memoryview); they are only read.
    """
    if not frames:
        raise ProtocolError("expected 1 or 2 frames, got none")
    message, end = _decode_at(frames, 0)
    if end != len(frames):
        raise ProtocolError(f"{type(message).__name__} takes {end} frames, got {len(frames)}")
    return message


def encode_batch(messages: typing.Iterable[Message]) -> list[bytes]:
    """The frames of several messages back to back: one ZeroMQ message for all.

    A busy peer sends what one turn of its loop produced as one batch: one
    send, one receive and one wake-up on the other side instead of one per
    message. Order is kept; :func:`iter_decode` splits them again.
    """
    frames: list[bytes] = []
    for message in messages:
        frames += message.encode()
    return frames


def iter_decode(frames: typing.Sequence[bytes]) -> typing.Iterator[Message]:
    """Yield the messages of a batch (one message is a batch of one), in order.

    Each header's kind says whether a payload frame follows, so the batch
    needs no count of its own. A malformed message raises
    :class:`ProtocolError` when reached: those before it have been yielded,
    those after it are lost with it, since their boundaries are unknown.
    """
    if not frames:
        raise ProtocolError("expected 1 or 2 frames, got none")
    pos, count = 0, len(frames)
    while pos < count:
        message, pos = _decode_at(frames, pos)
        yield message


def _decode_at(frames: typing.Sequence[bytes], start: int) -> tuple[Message, int]:
    """Decode the message whose header is ``frames[start]``; return it and the index after it."""
    header = bytes(frames[start])
    if len(header) < _HEAD:
        raise ProtocolError(f"header of {len(header)} bytes is too short")
    version = header[: len(VERSION)]
    if version != VERSION:
        raise ProtocolError(f"unsupported protocol version {version!r}, expected {VERSION!r}")
    kind = header[len(VERSION):_HEAD]
    cls = _REGISTRY.get(kind)
    if cls is None:
        raise ProtocolError(f"unknown message kind {kind!r}")
    has_payload = cls._payload_index is not None
    if has_payload and start + 1 >= len(frames):
        raise ProtocolError(f"{cls.__name__} takes 2 frames, got 1")
    values = []
    pos, end = _HEAD, len(header)
    try:
        for decoder in cls._decoders:
            if pos + 4 > end:
                raise ProtocolError(f"{cls.__name__} takes {len(cls._decoders)} header fields, got {len(values)}")
            (size,) = _LENGTH.unpack_from(header, pos)
            pos += 4
            if pos + size > end:
                raise ProtocolError(f"bad {cls.__name__}: field {len(values) + 1} runs past the header")
            values.append(decoder(header[pos:pos + size]))
            pos += size
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        if isinstance(exc, ProtocolError):
            raise
        raise ProtocolError(f"bad {cls.__name__}: {type(exc).__name__}: {str(exc)[:100]}") from None
    if pos != end:
        raise ProtocolError(f"bad {cls.__name__}: {end - pos} bytes after the last field")
    if has_payload:
        values.insert(cls._payload_index, bytes(frames[start + 1]))
        return cls(*values), start + 2
    return cls(*values), start + 1


# -- edge -> worker ------------------------------------------------------------


@_message(b"P")
class Ping(Message):
    """The edge is alive. Sent to every known worker each heartbeat interval.

    It also introduces the edge: a worker learns ``edge_id`` from it and uses
    it to address replies (see :class:`Hello`).
    """

    edge_id: str


@_message(b"C")
class Connect(Message):
    """A client asks to open ``route``; the worker answers Accept or Deny.

    ``request`` holds what the handshake carried (path, query string,
    headers, remote address) as JSON, so the worker can build ``self.request``.
    """

    conn_id: str
    route: str
    request: dict


@_message(b"D")
class Data(Message):
    """One WebSocket message from the client. ``binary`` keeps its opcode."""

    conn_id: str
    route: str
    binary: bool
    payload: bytes


@_message(b"V")
class Event(Message):
    """One named event from a Socket.IO client (docs/socketio.rst): ``payload`` is its arguments as a JSON array.

    ``ack`` is the id the client waits on for an acknowledgement, or -1 when
    it asked for none; the worker answers with :class:`EventAck`.
    """

    conn_id: str
    route: str
    name: str
    ack: int
    payload: bytes


@_message(b"X")
class Disconnect(Message):
    """The client's connection has ended at the edge; no more Data follows."""

    conn_id: str
    route: str
    code: int
    reason: str


@_message(b"R")
class Recovery(Message):
    """The client of ``conn_id`` presented a position in ``group`` and its handler joined it.

    ``recovered``: the edge replayed what the client missed; false, it told
    the client to resync (docs/protocol.rst, "Positions and recovery"). The
    worker calls the handler's ``on_recovered`` or ``on_resync``.
    """

    conn_id: str
    group: str
    recovered: bool


@_message(b"U")
class PresenceDiff(Message):
    """Connections joined or left ``group``; for the handler of ``conn_id``, which watches it.

    ``diff`` is ``{"joined": [ids], "left": [ids]}``. The worker calls the
    handler's ``on_presence(group, joined, left)``, in order with its messages.
    """

    conn_id: str
    group: str
    diff: dict


@_message(b"E")
class UserPresenceDiff(Message):
    """Users joined or left ``group``; for the handler of ``conn_id``, which watches it.

    ``diff`` is ``{"joined": {user key: info}, "left": [user keys]}``: a
    user joins with their first connection and leaves with their last, across
    edges, and the changes of one window (WS_PRESENCE_WINDOW) travel together.
    The worker calls the handler's ``on_user_presence(group, joined, left)``.
    """

    conn_id: str
    group: str
    diff: dict


@_message(b"r")
class Refresh(Message):
    """The client of ``conn_id`` sent a fresh token over the open connection (docs/protocol.rst).

    The worker checks it as it checked the handshake's, in the handler's
    turn, and answers with Credentials (a later expiry) or a Close with 1008.
    """

    conn_id: str
    route: str
    token: str


# -- worker -> edge ------------------------------------------------------------


@_message(b"H")
class Hello(Message):
    """Worker heartbeat, sent to each edge every heartbeat interval.

    ``capacity`` is how many connections the worker takes (0: no limit) and
    ``load`` how many it holds now, across every edge; the edge uses both to
    place new connections on the least-loaded worker. ``mode`` is how it runs
    handlers ("threaded", "gevent", "multiprocess"), for the admin's live view.
    """

    worker_id: str
    capacity: int
    load: int
    mode: str


@_message(b"B")
class Goodbye(Message):
    """The worker is stopping: place no new connection on it."""

    worker_id: str


@_message(b"A")
class Accept(Message):
    """The handler takes the connection; ``subprotocol`` is '' for none."""

    conn_id: str
    subprotocol: str


@_message(b"c")
class Credentials(Message):
    """What the connection's access rests on, sent before Accept (and after each accepted Refresh).

    ``user``: the user's primary key ('' for none); ``session``: a keyed hash
    of the session key when the session authenticated it ('' otherwise);
    ``expires_ms``: milliseconds from now until its token expires (0: it
    does not). The edge closes the connection with 1008 when the token
    expires, the user is deactivated or changes password, or the session logs out.
    """

    conn_id: str
    user: str
    session: str
    expires_ms: int


@_message(b"N")
class Deny(Message):
    """The handler refuses the connection with an HTTP ``status``."""

    conn_id: str
    status: int
    reason: str


@_message(b"S")
class Send(Message):
    """One WebSocket message for the client of ``conn_id``."""

    conn_id: str
    binary: bool
    payload: bytes


@_message(b"Y")
class EventAck(Message):
    """The acknowledgement of the client's Event ``ack``: ``payload`` is its arguments as a JSON array."""

    conn_id: str
    ack: int
    payload: bytes


@_message(b"Q")
class Close(Message):
    """Close the client's connection with ``code`` (a handler asked, or failed)."""

    conn_id: str
    code: int
    reason: str


@_message(b"J")
class Join(Message):
    """Add ``conn_id`` to ``group`` on its edge."""

    conn_id: str
    group: str


@_message(b"I")
class JoinAs(Message):
    """Add ``conn_id`` to ``group`` as a connection of ``user`` with ``info`` (again: new info).

    The handler's ``join(group, presence=...)`` and ``update_presence()``.
    """

    conn_id: str
    group: str
    user: str
    info: dict


@_message(b"L")
class Leave(Message):
    """Remove ``conn_id`` from ``group`` on its edge."""

    conn_id: str
    group: str


@_message(b"W")
class Watch(Message):
    """Tell ``conn_id``'s handler of joins and leaves in ``group`` (``watch``), or stop."""

    conn_id: str
    group: str
    watch: bool


@_message(b"G")
class GroupSend(Message):
    """Deliver ``payload`` to every member of ``group`` but ``exclude`` ('' for none).

    One GroupSend crosses to each edge; the edge fans it out to its members.
    With a non-empty ``ref`` the edge answers the sender with an Ack.
    ``sent_at``: the sender's wall clock at its call, in microseconds since
    the epoch (0: not stamped), from which the edge measures delivery
    latency; ``trace``: the sender's W3C ``traceparent`` ('' for none), so
    that the fan-out on each edge joins the sender's trace.
    """

    group: str
    exclude: str
    binary: bool
    payload: bytes
    ref: str
    sent_at: int = 0
    trace: str = ""


@_message(b"T")
class SendTo(Message):
    """From any Django process: ``payload`` for one connection; the edge Acks ``ref``.

    ``sent_at`` and ``trace`` as in :class:`GroupSend`.
    """

    conn_id: str
    binary: bool
    payload: bytes
    ref: str
    sent_at: int = 0
    trace: str = ""


@_message(b"Z")
class CloseConnections(Message):
    """From any Django process: close ``conn_id``, or every member of ``group`` when ``conn_id`` is ''.

    With ``code`` and ``reason``, as a handler's own close would. With a
    non-empty ``ref`` the edge answers with an Ack: ``delivered`` is how many
    open connections it started to close. (Close, from a worker, has no ref:
    a handler closes its own connection and needs no answer.)
    """

    conn_id: str
    group: str
    code: int
    reason: str
    ref: str


@_message(b"K")
class Ack(Message):
    """Edge -> sender: the request ``ref`` reached this edge; ``delivered`` clients got it."""

    ref: str
    edge_id: str
    delivered: int


@_message(b"?")
class Presence(Message):
    """Sender -> edge: who is in ``group``? Answered with Members."""

    ref: str
    group: str


# Lower case: the capitals are all taken.
@_message(b"i")
class Inspect(Message):
    """Sender -> edge: what do you hold? ``query`` narrows it (docs/operating.rst); answered with Report.

    The admin's live view asks every edge at once on the sub endpoint, as
    group_members() does, so static WS_EDGES and cluster mode reach the same edges.
    """

    ref: str
    query: dict


@_message(b"o")
class Report(Message):
    """Edge -> sender: ``report`` is the edge's stats (as ``/_django_ws/stats``) and what ``query`` asked for."""

    ref: str
    edge_id: str
    report: dict


@_message(b"F")
class PresenceQuery(Message):
    """Sender -> edge: counts or a page of the users of ``group``. Answered with Members.

    ``what`` is ``"count"`` (``{"size": connections, "users": users}``, and
    ``"keys"``, the user keys, when ``limit`` is 1: several edges in static mode
    must merge them) or ``"users"`` (a page of at most ``limit`` users after
    ``after``, as django_ws.presence.UserCounts.page gives it).
    """

    ref: str
    group: str
    what: str
    limit: int
    after: str


@_message(b"M")
class Members(Message):
    """Edge -> sender: ``members`` is ``{"ids": [...]}``, this edge's connections in the group.

    Or the answer to a PresenceQuery (its counts, or a page of users).
    """

    ref: str
    edge_id: str
    members: dict
