"""EdgeCore: the one object the edge's events go into (see the package docstring for the table of events)."""

from __future__ import annotations

import collections
import logging
import time
import typing
import uuid

from django_ws import credentials, wire
from django_ws.codes import CloseCode
from django_ws.history import History, Positions

from ..limits import LimitSettings
from .actions import Action, CloseClient, Forward, Refuse, ToWorker, Upgrade, WorkerChanged, deliver
from .admission import Admission
from .groups import Groups
from .lifecycle import Lifecycle, awaits_worker, ending, is_open, may_join
from .records import Connection, Stats, WorkerState
from .recovery import Recovery
from .sends import RecentSends, Sends
from .workers import Workers

logger = logging.getLogger("django_ws.edge")

#: How many workers a handshake tries when the one asked vanishes meanwhile.
HANDSHAKE_ATTEMPTS = 3


class EdgeCore:
    """Connections, workers and groups of one edge: events in, actions out.

    ``resolve(route)`` says whether a route exists (the mount's resolver);
    ``clock`` gives monotonic seconds (tests pass their own).

    It keeps the connection table, and places, opens and closes connections;
    each other job is a collaborator it owns, sharing that table:
    ``lifecycle`` (every state rule), ``pool`` (the workers), ``members``
    (groups and watchers), ``recovery`` (positions, gaps, catch-up), ``sends``
    (messages for clients, de-duplicated) and ``admission`` (rate limits).
    """

    def __init__(self, *, resolve: typing.Callable[[str], object], heartbeat_timeout: float,
                 max_connections: int = 0, limits: LimitSettings | None = None, send_key_ttl: float = 60.0,
                 edge_id: str | None = None, history: History | None = None, cluster: bool = False,
                 presence_window: float = 0.1, clock: typing.Callable[[], float] = time.monotonic):
        self.edge_id = edge_id or uuid.uuid4().hex[:16]
        self.resolve = resolve
        self.heartbeat_timeout = heartbeat_timeout
        self.max_connections = max_connections
        self.clock = clock
        self._next_id = 0
        #: Every connection not yet CLOSED, by id: O(1) routing of replies.
        self.connections: dict[str, Connection] = {}
        self.pool = Workers(self.edge_id, clock)
        self.workers: dict[bytes, WorkerState] = self.pool.workers
        #: Cluster mode: group messages come from the broker, which must hear of joins and leaves.
        self.cluster = cluster
        #: The groups' history (WS_GROUP_HISTORY); falsy when no pattern is set.
        self.history = history if history is not None else History([], clock=clock)
        self.stats = Stats()
        #: When this core started (its clock): the edge's uptime.
        self.started = clock()
        #: Connections not yet ended, by the name of their route (kept at connect and end,
        #: so the stats never walk the connection table for it).
        self.by_route: collections.Counter[str] = collections.Counter()
        self.lifecycle = Lifecycle()
        self.members = Groups(self.connections, cluster, self.edge_id, presence_window)
        #: group -> the ids of its members here; group -> the ids of its watchers (the same dicts as members').
        self.groups, self.watchers = self.members.groups, self.members.watchers
        self.recovery = Recovery(self.connections, self.members, self.history, self.stats, cluster, self.edge_id)
        self.members.on_leave = self.recovery.left
        self.sends = Sends(self.connections, self.members, self.recovery, self.history,
                           RecentSends(send_key_ttl, self.edge_id, self.stats, clock), self.stats,
                           self._start_close)
        #: The rate limits of docs/security.rst (all off by default here; the edge passes the settings).
        self.admission = Admission(limits or LimitSettings(), self.stats, clock)
        self.limit_settings, self.address_limits = self.admission.settings, self.admission.address_limits
        #: Set once the workers were restarted with code the edge has not loaded (SIGHUP):
        #: the edge's route table may be stale, so a path it does not know goes to a
        #: worker, which answers 404 itself if the new code has no such route.
        self.routes_from_workers = False
        #: The connections whose token expires, by id: each tick closes those past their time.
        self.expiring: dict[str, Connection] = {}
        sends, members = self.sends, self.members
        self._on_reply = {
            wire.Send: sends.send, wire.GroupSend: sends.group_send, wire.SendTo: sends.send_to,
            wire.EventAck: sends.event_ack, wire.CloseConnections: sends.close_connections,
            wire.Presence: members.presence, wire.Watch: members.watch,
            wire.Leave: members.leave, wire.Join: self._join, wire.JoinAs: self._join,
            wire.PresenceQuery: members.query,
            wire.Accept: self._accept, wire.Deny: self._deny, wire.Close: self._close,
            wire.Credentials: self._credentials,
        }

    # -- figures ----------------------------------------------------------------

    @property
    def open_count(self) -> int:
        """Connections in the OPEN state."""
        return self.lifecycle.open_count

    @property
    def handshakes_pending(self) -> int:
        """Connections waiting for a worker's answer."""
        return sum(1 for c in self.connections.values() if awaits_worker(c))

    def record_counts(self) -> dict[str, int]:
        """How many records each of the core's tables holds: what a long run must keep flat.

        Every table that grows with connections, groups, sends or client
        addresses is here, so that a leak in any of them shows in the stats
        (``records``) and in the soak (bench/soak.py).
        """
        return {
            "connections": len(self.connections),
            "groups": len(self.groups),
            "group_members": sum(len(m) for m in self.groups.values()),
            "watched_groups": len(self.watchers),
            "worker_connections": sum(len(w.connections) for w in self.workers.values()),
            "worker_backlog": sum(len(w.backlog) for w in self.workers.values()),
            "recent_sends": len(self.sends.recent),
            "addresses": len(self.address_limits.addresses),
            **self.recovery.records(),
        }

    def members_of(self, group: str, exclude: str = "") -> list[Connection]:
        """The open connections of ``group`` (but ``exclude``)."""
        return self.members.members_of(group, exclude)

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
        match = self.resolve(route)
        if match is None and not self.routes_from_workers:
            return None, [self._refused(None, 404, "no websocket route here")]
        # Handshakes still waiting for a worker count too: a burst of them
        # must not carry the server past its limit.
        if self.max_connections and len(self.connections) >= self.max_connections:
            return None, [self._refused(None, 503, "too many connections")]
        refusal = self.admission.refusal(address, request)
        if refusal is not None:
            return None, [refusal]
        self._next_id += 1
        conn = Connection(f"{self.edge_id}.{self._next_id:x}", route, transport, route_name(match))
        self.connections[conn.id] = conn
        self.by_route[conn.route_name] += 1
        self.admission.admitted(conn, address)  # released by _end(), which every admitted connection reaches
        conn.request = request
        conn.positions = positions
        return conn, self._place(conn)

    def _place(self, conn: Connection) -> list[Action]:
        """Ask the least-loaded worker with room to take ``conn``."""
        worker = self.pool.place(conn)
        if worker is None:
            if self.workers:
                # Upgrade, then close with 1013: a browser sees a close code
                # (an HTTP status never reaches page JavaScript).
                self.stats.refused[CloseCode.TRY_AGAIN_LATER] += 1
                self.lifecycle.accept(conn)
                self.lifecycle.start_close(conn, CloseCode.TRY_AGAIN_LATER, "all workers at capacity")
                return [Upgrade(conn, "")]
            return self._refuse(conn, 503, "no worker available")
        return [ToWorker(worker, wire.Connect(conn.id, conn.route, conn.request))]

    def pick_worker(self) -> WorkerState | None:
        """The least-loaded live worker with room, or None."""
        return self.pool.pick()

    def handshake_timed_out(self, conn: Connection) -> list[Action]:
        """The worker did not answer within WS_HANDSHAKE_TIMEOUT."""
        if not awaits_worker(conn):
            return []
        worker_id = conn.worker.worker_id if conn.worker else "?"
        logger.warning("worker %s did not answer the handshake of %s in time", worker_id, conn.id)
        return self._refuse(conn, 503, "no worker available")

    def _accept(self, identity: bytes, message: wire.Accept) -> list[Action]:
        conn = self.connections.get(message.conn_id)
        if conn is None or not self.lifecycle.accept(conn):
            return []
        return [Upgrade(conn, message.subprotocol)]

    def _deny(self, identity: bytes, message: wire.Deny) -> list[Action]:
        conn = self.connections.get(message.conn_id)
        if conn is None or not awaits_worker(conn):
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
        if not self.lifecycle.upgraded(conn):
            return []
        if conn.close_after_upgrade is not None:
            # Closed by the worker right after accepting (it was full, on_connect's
            # handler failed at once, or it was lost): close on open.
            code, reason = conn.close_after_upgrade
            conn.early = None
            return self._start_close(conn, code, reason)
        self.stats.connections_total += 1
        actions: list[Action] = []
        if conn.early:
            for frame in conn.early:
                actions += deliver(self.stats, [conn], *frame)
            conn.early = None
        return actions

    # -- client traffic ----------------------------------------------------------------

    def received(self, conn: Connection, binary: bool, payload: bytes) -> list[Action]:
        """One message from the client, for its worker."""
        refused = self._admit(conn, payload)
        if refused is not None:
            return refused
        if conn.expires is not None and not binary:
            token = credentials.parse_refresh(payload)
            if token is not None:
                return self._refresh(conn, token)
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
        if name == credentials.REFRESH_EVENT and conn.expires is not None:
            token = credentials.parse_refresh_event(payload)
            if token is None:
                return self.close(conn, CloseCode.POLICY_VIOLATION, "invalid token", release=True)
            return self._refresh(conn, token)
        header = wire.Event(conn.id, conn.route, name, ack, b"").encode()[0]
        return [Forward(conn.worker, conn, header, payload)]

    def _admit(self, conn: Connection, payload: bytes) -> list[Action] | None:
        """None if the client's message may go to its worker; else what follows instead (maybe nothing)."""
        if not is_open(conn):
            return []  # this side is closing: the handler must not see a gap, then more
        if conn.worker is None:
            return self._start_close(conn, CloseCode.SERVICE_RESTART, "worker unavailable")
        if self.admission.per_connection:
            reason = self.admission.over_budget(conn, len(payload))
            if reason is not None:
                # The worker hears now, not when the client answers the close frame.
                return self.close(conn, CloseCode.POLICY_VIOLATION, reason, fail=True, release=True)
        self.stats.frames_in += 1
        return None

    def _refresh(self, conn: Connection, token: str) -> list[Action]:
        """The client sent a fresh token: its worker checks it (and answers Credentials, or closes)."""
        return [ToWorker(conn.worker, wire.Refresh(conn.id, conn.route, token))]

    def _credentials(self, identity: bytes, message: wire.Credentials) -> list[Action]:
        """What ``conn``'s access rests on, before its Accept or after a Refresh its worker accepted.

        The edge joins it to its user's and its session's groups, which a
        deactivation, a password change or a logout closes on every edge.
        """
        conn = self.connections.get(message.conn_id)
        if conn is None or not may_join(conn):
            return []
        actions: list[Action] = []
        if message.user and not conn.user:
            conn.user = message.user
            actions += self.members.join(conn, credentials.user_group(message.user))
        if message.session and not conn.session:
            conn.session = message.session
            actions += self.members.join(conn, credentials.session_group(message.session))
        if message.expires_ms > 0:
            conn.expires = self.clock() + message.expires_ms / 1000
            self.expiring[conn.id] = conn
        return actions

    def _expire(self, now: float) -> list[Action]:
        """Close, with 1008, the connections whose token expired and that sent no fresh one."""
        actions: list[Action] = []
        for conn in [c for c in self.expiring.values() if c.expires <= now and not awaits_worker(c)]:
            del self.expiring[conn.id]
            logger.info("connection %s: its token expired; closing it with 1008", conn.id)
            actions += self.close(conn, CloseCode.POLICY_VIOLATION, "token expired", release=True)
        return actions

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
        return self._end(conn, *ending(conn, received, clean))

    def _start_close(self, conn: Connection, code: int, reason: str, fail: bool = False) -> list[Action]:
        if not self.lifecycle.start_close(conn, code, reason):
            return []
        return [CloseClient(conn, int(code), reason, fail)]

    def _end(self, conn: Connection, code: int, reason: str, count: bool = True) -> list[Action]:
        """Forget ``conn``: its groups, its record; tell its worker. Idempotent."""
        if not self.lifecycle.end(conn):
            return []
        self.connections.pop(conn.id, None)
        self.by_route[conn.route_name] -= 1
        if not self.by_route[conn.route_name]:
            del self.by_route[conn.route_name]
        self.expiring.pop(conn.id, None)
        self.admission.release(conn)
        if count:
            self.stats.closed_by_code[code] += 1
        actions = self.members.drop(conn)
        conn.early = None
        worker = conn.worker
        if worker is not None and self.pool.current(worker):
            worker.connections.discard(conn.id)
            actions.append(ToWorker(worker, wire.Disconnect(conn.id, conn.route, int(code), reason)))
        return actions

    # -- from workers and senders (the sub endpoint) -------------------------------------

    def reply(self, identity: bytes, message: wire.Message) -> list[Action]:
        """A message from a worker or another Django process, for a client, a group or the edge."""
        self.pool.heard_from(identity)  # a sign of life: it must not be taken for dead meanwhile
        handle = self._on_reply.get(type(message))
        if handle is None:
            logger.warning("edge dropped an unexpected %s on the sub endpoint", type(message).__name__)
            return []
        return handle(identity, message)

    def _close(self, identity: bytes, message: wire.Close) -> list[Action]:
        conn = self.connections.get(message.conn_id)
        if conn is None:
            return []
        return self._start_close(conn, message.code, message.reason)

    def _join(self, identity: bytes, message: wire.Join | wire.JoinAs) -> list[Action]:
        conn = self.connections.get(message.conn_id)
        if conn is None or not may_join(conn):
            return []
        if isinstance(message, wire.JoinAs):
            rejoin = conn.groups is not None and message.group in conn.groups
            actions = self.members.join(conn, message.group, message.user, message.info)
            return actions if rejoin else actions + self.recovery.joined(conn, message.group)
        return self.members.join(conn, message.group) + self.recovery.joined(conn, message.group)

    # -- from the broker (cluster mode) -----------------------------------------------------

    def broker_message(self, message: wire.Message, position: tuple[str, int] | None = None) -> list[Action]:
        """Cluster mode: a message the broker carried (a group's, or one for a connection here).

        ``position``: the (epoch, offset) the broker gave a message of a group
        with history. The broker already kept idempotency keys (a repeat is
        never published), so nothing is acknowledged or remembered here.
        """
        return self.sends.from_broker(message, position)

    def gap_fetched(self, conn_id: str | None, group: str, epoch: str, last: int,
                    entries: list[tuple[int, bool, bytes]] | None) -> list[Action]:
        """Cluster mode: the broker answered a FetchGap for ``conn_id`` (None: a CatchUp); see Recovery.gap_fetched."""
        return self.recovery.gap_fetched(conn_id, group, epoch, last, entries)

    def broker_resumed(self) -> list[Action]:
        """Cluster mode: the broker is back after an outage; catch up the groups with history here (see Recovery)."""
        return self.recovery.broker_resumed()

    def remote_presence(self, group: str, edge_id: str, joined: list[str], left: list[str],
                        users_joined: dict[str, dict] | None = None, users_left: list[str] | None = None
                        ) -> list[Action]:
        """Cluster mode: joins and leaves on another edge, for the handlers here that watch ``group``.

        ``users_joined`` / ``users_left``: the users the broker saw appear or
        go (from any edge, this one too: only the broker counts across edges).
        """
        actions = []
        if users_joined or users_left:
            actions = self.members.user_changed(group, users_joined or {}, users_left or ())
        if edge_id == self.edge_id:
            return actions  # this edge's own connections, told when they happened
        return self.members.presence_changed(group, joined, left) + actions

    def flush_presence(self) -> list[Action]:
        """The presence window closed (a FlushPresenceLater's delay): tell the watchers the user changes."""
        return self.members.flush_presence()

    # -- workers (the push endpoint) ------------------------------------------------------

    def worker_event(self, identity: bytes, message: wire.Message) -> list[Action]:
        """A Hello (heartbeat) or Goodbye from a worker."""
        if isinstance(message, wire.Goodbye):
            worker = self.workers.get(identity)
            return self.worker_lost(worker, "it is stopping") if worker is not None else []
        if not isinstance(message, wire.Hello):
            logger.warning("edge dropped an unexpected %s on the push endpoint", type(message).__name__)
            return []
        return self.pool.hello(identity, message)

    def tick(self) -> list[Action]:
        """Each heartbeat interval: ping the workers, retry their backlogs, drop the silent ones."""
        now = self.clock()
        actions: list[Action] = []
        for worker in list(self.workers.values()):
            silent = now - worker.last_seen
            if silent > self.heartbeat_timeout:
                actions += self.worker_lost(worker, f"silent for {silent:.1f}s")
            else:
                actions += self.pool.beat(worker)
        if self.expiring:
            actions += self._expire(now)
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
        if not self.pool.current(worker):
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
        if not awaits_worker(conn):
            return []
        conn.worker = None
        if conn.attempts >= HANDSHAKE_ATTEMPTS:
            return self._refuse(conn, 503, "no worker available")
        return self._place(conn)

    def worker_lost(self, worker: WorkerState, why: str) -> list[Action]:
        """``worker`` is gone (silent, stopping, its socket disconnected): its connections end with 1012.

        A handshake it had not answered yet goes to the next worker.
        """
        if not self.pool.remove(worker, why):
            return []
        actions: list[Action] = []
        for conn_id in list(worker.connections):
            conn = self.connections.get(conn_id)
            if conn is None:
                continue
            if awaits_worker(conn):
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


def route_name(match: object) -> str:
    """The name a route's match has in WS_URLCONF (with its namespaces), or "" for an unnamed or unknown route."""
    return getattr(match, "view_name", None) or ""
