"""The records the core keeps: one per connection (with its state), one per worker, and the counters.

Plain slotted classes without behaviour beyond their own upkeep: an edge
holds one :class:`Connection` per client, mostly idle, so each is small and
grows a field (its groups, its budget) only when the client uses it. Who may
move a connection from one :class:`ConnectionState` to the next is
:mod:`.lifecycle`'s business, not theirs.
"""

from __future__ import annotations

import collections
import enum
import typing

from django_ws import wire

from .latency import LatencyHistogram

if typing.TYPE_CHECKING:  # pragma: no cover
    from django_ws.history import Position, Positions

    from ..limits import MessageLimits


class ConnectionState(enum.Enum):
    """Where a connection is in its life; transitions only go down this list (the rules: lifecycle.TRANSITIONS)."""

    #: A worker runs on_connect: Connect sent, Accept or Deny awaited.
    CONNECTING = "connecting"
    #: Accepted: the transport completes its upgrade, then calls opened().
    UPGRADING = "upgrading"
    OPEN = "open"
    #: This side started a close (CloseClient); the transport reports the end.
    CLOSING = "closing"
    CLOSED = "closed"


class Connection:
    """One client connection, as the edge knows it."""

    __slots__ = ("address", "attempts", "close_after_upgrade", "close_sent", "data_headers", "early", "expires",
                 "groups", "holding", "id", "limits", "positions", "replayed_to", "request", "route", "route_name",
                 "session", "state", "transport", "user", "watching", "worker")

    def __init__(self, conn_id: str, route: str, transport: typing.Any, route_name: str = ""):
        self.id = conn_id
        self.route = route
        #: The name its route has in WS_URLCONF ("" if none): connections are counted by it.
        self.route_name = route_name
        #: The adapter's handle for this connection; the core never touches it.
        self.transport = transport
        self.state = ConnectionState.CONNECTING
        self.worker: WorkerState | None = None
        #: Groups joined (made on first join: most connections never join one).
        self.groups: set[str] | None = None
        #: What on_connect sent (and replays, and live messages of groups with
        #: history for a client that asked for positions), written right after the upgrade.
        self.early: list[tuple[bool, bytes, Position | None]] | None = None
        #: (code, reason) to close with as soon as the upgrade completes.
        self.close_after_upgrade: tuple[int, str] | None = None
        #: (code, reason) of the close this side started.
        self.close_sent: tuple[int, str] | None = None
        #: The two wire.Data headers (text, binary): encoded once, not per frame.
        self.data_headers: tuple[bytes, bytes] | None = None
        #: The handshake's request, kept while CONNECTING: a worker lost before
        #: it answered is replaced by another, which needs it too.
        self.request: dict | None = None
        self.attempts = 0
        #: The client address whose per-address limits this connection counts in, until it ends.
        self.address: str | None = None
        #: Its budget of messages and bytes, made on its first message (idle connections carry none).
        self.limits: MessageLimits | None = None
        #: Set when the client asked for positions (docs/protocol.rst): its
        #: frames then carry the envelope, and it may have presented positions to recover from.
        self.positions: Positions | None = None
        #: Cluster mode: group -> the live messages held while the broker is asked for this
        #: client's gap in that group (GapFetched), delivered after the replay.
        self.holding: dict[str, list[tuple[bool, bytes, Position]]] | None = None
        #: Cluster mode: group -> the (epoch, offset) its replay reached before this edge's
        #: subscription did; the live messages up to there, when they come, are not delivered again.
        self.replayed_to: dict[str, tuple[str, int]] | None = None
        #: The groups whose joins and leaves its handler watches (made on its first watch).
        self.watching: set[str] | None = None
        #: What its access rests on (wire.Credentials): the user's primary key and the session's
        #: digest ('' for none), and when (the core's clock) its token expires (None: never).
        self.user = ""
        self.session = ""
        self.expires: float | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.state.value} route={self.route!r}>"

    def keep_early(self, frames: list[tuple[bool, bytes, Position | None]]) -> None:
        """Keep ``frames`` (binary, payload, position) for right after the upgrade, behind those kept before."""
        if not frames:
            return
        if self.early is None:
            self.early = list(frames)
        else:
            self.early += frames


class WorkerState:
    """What the edge knows of one worker: liveness, capacity, its connections."""

    __slots__ = ("backlog", "capacity", "connections", "identity", "last_seen", "load", "mode", "worker_id")

    def __init__(self, identity: bytes, hello: wire.Hello, now: float):
        self.identity = identity
        self.worker_id = hello.worker_id
        self.connections: set[str] = set()
        #: Disconnects its full queue refused: retried each tick, so the
        #: worker still runs on_close for connections the edge closed meanwhile.
        self.backlog: collections.deque[wire.Disconnect] = collections.deque()
        self.update(hello, now)

    def update(self, hello: wire.Hello, now: float) -> None:
        self.capacity = hello.capacity
        self.load = hello.load
        self.mode = hello.mode
        self.last_seen = now

    @property
    def placement_load(self) -> int:
        # The worker's own count lags by a heartbeat; ours is exact for this
        # edge. Whichever is larger, so that a burst of handshakes spreads out.
        return max(self.load, len(self.connections))

    def has_room(self) -> bool:
        return not self.capacity or self.placement_load < self.capacity


class Stats:
    """Counters for the stats endpoint and the shutdown report."""

    __slots__ = ("closed_by_code", "connections_total", "delivery_latency", "frames_in", "frames_out",
                 "proxy_limited", "rate_limited", "refused")

    def __init__(self):
        self.frames_in = 0
        self.frames_out = 0
        self.connections_total = 0
        self.refused: collections.Counter = collections.Counter()
        self.closed_by_code: collections.Counter = collections.Counter()
        #: Handshakes refused and connections closed by a rate limit, by limit
        #: ("new_connections", "concurrent", "messages", "bytes").
        self.rate_limited: collections.Counter = collections.Counter()
        #: Of the handshakes refused by a per-address limit, those that carried
        #: X-Forwarded-For or X-Real-IP while WS_TRUST_PROXY_HEADERS is off.
        self.proxy_limited = 0
        #: From a sender's stamp to the frame handed to the client's socket (the edge observes it).
        self.delivery_latency = LatencyHistogram()
