"""The edge's connection core: who is connected, through which worker, in which groups, and how each ended.

It does no I/O and imports neither Tornado nor ZeroMQ nor asyncio. The
adapters at its rim (a transport per client protocol, the ZeroMQ link to the
workers) feed it events by calling its methods, and each method returns the
actions that follow, for the adapters to carry out:

==============================  ==============================================
event (method)                  typical actions
==============================  ==============================================
``connect()``  a handshake      ``ToWorker(Connect)``, or ``Refuse``
``reply()``    from the sub     ``Deliver``, ``Upgrade``, ``Refuse``,
               endpoint         ``CloseClient``, ``Answer`` (an Ack),
                                ``Acknowledge`` (an EventAck)
``worker_event()`` from the     ``ToWorker(Ping)``, ``WorkerChanged``,
               push endpoint    ``CloseClient`` (1012)
``opened()``   upgrade done     ``Deliver`` (what on_connect sent)
``received()`` a client frame   ``Forward``, or ``CloseClient``
``received_event()`` a          ``Forward`` (a wire.Event), or ``CloseClient``
               Socket.IO event
``closed()``   transport ended  ``ToWorker(Disconnect)``
``tick()``     each heartbeat   ``ToWorker(Ping)``, ``CloseClient`` (1012)
``send_failed()`` the link      ``CloseClient`` (1013), a retry, a backlog
               could not send
``broker_message()`` from the   ``Deliver``
               broker (cluster)
==============================  ==============================================

In cluster mode (``cluster=True``, WS_BROKER set) joins and leaves also
return ``Subscribe`` / ``Unsubscribe`` when a group gets its first member on
this edge or loses its last, and ``MemberChanged`` for the broker's presence.

One :class:`Connection` record per client holds everything the edge knows of
it, with an explicit :class:`ConnectionState`; the transport's own object
is only its ``transport`` handle. Every close race the end-to-end tests met
(a worker's Close overtaking the upgrade, a worker lost mid-handshake, a
client leaving while a worker decides) is a state transition here, unit-tested
event by event in tests/unit/test_edge_core.py.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import logging
import time
import typing
import uuid

from django_ws import wire
from django_ws.codes import CloseCode

from .history import History, Position, Positions
from .limits import AddressLimits, LimitSettings, MessageLimits

logger = logging.getLogger("django_ws.edge")

#: How many workers a handshake tries when the one asked vanishes meanwhile.
HANDSHAKE_ATTEMPTS = 3
#: Most idempotency keys an edge remembers, whatever WS_SEND_KEY_TTL says.
RECENT_SENDS_LIMIT = 100_000


class ConnectionState(enum.Enum):
    """Where a connection is in its life; transitions only go down this list."""

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

    __slots__ = ("address", "attempts", "close_after_upgrade", "close_sent", "data_headers", "early", "groups",
                 "holding", "id", "limits", "positions", "request", "route", "state", "transport", "watching",
                 "worker")

    def __init__(self, conn_id: str, route: str, transport: typing.Any):
        self.id = conn_id
        self.route = route
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
        #: The groups whose joins and leaves its handler watches (made on its first watch).
        self.watching: set[str] | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.state.value} route={self.route!r}>"


class WorkerState:
    """What the edge knows of one worker: liveness, capacity, its connections."""

    __slots__ = ("backlog", "capacity", "connections", "identity", "last_seen", "load", "worker_id")

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

    __slots__ = ("closed_by_code", "connections_total", "frames_in", "frames_out", "rate_limited", "refused")

    def __init__(self):
        self.frames_in = 0
        self.frames_out = 0
        self.connections_total = 0
        self.refused: collections.Counter = collections.Counter()
        self.closed_by_code: collections.Counter = collections.Counter()
        #: Handshakes refused and connections closed by a rate limit, by limit
        #: ("new_connections", "concurrent", "messages", "bytes").
        self.rate_limited: collections.Counter = collections.Counter()


# -- actions --------------------------------------------------------------------------


class Action:
    """Something an adapter must do; the core returns lists of these."""

    __slots__ = ()

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and all(getattr(self, n) == getattr(other, n) for n in self.__slots__)


class Deliver(Action):
    """Write one message to each of ``targets`` (open connections).

    ``position``: the message's place in its group's history (or a resync
    signal). The transport gives it to the targets that asked for positions,
    in its own framing, and plain clients the payload alone.
    """

    __slots__ = ("binary", "payload", "position", "targets")

    def __init__(self, targets: list[Connection], binary: bool, payload: bytes, position: Position | None = None):
        self.targets, self.binary, self.payload, self.position = targets, binary, payload, position


class CloseClient(Action):
    """Close ``conn``'s client with ``code``: a close frame, then the end of the transport.

    ``fail``: do not wait for the client's answer, nor read what it still
    sends (RFC 6455's "fail the connection"): a flood over its budget.
    """

    __slots__ = ("code", "conn", "fail", "reason")

    def __init__(self, conn: Connection, code: int, reason: str, fail: bool = False):
        self.conn, self.code, self.reason, self.fail = conn, code, reason, fail


class Acknowledge(Action):
    """Answer the Socket.IO client of ``conn`` for its event ``ack``: ``payload`` is the arguments as JSON."""

    __slots__ = ("ack", "conn", "payload")

    def __init__(self, conn: Connection, ack: int, payload: bytes):
        self.conn, self.ack, self.payload = conn, ack, payload


class Upgrade(Action):
    """The handshake succeeded: complete the transport's upgrade (101), then call opened()."""

    __slots__ = ("conn", "subprotocol")

    def __init__(self, conn: Connection, subprotocol: str):
        self.conn, self.subprotocol = conn, subprotocol


class Refuse(Action):
    """Refuse the handshake with an HTTP status; ``conn`` is None before a record was made."""

    __slots__ = ("conn", "headers", "reason", "status")

    def __init__(self, conn: Connection | None, status: int, reason: str, headers: dict[str, str] | None = None):
        self.conn, self.status, self.reason, self.headers = conn, status, reason, headers


class ToWorker(Action):
    """Send ``message`` to ``worker`` without blocking; report a failure with send_failed()."""

    __slots__ = ("message", "worker")

    def __init__(self, worker: WorkerState, message: wire.Message):
        self.worker, self.message = worker, message


class Forward(Action):
    """A client's message for its worker: ``header`` is its encoded wire.Data header."""

    __slots__ = ("conn", "header", "payload", "worker")

    def __init__(self, worker: WorkerState, conn: Connection, header: bytes, payload: bytes):
        self.worker, self.conn, self.header, self.payload = worker, conn, header, payload


class Answer(Action):
    """Answer the sender ``identity`` on the sub endpoint (an Ack, a Members)."""

    __slots__ = ("identity", "message")

    def __init__(self, identity: bytes, message: wire.Message):
        self.identity, self.message = identity, message


class Subscribe(Action):
    """Cluster mode: ``group`` has its first member here; receive its messages from the broker.

    ``presence``: its first watcher instead; receive the joins and leaves of other edges.
    """

    __slots__ = ("group", "presence")

    def __init__(self, group: str, presence: bool = False):
        self.group, self.presence = group, presence


class Unsubscribe(Action):
    """Cluster mode: ``group`` has no member (``presence``: no watcher) here any more."""

    __slots__ = ("group", "presence")

    def __init__(self, group: str, presence: bool = False):
        self.group, self.presence = group, presence


class MemberChanged(Action):
    """Cluster mode: ``conn_id`` ``joined`` (or left) ``group`` here; the broker's presence follows."""

    __slots__ = ("conn_id", "group", "joined")

    def __init__(self, group: str, conn_id: str, joined: bool):
        self.group, self.conn_id, self.joined = group, conn_id, joined


class FetchGap(Action):
    """Cluster mode: ask the broker for what followed ``(epoch, offset)`` in ``group``, for ``conn``.

    The broker keeps the history; the answer comes back as gap_fetched().
    Live messages of the group for ``conn`` are held until then.
    """

    __slots__ = ("conn", "epoch", "group", "offset")

    def __init__(self, conn: Connection, group: str, epoch: str, offset: int):
        self.conn, self.group, self.epoch, self.offset = conn, group, epoch, offset


class CatchUp(Action):
    """Cluster mode, back from an outage of the broker: fetch what ``group`` had after ``(epoch, offset)``.

    Those are the messages this edge may have missed meanwhile; the answer
    comes back as gap_fetched() without a connection, for every member here.
    """

    __slots__ = ("epoch", "group", "offset")

    def __init__(self, group: str, epoch: str, offset: int):
        self.group, self.epoch, self.offset = group, epoch, offset


class WorkerChanged(Action):
    """A worker ``joined`` or was ``lost``: for the banner and the supervisor."""

    __slots__ = ("what", "worker")

    def __init__(self, what: str, worker: WorkerState):
        self.what, self.worker = what, worker


# -- the core ---------------------------------------------------------------------------


class EdgeCore:
    """Connections, workers and groups of one edge: events in, actions out.

    ``resolve(route)`` says whether a route exists (the mount's resolver);
    ``clock`` gives monotonic seconds (tests pass their own).
    """

    def __init__(self, *, resolve: typing.Callable[[str], object], heartbeat_timeout: float,
                 max_connections: int = 0, limits: LimitSettings | None = None, send_key_ttl: float = 60.0,
                 edge_id: str | None = None, history: History | None = None, cluster: bool = False,
                 clock: typing.Callable[[], float] = time.monotonic):
        self.edge_id = edge_id or uuid.uuid4().hex[:16]
        self.resolve = resolve
        self.heartbeat_timeout = heartbeat_timeout
        self.max_connections = max_connections
        self.clock = clock
        self._next_id = 0
        #: Every connection not yet CLOSED, by id: O(1) routing of replies.
        self.connections: dict[str, Connection] = {}
        self.workers: dict[bytes, WorkerState] = {}
        self.groups: dict[str, set[str]] = {}
        #: group -> the connections whose handlers watch its joins and leaves (Watch).
        self.watchers: dict[str, set[str]] = {}
        #: Cluster mode: group messages come from the broker, which must hear of joins and leaves.
        self.cluster = cluster
        #: Cluster mode: the last position received of each group with history and members here,
        #: and the live messages of groups being caught up after an outage (see broker_resumed).
        self._last_seen: dict[str, tuple[str, int]] = {}
        self._catching_up: dict[str, list[tuple[wire.GroupSend, Position]]] = {}
        #: group being caught up -> connection id -> (epoch, offset) it recovered to meanwhile, on its own.
        self._recovered_meanwhile: dict[str, dict[str, tuple[str, int]]] = {}
        #: The groups' history (WS_GROUP_HISTORY); falsy when no pattern is set.
        self.history = history if history is not None else History([], clock=clock)
        self.stats = Stats()
        #: The rate limits of docs/security.rst (all off by default here; the edge passes the settings).
        self.limit_settings = limits or LimitSettings()
        self.address_limits = AddressLimits(self.limit_settings)
        self._per_connection_limits = self.limit_settings.per_connection  # asked once, not per frame
        #: Idempotency keys of recent sends (their ref) -> (expiry, clients reached): see _once.
        self._recent_sends: collections.OrderedDict[str, tuple[float, int]] = collections.OrderedDict()
        self.send_key_ttl = send_key_ttl
        #: Set once the workers were restarted with code the edge has not loaded (SIGHUP):
        #: the edge's route table may be stale, so a path it does not know goes to a
        #: worker, which answers 404 itself if the new code has no such route.
        self.routes_from_workers = False
        self._open = 0
        self._on_reply = {
            wire.Send: self._send, wire.GroupSend: self._group_send, wire.SendTo: self._send_to,
            wire.Presence: self._presence, wire.Accept: self._accept, wire.Deny: self._deny,
            wire.Close: self._close, wire.Join: self._join, wire.Leave: self._leave, wire.Watch: self._watch,
            wire.EventAck: self._event_ack, wire.CloseConnections: self._close_connections,
        }

    # -- figures ----------------------------------------------------------------

    @property
    def open_count(self) -> int:
        """Connections in the OPEN state."""
        return self._open

    @property
    def handshakes_pending(self) -> int:
        """Connections waiting for a worker's answer."""
        return sum(1 for c in self.connections.values() if c.state is ConnectionState.CONNECTING)

    # -- handshakes ---------------------------------------------------------------

    def knows(self, route: str) -> bool:
        """Whether ``route`` may exist: it resolves here, or the workers decide (see routes_from_workers)."""
        return self.routes_from_workers or self.resolve(route) is not None

    def connect(self, route: str, request: dict, transport: typing.Any, address: str | None = None,
                positions: Positions | None = None) -> tuple[Connection | None, list[Action]]:
        """A client at ``address`` asks for ``route``: refuse it at once, or ask a worker to take it.

        ``positions``: the client asked for positions, and presented the last
        ones it saw (the transport read them from its handshake).
        """
        if not self.knows(route):
            return None, [self._refused(None, 404, "no websocket route here")]
        # Handshakes still waiting for a worker count too: a burst of them
        # must not carry the server past its limit.
        if self.max_connections and len(self.connections) >= self.max_connections:
            return None, [self._refused(None, 503, "too many connections")]
        if address is not None and self.address_limits.enabled:
            refusal = self.address_limits.admit(address, self.clock())
            if refusal is not None:
                self.stats.rate_limited[refusal.limit] += 1
                reason = ("too many connections from this address" if refusal.limit == "concurrent"
                          else "too many new connections from this address")
                return None, [Refuse(None, 429, reason, {"Retry-After": str(refusal.retry_after)})]
        self._next_id += 1
        conn = Connection(f"{self.edge_id}.{self._next_id:x}", route, transport)
        self.connections[conn.id] = conn
        if address is not None and self.address_limits.enabled:
            conn.address = address  # released by _end(), which every admitted connection reaches
        conn.request = request
        conn.positions = positions
        return conn, self._place(conn)

    def _place(self, conn: Connection) -> list[Action]:
        """Ask the least-loaded worker with room to take ``conn``."""
        worker = self.pick_worker()
        if worker is None:
            if self.workers:
                # Upgrade, then close with 1013: a browser sees a close code
                # (an HTTP status never reaches page JavaScript).
                self.stats.refused[CloseCode.TRY_AGAIN_LATER] += 1
                conn.state = ConnectionState.UPGRADING
                conn.request = None
                conn.close_after_upgrade = (CloseCode.TRY_AGAIN_LATER, "all workers at capacity")
                return [Upgrade(conn, "")]
            return self._refuse(conn, 503, "no worker available")
        conn.attempts += 1
        conn.worker = worker
        worker.connections.add(conn.id)
        return [ToWorker(worker, wire.Connect(conn.id, conn.route, conn.request))]

    def pick_worker(self) -> WorkerState | None:
        """The least-loaded live worker with room, or None."""
        best = None
        for worker in self.workers.values():
            if worker.has_room() and (best is None or worker.placement_load < best.placement_load):
                best = worker
        return best

    def handshake_timed_out(self, conn: Connection) -> list[Action]:
        """The worker did not answer within WS_HANDSHAKE_TIMEOUT."""
        if conn.state is not ConnectionState.CONNECTING:
            return []
        worker_id = conn.worker.worker_id if conn.worker else "?"
        logger.warning("worker %s did not answer the handshake of %s in time", worker_id, conn.id)
        return self._refuse(conn, 503, "no worker available")

    def _accept(self, identity: bytes, message: wire.Accept) -> list[Action]:
        conn = self.connections.get(message.conn_id)
        if conn is None or conn.state is not ConnectionState.CONNECTING:
            return []
        conn.state = ConnectionState.UPGRADING
        conn.request = None
        return [Upgrade(conn, message.subprotocol)]

    def _deny(self, identity: bytes, message: wire.Deny) -> list[Action]:
        conn = self.connections.get(message.conn_id)
        if conn is None or conn.state is not ConnectionState.CONNECTING:
            return []
        return self._refuse(conn, message.status, message.reason or "denied")

    def _refused(self, conn: Connection | None, status: int, reason: str) -> Refuse:
        self.stats.refused[status] += 1
        return Refuse(conn, status, reason)

    def _refuse(self, conn: Connection, status: int, reason: str) -> list[Action]:
        """Refuse a handshake whose record exists: the record ends, and a worker that was asked is told."""
        return [self._refused(conn, status, reason),
                *self._end(conn, CloseCode.ABNORMAL, "handshake not completed", count=False)]

    def opened(self, conn: Connection) -> list[Action]:
        """The transport completed the upgrade."""
        if conn.state is not ConnectionState.UPGRADING:
            return []
        conn.state = ConnectionState.OPEN
        self._open += 1
        if conn.close_after_upgrade is not None:
            # Closed by the worker right after accepting (it was full, on_connect's
            # handler failed at once, or it was lost): close on open.
            code, reason = conn.close_after_upgrade
            conn.early = None
            return self._start_close(conn, code, reason)
        self.stats.connections_total += 1
        actions: list[Action] = []
        if conn.early:
            for binary, payload, position in conn.early:
                self.stats.frames_out += 1
                actions.append(Deliver([conn], binary, payload, position))
            conn.early = None
        return actions

    # -- client traffic ----------------------------------------------------------------

    def received(self, conn: Connection, binary: bool, payload: bytes) -> list[Action]:
        """One message from the client, for its worker."""
        refused = self._admit(conn, payload)
        if refused is not None:
            return refused
        headers = conn.data_headers
        if headers is None:
            # A connection's Data header never changes but for the binary flag.
            text, bin_ = (wire.Data(conn.id, conn.route, flag, b"").encode()[0] for flag in (False, True))
            headers = conn.data_headers = (text, bin_)
        return [Forward(conn.worker, conn, headers[binary], payload)]

    def received_event(self, conn: Connection, name: str, ack: int, payload: bytes) -> list[Action]:
        """One named event from a Socket.IO client (``payload``: its arguments as JSON), for its worker.

        Counted and limited as a message; it travels as a wire.Event, in order with the Data.
        """
        refused = self._admit(conn, payload)
        if refused is not None:
            return refused
        header = wire.Event(conn.id, conn.route, name, ack, b"").encode()[0]
        return [Forward(conn.worker, conn, header, payload)]

    def _admit(self, conn: Connection, payload: bytes) -> list[Action] | None:
        """None if the client's message may go to its worker; else what follows instead (maybe nothing)."""
        if conn.state is not ConnectionState.OPEN:
            return []  # this side is closing: the handler must not see a gap, then more
        worker = conn.worker
        if worker is None:
            return self._start_close(conn, CloseCode.SERVICE_RESTART, "worker unavailable")
        if self._per_connection_limits:
            now = self.clock()
            if conn.limits is None:
                conn.limits = MessageLimits(self.limit_settings, now)
            broken = conn.limits.allow(len(payload), now)
            if broken is not None:
                self.stats.rate_limited[broken] += 1
                reason = "message rate limit exceeded" if broken == "messages" else "byte rate limit exceeded"
                logger.info("connection %s: %s; closing it with 1008", conn.id, reason)
                # The worker hears now, not when the client answers the close frame.
                return self.close(conn, CloseCode.POLICY_VIOLATION, reason, fail=True, release=True)
        self.stats.frames_in += 1
        return None

    def close(self, conn: Connection, code: int, reason: str, fail: bool = False, release: bool = False
              ) -> list[Action]:
        """Close ``conn`` from this side (a transport's limit or protocol error).

        ``fail``: without waiting for the client's answer. ``release``: the
        worker hears at once, not when the transport ends (a client that does
        not read may take its time), so that the handler stops sending.
        """
        actions = self._start_close(conn, code, reason, fail)
        if release and actions:
            actions += self._end(conn, code, reason)
        return actions

    def closed(self, conn: Connection, received: tuple[int, str] | None = None, clean: bool = False
               ) -> list[Action]:
        """The transport has ended: ``received`` is the client's close (code, reason), if it sent one.

        The code recorded, and given to the worker's on_close, is the one of
        the close this side started, else the client's, else 1005 for a close
        frame without a code (``clean``), else 1006.
        """
        if conn.close_sent is not None:
            code, reason = conn.close_sent
        elif received is not None:
            code, reason = received
        elif clean:
            code, reason = CloseCode.NO_STATUS, ""
        else:
            code, reason = CloseCode.ABNORMAL, "connection dropped without a close frame"
        return self._end(conn, code, reason)

    def _start_close(self, conn: Connection, code: int, reason: str, fail: bool = False) -> list[Action]:
        state = conn.state
        if state is ConnectionState.UPGRADING:
            conn.close_after_upgrade = (code, reason)
            return []
        if state is not ConnectionState.OPEN:
            return []
        conn.state = ConnectionState.CLOSING
        self._open -= 1
        conn.close_sent = (int(code), reason)
        return [CloseClient(conn, int(code), reason, fail)]

    def _end(self, conn: Connection, code: int, reason: str, count: bool = True) -> list[Action]:
        """Forget ``conn``: its groups, its record; tell its worker. Idempotent."""
        if conn.state is ConnectionState.CLOSED:
            return []
        if conn.state is ConnectionState.OPEN:
            self._open -= 1
        conn.state = ConnectionState.CLOSED
        self.connections.pop(conn.id, None)
        if conn.address is not None:
            self.address_limits.release(conn.address)
            conn.address = None
        if count:
            self.stats.closed_by_code[code] += 1
        actions: list[Action] = []
        if conn.watching:
            for group in list(conn.watching):
                actions += self._unwatch(conn, group)
        if conn.groups:
            for group in conn.groups:
                actions += self._remove_member(conn, group)
            conn.groups = None
        conn.early = None
        worker = conn.worker
        if worker is not None and self.workers.get(worker.identity) is worker:
            worker.connections.discard(conn.id)
            actions.append(ToWorker(worker, wire.Disconnect(conn.id, conn.route, int(code), reason)))
        return actions

    def _remove_member(self, conn: Connection, group: str) -> list[Action]:
        """Take ``conn`` out of ``group`` (its own ``groups`` is the caller's business)."""
        members = self.groups.get(group)
        if members is None or conn.id not in members:
            return []
        members.discard(conn.id)
        if conn.holding is not None:
            conn.holding.pop(group, None)
            if not conn.holding:
                conn.holding = None
        actions = self._presence_changed(group, [], [conn.id]) if self.watchers else []
        if self.cluster:
            actions.append(MemberChanged(group, conn.id, False))
        if not members:
            del self.groups[group]
            if self.cluster:
                self._last_seen.pop(group, None)  # no member left to catch up
                actions.append(Unsubscribe(group))
        return actions

    def _presence_changed(self, group: str, joined: list[str], left: list[str]) -> list[Action]:
        """Tell the handlers watching ``group`` who joined and who left it."""
        watchers = self.watchers.get(group)
        if not watchers:
            return []
        diff = {"joined": joined, "left": left}
        actions: list[Action] = []
        for conn_id in watchers:
            conn = self.connections.get(conn_id)
            if conn is not None and conn.worker is not None:
                actions.append(ToWorker(conn.worker, wire.PresenceDiff(conn_id, group, diff)))
        return actions

    def _watch(self, identity: bytes, message: wire.Watch) -> list[Action]:
        conn = self.connections.get(message.conn_id)
        if conn is None or conn.state not in _MAY_JOIN:
            return []
        if not message.watch:
            return self._unwatch(conn, message.group)
        watchers = self.watchers.get(message.group)
        actions: list[Action] = []
        if watchers is None:
            watchers = self.watchers[message.group] = set()
            if self.cluster:
                actions.append(Subscribe(message.group, presence=True))
        watchers.add(conn.id)
        if conn.watching is None:
            conn.watching = set()
        conn.watching.add(message.group)
        return actions

    def _unwatch(self, conn: Connection, group: str) -> list[Action]:
        if conn.watching:
            conn.watching.discard(group)
        watchers = self.watchers.get(group)
        if watchers is None or conn.id not in watchers:
            return []
        watchers.discard(conn.id)
        if watchers:
            return []
        del self.watchers[group]
        return [Unsubscribe(group, presence=True)] if self.cluster else []

    def remote_presence(self, group: str, edge_id: str, joined: list[str], left: list[str]) -> list[Action]:
        """Cluster mode: joins and leaves on another edge, for the handlers here that watch ``group``."""
        if edge_id == self.edge_id:
            return []  # this edge's own, told when they happened
        return self._presence_changed(group, joined, left)

    # -- from workers and senders (the sub endpoint) -------------------------------------

    def reply(self, identity: bytes, message: wire.Message) -> list[Action]:
        """A message from a worker or another Django process, for a client, a group or the edge."""
        worker = self.workers.get(identity)
        if worker is not None:
            # Any reply is a sign of life: under a burst the worker's own Hello
            # may come late, and it must not be taken for dead meanwhile.
            worker.last_seen = self.clock()
        handle = self._on_reply.get(type(message))
        if handle is None:
            logger.warning("edge dropped an unexpected %s on the sub endpoint", type(message).__name__)
            return []
        return handle(identity, message)

    def _send(self, identity: bytes, message: wire.Send) -> list[Action]:
        conn = self.connections.get(message.conn_id)
        if conn is None:
            logger.debug("send to gone connection %s dropped", message.conn_id)
            return []
        if conn.state is ConnectionState.OPEN:
            self.stats.frames_out += 1
            return [Deliver([conn], message.binary, message.payload)]
        if conn.state in (ConnectionState.CONNECTING, ConnectionState.UPGRADING):
            # Sent from on_connect: the client gets it first thing after the upgrade.
            if conn.early is None:
                conn.early = []
            conn.early.append((message.binary, message.payload, None))
        return []

    def _group_send(self, identity: bytes, message: wire.GroupSend) -> list[Action]:
        if not self.history:
            return self._once(identity, message, lambda: self.members_of(message.group, exclude=message.exclude))
        return self._once(identity, message, lambda: self._fan_out(message))

    def _fan_out(self, message: wire.GroupSend) -> tuple[list[Connection], Position | None]:
        """The open members of a group that may keep history; the message is kept first, if it does.

        Members that asked for positions and are still in their handshake (a
        replay waits for them in ``early``) get it after that replay: between
        their join and their upgrade, nothing sent to the group falls in a gap.
        """
        position = self.history.record(message.group, message.binary, message.payload)
        if position is None:
            return self.members_of(message.group, exclude=message.exclude), None
        return self._members_at(message.group, message.exclude, (message.binary, message.payload, position)), position

    def members_of(self, group: str, exclude: str = "") -> list[Connection]:
        """The open connections of ``group`` (but ``exclude``)."""
        members = self.groups.get(group)
        if not members:
            return []
        open_ = ConnectionState.OPEN
        connections = self.connections
        targets = []
        for conn_id in members:
            if conn_id != exclude:
                conn = connections.get(conn_id)
                if conn is not None and conn.state is open_:
                    targets.append(conn)
        return targets

    def _send_to(self, identity: bytes, message: wire.SendTo) -> list[Action]:
        def target() -> list[Connection]:
            conn = self.connections.get(message.conn_id)
            return [conn] if conn is not None and conn.state is ConnectionState.OPEN else []

        return self._once(identity, message, target)

    def _once(self, identity: bytes, message: wire.GroupSend | wire.SendTo,
              targets: typing.Callable[[], list[Connection] | tuple[list[Connection], Position | None]]
              ) -> list[Action]:
        """Deliver a sender's message, acknowledged when it has a ref, unless that ref came before.

        A sender's ref is its idempotency key: a retry with the same key (or
        the original, arriving late after a partition) within ``send_key_ttl``
        is acknowledged with the first delivery's count and not delivered twice.
        """
        ref = message.ref
        if not ref:
            found = targets()
            position = None
            if type(found) is tuple:
                found, position = found
            self.stats.frames_out += len(found)
            return [Deliver(found, message.binary, message.payload, position)] if found else []
        now = self.clock()
        recent = self._recent_sends
        while recent and (next(iter(recent.values()))[0] <= now or len(recent) > RECENT_SENDS_LIMIT):
            recent.popitem(last=False)  # oldest first: every entry lives the same ttl
        seen = recent.get(ref)
        if seen is not None:
            return [Answer(identity, wire.Ack(ref, self.edge_id, seen[1]))]
        found = targets()
        position = None
        if type(found) is tuple:
            found, position = found
        self.stats.frames_out += len(found)
        if self.send_key_ttl > 0:
            recent[ref] = (now + self.send_key_ttl, len(found))
        actions: list[Action] = [Deliver(found, message.binary, message.payload, position)] if found else []
        actions.append(Answer(identity, wire.Ack(ref, self.edge_id, len(found))))
        return actions

    def broker_message(self, message: wire.Message, position: tuple[str, int] | None = None) -> list[Action]:
        """Cluster mode: a message the broker carried (a group's, or one for a connection here).

        ``position``: the (epoch, offset) the broker gave a message of a group
        with history. The broker already kept idempotency keys (a repeat is
        never published), so nothing is acknowledged or remembered here.
        """
        if isinstance(message, wire.GroupSend):
            if position is not None:
                return self._fan_out_at(message, Position(message.group, *position))
            # No position: the sender keeps no history for this group; neither does the edge in a cluster.
            found = self.members_of(message.group, exclude=message.exclude)
            self.stats.frames_out += len(found)
            return [Deliver(found, message.binary, message.payload)] if found else []
        if isinstance(message, wire.SendTo):
            return self._send_to(b"", dataclasses.replace(message, ref=""))
        if isinstance(message, wire.CloseConnections):
            return self._close_connections(b"", dataclasses.replace(message, ref=""))
        logger.warning("edge dropped an unexpected %s from the broker", type(message).__name__)
        return []

    def _fan_out_at(self, message: wire.GroupSend, position: Position) -> list[Action]:
        """A group message whose position the broker assigned: to the open members, in order.

        A member still in its handshake that asked for positions gets it after
        its upgrade; one whose gap the broker is being asked for gets it after
        that gap (see gap_fetched).
        """
        members = self.groups.get(message.group)
        if not members:
            return []
        group, exclude = message.group, message.exclude
        entry = (message.binary, message.payload, position)
        held = self._catching_up.get(group)
        if held is not None:
            held.append((message, position))
            return []
        self._last_seen[group] = (position.epoch, position.offset)
        targets = self._members_at(group, exclude, entry)
        self.stats.frames_out += len(targets)
        return [Deliver(targets, message.binary, message.payload, position)] if targets else []

    def _members_at(self, group: str, exclude: str, entry: tuple[bool, bytes, Position]) -> list[Connection]:
        """The open members of ``group`` that get ``entry`` (binary, payload, position) now.

        The others get it later, in order: a member still in its handshake
        that asked for positions after its upgrade (``early``: between its join
        and its upgrade nothing falls in a gap), and one whose gap the broker is
        being asked for after that gap (``holding``, cluster mode).
        """
        targets: list[Connection] = []
        connections = self.connections
        for conn_id in self.groups.get(group, ()):
            if conn_id == exclude:
                continue
            conn = connections.get(conn_id)
            if conn is None:
                continue
            if conn.holding is not None and group in conn.holding:
                conn.holding[group].append(entry)
            elif conn.state is ConnectionState.OPEN:
                targets.append(conn)
            elif conn.positions is not None and conn.state in _EARLY:
                if conn.early is None:
                    conn.early = []
                conn.early.append(entry)
        return targets

    def gap_fetched(self, conn_id: str | None, group: str, epoch: str, last: int,
                    entries: list[tuple[int, bool, bytes]] | None) -> list[Action]:
        """Cluster mode: the broker answered a FetchGap: the group stands at ``(epoch, last)``.

        ``entries``: (offset, binary, payload) of every message after the
        client's position, or None when they are no longer all kept (or the
        broker could not be asked): the client is told to resync. Then come
        the live messages held meanwhile, but those the replay already held.
        """
        if conn_id is None:
            return self._caught_up(group, epoch, last, entries)
        conn = self.connections.get(conn_id)
        if conn is None or conn.holding is None or group not in conn.holding:
            return []  # closed, or left the group, meanwhile
        held = conn.holding.pop(group)
        if not conn.holding:
            conn.holding = None
        if group in self._catching_up:
            # The edge's own catch-up of this group is under way: it must not tell this client again.
            self._recovered_meanwhile.setdefault(group, {})[conn.id] = (epoch, last)
        if entries is None:
            frames = [(False, b"", Position(group, epoch, last, resync=True))]
        else:
            frames = [(binary, payload, Position(group, epoch, offset)) for offset, binary, payload in entries]
        frames += [entry for entry in held if entry[2].epoch != epoch or entry[2].offset > last]
        actions: list[Action] = []
        if conn.state is ConnectionState.OPEN:
            self.stats.frames_out += len(frames)
            actions += [Deliver([conn], binary, payload, position) for binary, payload, position in frames]
        elif conn.state in _EARLY:
            if conn.early is None:
                conn.early = []
            conn.early += frames
        if conn.worker is not None and conn.state is not ConnectionState.CLOSED:
            actions.append(ToWorker(conn.worker, wire.Recovery(conn.id, group, entries is not None)))
        return actions

    def broker_resumed(self) -> list[Action]:
        """Cluster mode: the broker is back after an outage; catch up the groups with history here.

        Their live messages are held until the broker says what this edge
        may have missed (a CatchUp each): every member then gets that first,
        or, if it is no longer kept, each client that asked for positions the
        resync signal, as after any gap the history cannot fill.
        """
        actions: list[Action] = []
        for group in self.groups:
            if group in self._catching_up or self.history.bound_for(group) is None:
                continue
            self._catching_up[group] = []
            # No message received yet since its first member joined here: where it stood is not
            # known, so whatever was sent meanwhile cannot be told apart: its clients resync.
            actions.append(CatchUp(group, *self._last_seen.get(group, ("", 0))))
        return actions

    def _caught_up(self, group: str, epoch: str, last: int, entries: list[tuple[int, bool, bytes]] | None
                   ) -> list[Action]:
        held = self._catching_up.pop(group, None)
        if held is None:
            return []
        recovered = self._recovered_meanwhile.pop(group, {})
        members = [conn for conn in self.members_of(group)
                   if not (conn.holding and group in conn.holding) and conn.id not in recovered]
        actions: list[Action] = []
        if entries is None:
            logger.warning("edge %s: messages of %s sent while the broker was away are lost; clients resync",
                           self.edge_id, group)
            told = [conn for conn in members if conn.positions is not None]
            if told:
                actions.append(Deliver(told, False, b"", Position(group, epoch, last, resync=True)))
        else:
            actions += [Deliver(members, binary, payload, Position(group, epoch, offset))
                        for offset, binary, payload in entries if members]
        if epoch:
            self._last_seen[group] = (epoch, last)
        for message, position in held:
            if position.epoch == epoch and position.offset <= last:
                continue  # in the catch-up already
            self._last_seen[group] = (position.epoch, position.offset)
            targets = [conn for conn in members if conn.id != message.exclude]
            for conn_id, (their_epoch, their_last) in recovered.items():
                conn = self.connections.get(conn_id)
                if (conn is not None and conn.state is ConnectionState.OPEN and conn_id != message.exclude
                        and (position.epoch != their_epoch or position.offset > their_last)):
                    targets.append(conn)
            if targets:
                actions.append(Deliver(targets, message.binary, message.payload, position))
        self.stats.frames_out += sum(len(a.targets) for a in actions)
        return actions

    def _presence(self, identity: bytes, message: wire.Presence) -> list[Action]:
        members = sorted(self.groups.get(message.group, ()))
        return [Answer(identity, wire.Members(message.ref, self.edge_id, {"ids": members}))]

    def _event_ack(self, identity: bytes, message: wire.EventAck) -> list[Action]:
        conn = self.connections.get(message.conn_id)
        if conn is None or conn.state is not ConnectionState.OPEN:
            return []
        return [Acknowledge(conn, message.ack, message.payload)]

    def _close(self, identity: bytes, message: wire.Close) -> list[Action]:
        conn = self.connections.get(message.conn_id)
        if conn is None:
            return []
        return self._start_close(conn, message.code, message.reason)

    def _close_connections(self, identity: bytes, message: wire.CloseConnections) -> list[Action]:
        """A sender's close_connection() or close_group(): close the open ones, Ack how many.

        Not de-duplicated by ref as sends are: closing twice is closing once.
        """
        if message.conn_id:
            found = self.connections.get(message.conn_id)
            targets = [found] if found is not None and found.state is ConnectionState.OPEN else []
        else:
            targets = self.members_of(message.group)
        actions: list[Action] = []
        for conn in targets:
            actions += self._start_close(conn, message.code, message.reason)
        if message.ref:
            actions.append(Answer(identity, wire.Ack(message.ref, self.edge_id, len(targets))))
        return actions

    def _join(self, identity: bytes, message: wire.Join) -> list[Action]:
        conn = self.connections.get(message.conn_id)
        if conn is not None and conn.state in _MAY_JOIN:
            actions: list[Action] = []
            members = self.groups.get(message.group)
            if members is None:
                members = self.groups[message.group] = set()
                if self.cluster:
                    actions.append(Subscribe(message.group))
            if conn.id not in members:
                if self.cluster:
                    actions.append(MemberChanged(message.group, conn.id, True))
                if self.watchers:
                    actions += self._presence_changed(message.group, [conn.id], [])
            members.add(conn.id)
            if conn.groups is None:
                conn.groups = set()
            conn.groups.add(message.group)
            positions = conn.positions
            if positions is not None and message.group in positions.positions:
                epoch, offset = positions.positions.pop(message.group)
                if self.cluster and self.history.bound_for(message.group) is not None:
                    # The broker keeps this history: ask it, and hold the live messages meanwhile.
                    if conn.holding is None:
                        conn.holding = {}
                    conn.holding[message.group] = []
                    actions.append(FetchGap(conn, message.group, epoch, offset))
                else:
                    actions += self._recover(conn, message.group, epoch, offset)
            return actions
        return []

    def _recover(self, conn: Connection, group: str, epoch: str, offset: int) -> list[Action]:
        """``conn`` joined ``group``, for which its client presented ``(epoch, offset)``: replay the gap, or say resync.

        Done here, in the join's own event, so that no message of the group
        can come between the replay and the live ones: the live ones are
        delivered by later events, and find the connection a member already.
        Its worker hears the outcome (wire.Recovery) for the handler's hooks.
        """
        entries, here = self.history.replay(group, epoch, offset)
        if entries is None:
            logger.debug("connection %s: gap in %s after %s:%d not covered; resync", conn.id, group, epoch, offset)
            frames = [(False, b"", here)]
        else:
            frames = [(e.binary, e.payload, Position(group, here.epoch, e.offset)) for e in entries]
        actions: list[Action] = []
        if conn.state is ConnectionState.OPEN:
            self.stats.frames_out += len(frames)
            actions += [Deliver([conn], binary, payload, position) for binary, payload, position in frames]
        elif frames:
            if conn.early is None:
                conn.early = []
            conn.early += frames
        if conn.worker is not None:
            actions.append(ToWorker(conn.worker, wire.Recovery(conn.id, group, entries is not None)))
        return actions

    def _leave(self, identity: bytes, message: wire.Leave) -> list[Action]:
        conn = self.connections.get(message.conn_id)
        if conn is None:
            return []
        if conn.groups:
            conn.groups.discard(message.group)
        return self._remove_member(conn, message.group)

    # -- workers (the push endpoint) ------------------------------------------------------

    def worker_event(self, identity: bytes, message: wire.Message) -> list[Action]:
        """A Hello (heartbeat) or Goodbye from a worker."""
        if isinstance(message, wire.Goodbye):
            worker = self.workers.get(identity)
            return self.worker_lost(worker, "it is stopping") if worker is not None else []
        if not isinstance(message, wire.Hello):
            logger.warning("edge dropped an unexpected %s on the push endpoint", type(message).__name__)
            return []
        now = self.clock()
        worker = self.workers.get(identity)
        if worker is not None:
            worker.update(message, now)
            return []
        worker = self.workers[identity] = WorkerState(identity, message, now)
        logger.info("worker %s joined (capacity %s)", worker.worker_id, worker.capacity or "unlimited")
        return [ToWorker(worker, wire.Ping(self.edge_id)), WorkerChanged("joined", worker)]

    def tick(self) -> list[Action]:
        """Each heartbeat interval: ping the workers, retry their backlogs, drop the silent ones."""
        now = self.clock()
        actions: list[Action] = []
        for worker in list(self.workers.values()):
            silent = now - worker.last_seen
            if silent > self.heartbeat_timeout:
                actions += self.worker_lost(worker, f"silent for {silent:.1f}s")
                continue
            actions.append(ToWorker(worker, wire.Ping(self.edge_id)))
            # One at a time: send_failed() puts it back in front if the queue is still full.
            if worker.backlog:
                actions.append(ToWorker(worker, worker.backlog.popleft()))
        if self.history:
            # A log kept while its group has members; forgotten after ttl of silence without any.
            self.history.sweep(self.groups.__contains__)
        return actions

    def send_failed(self, worker: WorkerState, message: wire.Message | None,
                    connections: typing.Sequence[Connection] = ()) -> list[Action]:
        """The link could not queue ``message`` (or the client frames of ``connections``) for ``worker``.

        Its queue is full (the worker is ``queue limit`` messages behind), or
        it is gone (the link then calls worker_lost() first).
        """
        if self.workers.get(worker.identity) is not worker:
            message_conn = getattr(message, "conn_id", None)
            conn = self.connections.get(message_conn) if message_conn else None
            if isinstance(message, wire.Connect) and conn is not None:
                return self._retry(conn)
            return []
        actions: list[Action] = []
        if isinstance(message, wire.Disconnect):
            worker.backlog.appendleft(message)
        elif isinstance(message, wire.Connect):
            conn = self.connections.get(message.conn_id)
            if conn is not None:
                worker.connections.discard(conn.id)
                logger.warning("worker %s is behind; refusing more for it", worker.worker_id)
                actions += self._refuse(conn, 503, "no worker available")
        for conn in connections:
            actions += self._start_close(conn, CloseCode.TRY_AGAIN_LATER, "worker unavailable")
        return actions

    def _retry(self, conn: Connection) -> list[Action]:
        """The worker asked to take ``conn`` vanished before answering: ask the next one."""
        if conn.state is not ConnectionState.CONNECTING:
            return []
        conn.worker = None
        if conn.attempts >= HANDSHAKE_ATTEMPTS:
            return self._refuse(conn, 503, "no worker available")
        return self._place(conn)

    def worker_lost(self, worker: WorkerState, why: str) -> list[Action]:
        """``worker`` is gone (silent, stopping, its socket disconnected): its connections end with 1012.

        A handshake it had not answered yet goes to the next worker.
        """
        if self.workers.get(worker.identity) is not worker:
            return []
        del self.workers[worker.identity]
        logger.warning("worker %s lost (%s); closing its %d connections with 1012", worker.worker_id, why,
                       len(worker.connections))
        actions: list[Action] = []
        for conn_id in list(worker.connections):
            conn = self.connections.get(conn_id)
            if conn is None:
                continue
            if conn.state is ConnectionState.CONNECTING:
                actions += self._retry(conn)
            else:
                conn.worker = None
                actions += self._start_close(conn, CloseCode.SERVICE_RESTART, "worker lost")
        worker.connections.clear()
        worker.backlog.clear()
        actions.append(WorkerChanged("lost", worker))
        return actions

    def shutdown(self) -> list[Action]:
        """Close every open client with 1001 (going away)."""
        actions: list[Action] = []
        for conn in list(self.connections.values()):
            actions += self._start_close(conn, CloseCode.GOING_AWAY, "server shutdown")
        return actions


#: States in which a handler's join() counts (from on_connect, or once open).
_MAY_JOIN = (ConnectionState.CONNECTING, ConnectionState.UPGRADING, ConnectionState.OPEN)
#: States in which what a connection is sent waits in ``early`` for the upgrade.
_EARLY = (ConnectionState.CONNECTING, ConnectionState.UPGRADING)
