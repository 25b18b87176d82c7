"""What the core returns: the actions an adapter carries out, as small slotted dataclasses.

Two actions are equal when they are of the same class with equal fields (the
unit tests compare whole lists of them); like the connection records they
carry, they are not hashable.

They are not ``frozen``: a frozen dataclass's ``__init__`` sets each field
through ``object.__setattr__``, about three times the cost of a plain one,
and a ``Forward`` or a ``Deliver`` is made for every frame. Nothing changes
an action once made.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

if typing.TYPE_CHECKING:  # pragma: no cover
    from django_ws import wire
    from django_ws.history import Position

    from .records import Connection, Stats, WorkerState

__all__ = [
    "Acknowledge",
    "Action",
    "Answer",
    "CatchUp",
    "CloseClient",
    "Deliver",
    "FetchGap",
    "FlushPresenceLater",
    "Forward",
    "MemberChanged",
    "Refuse",
    "Subscribe",
    "ToWorker",
    "Unsubscribe",
    "Upgrade",
    "WorkerChanged",
    "deliver",
]


class Action:
    """Something an adapter must do; the core returns lists of these."""

    __slots__ = ()


@dataclass(slots=True)
class Deliver(Action):
    """Write one message to each of ``targets`` (open connections).

    ``position``: the message's place in its group's history (or a resync
    signal). The transport gives it to the targets that asked for positions,
    in its own framing, and plain clients the payload alone.
    """

    targets: list[Connection]
    binary: bool
    payload: bytes
    position: Position | None = None
    #: The sender's stamp (wire.GroupSend.sent_at, microseconds; 0: none, as for replays) and traceparent.
    sent_at: int = 0
    trace: str = ""


@dataclass(slots=True)
class CloseClient(Action):
    """Close ``conn``'s client with ``code``: a close frame, then the end of the transport.

    ``fail``: do not wait for the client's answer, nor read what it still
    sends (RFC 6455's "fail the connection"): a flood over its budget.
    """

    conn: Connection
    code: int
    reason: str
    fail: bool = False


@dataclass(slots=True)
class Acknowledge(Action):
    """Answer the Socket.IO client of ``conn`` for its event ``ack``: ``payload`` is the arguments as JSON."""

    conn: Connection
    ack: int
    payload: bytes


@dataclass(slots=True)
class Upgrade(Action):
    """The handshake succeeded: complete the transport's upgrade (101), then call opened()."""

    conn: Connection
    subprotocol: str


@dataclass(slots=True)
class Refuse(Action):
    """Refuse the handshake with an HTTP status; ``conn`` is None before a record was made."""

    conn: Connection | None
    status: int
    reason: str
    headers: dict[str, str] | None = None


@dataclass(slots=True)
class ToWorker(Action):
    """Send ``message`` to ``worker`` without blocking; report a failure with send_failed()."""

    worker: WorkerState
    message: wire.Message


@dataclass(slots=True)
class Forward(Action):
    """A client's message for its worker: ``header`` is its encoded wire.Data header."""

    worker: WorkerState
    conn: Connection
    header: bytes
    payload: bytes


@dataclass(slots=True)
class Answer(Action):
    """Answer the sender ``identity`` on the sub endpoint (an Ack, a Members)."""

    identity: bytes
    message: wire.Message


@dataclass(slots=True)
class Subscribe(Action):
    """Cluster mode: ``group`` has its first member here; receive its messages from the broker.

    ``presence``: its first watcher instead; receive the joins and leaves of other edges.
    """

    group: str
    presence: bool = False


@dataclass(slots=True)
class Unsubscribe(Action):
    """Cluster mode: ``group`` has no member (``presence``: no watcher) here any more."""

    group: str
    presence: bool = False


@dataclass(slots=True)
class MemberChanged(Action):
    """Cluster mode: ``conn_id`` ``joined`` (or left) ``group`` here; the broker's presence follows."""

    group: str
    conn_id: str
    joined: bool
    #: The user whose connection this is ('' for none) and their info, for the users' presence.
    user: str = ""
    info: dict | None = None


@dataclass(slots=True)
class FlushPresenceLater(Action):
    """User joins and leaves wait for watchers: call the core's ``flush_presence()`` in ``delay`` seconds."""

    delay: float


@dataclass(slots=True)
class FetchGap(Action):
    """Cluster mode: ask the broker for what followed ``(epoch, offset)`` in ``group``, for ``conn``.

    The broker keeps the history; the answer comes back as gap_fetched().
    Live messages of the group for ``conn`` are held until then.
    """

    conn: Connection
    group: str
    epoch: str
    offset: int


@dataclass(slots=True)
class CatchUp(Action):
    """Cluster mode, back from an outage of the broker: fetch what ``group`` had after ``(epoch, offset)``.

    Those are the messages this edge may have missed meanwhile; the answer
    comes back as gap_fetched() without a connection, for every member here.
    """

    group: str
    epoch: str
    offset: int


@dataclass(slots=True)
class WorkerChanged(Action):
    """A worker ``joined`` or was ``lost``: for the banner and the supervisor."""

    what: str
    worker: WorkerState


def deliver(stats: Stats, targets: list[Connection], binary: bool, payload: bytes, position: Position | None = None,
            sent_at: int = 0, trace: str = "") -> list[Action]:
    """The Deliver of one message to ``targets``, counted in ``stats.frames_out``; no action without a target.

    ``sent_at`` and ``trace``: a sender's live message (not a replay), whose latency the edge observes.
    """
    if not targets:
        return []
    stats.frames_out += len(targets)
    return [Deliver(targets, binary, payload, position, sent_at, trace)]
