"""EdgeCore under random sequences of events (hypothesis), with its invariants checked after every step.

The machine plays the adapters: a transport that asks for handshakes, completes
upgrades the core asks for, forwards frames and reports its end; workers that
say hello, accept, deny, reply, join, leave, close and vanish; a Django process
that sends to a group; SIGHUP, which replaces every worker with new code. The
invariants are those of docs/reliability.rst: each connection ends exactly once
with one code, no record outlives its connection, a group holds only
connections that are not ended (and sends only to open ones), and the counters
(open connections, closes by code, per-address counts, workers' loads) match
the table. At the end, everything still alive is closed and nothing may remain.

Run longer with ``DJANGO_WS_HYPOTHESIS_EXAMPLES=5000``.
"""

from __future__ import annotations

import collections
import os

import pytest

if not os.environ.get("DJANGO_WS_REQUIRE_ALL"):  # in CI a missing hypothesis fails the collection: no skip
    pytest.importorskip("hypothesis", reason="hypothesis is not installed (pip install 'django-ws-edge[test]')")

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, precondition, rule

from django_ws import wire
from django_ws.codes import CloseCode
from django_ws.edge.core import CloseClient, ConnectionState, EdgeCore, Forward, Refuse, ToWorker, Upgrade
from django_ws.edge.limits import LimitSettings

ROUTES = ("echo", "room", "nowhere")
GROUPS = ("g1", "g2")
ADDRESSES = ("10.0.0.1", "10.0.0.2", None)
CLOSED = ConnectionState.CLOSED


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class EdgeCoreMachine(RuleBasedStateMachine):
    connections = Bundle("connections")

    def __init__(self):
        super().__init__()
        self.clock = Clock()
        self.core = EdgeCore(resolve=lambda route: route if route != "nowhere" else None, heartbeat_timeout=5.0,
                             edge_id="e1", clock=self.clock,
                             limits=LimitSettings(new_per_window=20, window=10.0, concurrent=6,
                                                  messages_per_window=8, message_window=1.0))
        self.generation = 0
        self.known = []  # every record the core ever made
        self.close_codes = collections.defaultdict(list)  # conn id -> codes of CloseClient
        self.disconnects = collections.Counter()  # conn id -> wire.Disconnect sent to its worker
        self.refused_records = 0  # handshakes refused after a record was made (they end uncounted)
        self.upgrades = set()  # conn ids the core asked the transport to upgrade
        self.transport_open = set()  # conn ids whose transport completed the upgrade and did not end

    # -- the adapter's side of each step ------------------------------------------------------

    def run(self, actions):
        for action in actions:
            if isinstance(action, CloseClient):
                self.close_codes[action.conn.id].append(action.code)
                assert len(self.close_codes[action.conn.id]) == 1, (
                    f"{action.conn.id} told to close twice: {self.close_codes[action.conn.id]}")
            elif isinstance(action, Refuse) and action.conn is not None:
                assert action.conn.state is CLOSED, f"refused {action.conn} keeps its record"
                self.refused_records += 1
            elif isinstance(action, Upgrade):
                assert action.conn.id not in self.upgrades, f"{action.conn.id} upgraded twice"
                self.upgrades.add(action.conn.id)
            elif isinstance(action, ToWorker) and isinstance(action.message, wire.Disconnect):
                self.disconnects[action.message.conn_id] += 1
                assert self.disconnects[action.message.conn_id] == 1, f"{action.message.conn_id}: two Disconnects"
            elif isinstance(action, Forward):
                assert action.conn.state is ConnectionState.OPEN, f"forwarded a frame of {action.conn}"
        return actions

    def worker_ids(self):
        return sorted(self.core.workers)

    # -- workers --------------------------------------------------------------------------------

    @rule(n=st.integers(0, 2), capacity=st.sampled_from([0, 2]))
    def worker_hello(self, n, capacity):
        identity = b"w%d.%d" % (self.generation, n)
        self.run(self.core.worker_event(identity, wire.Hello(identity.decode(), capacity, 0, "threaded")))

    @precondition(lambda self: self.core.workers)
    @rule(data=st.data(), goodbye=st.booleans())
    def worker_lost(self, data, goodbye):
        identity = data.draw(st.sampled_from(self.worker_ids()))
        if goodbye:
            self.run(self.core.worker_event(identity, wire.Goodbye(identity.decode())))
        else:
            self.run(self.core.worker_lost(self.core.workers[identity], "its socket disconnected"))

    @rule(seconds=st.sampled_from([0.5, 3.0, 6.0]))
    def time_passes(self, seconds):
        self.clock.now += seconds
        self.run(self.core.tick())

    @rule()
    def sighup(self):
        """Workers restart with new code: the old ones say goodbye, new ones hello; routes come from them."""
        for identity in self.worker_ids():
            self.run(self.core.worker_event(identity, wire.Goodbye(identity.decode())))
        self.generation += 1
        self.core.routes_from_workers = True
        for n in range(2):
            identity = b"w%d.%d" % (self.generation, n)
            self.run(self.core.worker_event(identity, wire.Hello(identity.decode(), 0, 0, "threaded")))

    # -- handshakes -----------------------------------------------------------------------------

    @rule(target=connections, route=st.sampled_from(ROUTES), address=st.sampled_from(ADDRESSES))
    def connect(self, route, address):
        conn, actions = self.core.connect(route, {"path": "/" + route}, "transport", address=address)
        self.run(actions)
        if conn is None:
            return []  # nothing to remember (hypothesis wants a value: an empty list is skipped below)
        self.known.append(conn)
        return conn

    def pick(self, conn):
        return conn if not isinstance(conn, list) else None

    @rule(conn=connections, accept=st.booleans())
    def worker_answers(self, conn, accept):
        conn = self.pick(conn)
        if conn is None:
            return
        identity = conn.worker.identity if conn.worker is not None else b"w0.0"
        message = wire.Accept(conn.id, "") if accept else wire.Deny(conn.id, 403, "denied")
        self.run(self.core.reply(identity, message))

    @rule(conn=connections)
    def handshake_times_out(self, conn):
        conn = self.pick(conn)
        if conn is not None:
            self.run(self.core.handshake_timed_out(conn))

    @rule(conn=connections)
    def worker_behind(self, conn):
        """The link could not queue the Connect for the worker that was asked."""
        conn = self.pick(conn)
        if conn is not None and conn.worker is not None:
            self.run(self.core.send_failed(conn.worker, wire.Connect(conn.id, conn.route, {})))

    @rule(conn=connections)
    def upgrade_completes(self, conn):
        conn = self.pick(conn)
        if conn is not None and conn.id in self.upgrades and conn.id not in self.transport_open and (
                conn.state is not CLOSED):
            self.transport_open.add(conn.id)
            self.run(self.core.opened(conn))

    # -- client traffic and ends ---------------------------------------------------------------

    @rule(conn=connections, binary=st.booleans(), payload=st.binary(max_size=8))
    def client_sends(self, conn, binary, payload):
        conn = self.pick(conn)
        if conn is not None and conn.id in self.transport_open:
            self.run(self.core.received(conn, binary, payload))

    @rule(conn=consumes(connections), code=st.sampled_from([None, 1000, 1001, 4000]), clean=st.booleans())
    def transport_ends(self, conn, code, clean):
        """The client left, or answered our close; a handshake's client may leave before the upgrade."""
        conn = self.pick(conn)
        if conn is None:
            return
        self.transport_open.discard(conn.id)
        received = (code, "") if code is not None else None
        self.run(self.core.closed(conn, received=received, clean=clean))

    @rule(conn=connections, code=st.sampled_from([CloseCode.POLICY_VIOLATION, CloseCode.MESSAGE_TOO_BIG]))
    def transport_fails(self, conn, code):
        """The transport's own limit or protocol error (release: the worker hears at once)."""
        conn = self.pick(conn)
        if conn is not None and conn.id in self.transport_open:
            self.run(self.core.close(conn, code, "transport", fail=True, release=True))

    # -- worker replies and sends ----------------------------------------------------------------

    @rule(conn=connections, code=st.sampled_from([1000, 4001]))
    def worker_closes(self, conn, code):
        conn = self.pick(conn)
        if conn is not None:
            self.run(self.core.reply(b"w0.0", wire.Close(conn.id, code, "bye")))

    @rule(conn=connections, group=st.sampled_from(GROUPS), join=st.booleans())
    def worker_joins_or_leaves(self, conn, group, join):
        conn = self.pick(conn)
        if conn is None:
            return
        message = wire.Join(conn.id, group) if join else wire.Leave(conn.id, group)
        self.run(self.core.reply(b"w0.0", message))

    @rule(conn=connections, payload=st.binary(max_size=4))
    def worker_sends(self, conn, payload):
        conn = self.pick(conn)
        if conn is not None:
            self.run(self.core.reply(b"w0.0", wire.Send(conn.id, True, payload)))

    @rule(group=st.sampled_from(GROUPS), ref=st.sampled_from(["", "r1", "r2"]))
    def group_send(self, group, ref):
        actions = self.run(self.core.reply(b"django", wire.GroupSend(group, "", False, b"hi", ref)))
        for action in actions:
            conn = getattr(action, "conn", None)
            if conn is not None and not isinstance(action, CloseClient):
                assert conn.state is ConnectionState.OPEN, f"group message for {conn}"

    @rule()
    def shutdown(self):
        self.run(self.core.shutdown())

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def no_record_outlives_its_connection(self):
        alive = {conn.id for conn in self.known if conn.state is not CLOSED}
        assert set(self.core.connections) == alive, (set(self.core.connections) ^ alive)
        for conn in self.known:
            if conn.state is CLOSED:
                assert not conn.groups and not conn.watching and not conn.early, f"{conn} keeps {conn.groups}"
            elif conn.state is ConnectionState.CLOSING:
                assert conn.close_sent is not None and self.close_codes[conn.id] == [conn.close_sent[0]]
        for worker in self.core.workers.values():
            assert worker.connections <= set(self.core.connections), worker.connections - alive
            for conn_id in worker.connections:
                assert self.core.connections[conn_id].worker is worker, conn_id

    @invariant()
    def groups_hold_only_live_connections(self):
        for group, members in self.core.groups.items():
            assert members, f"empty group {group} kept"
            for conn_id in members:
                conn = self.core.connections.get(conn_id)
                assert conn is not None, f"{group} holds {conn_id}, ended"
                assert conn.groups and group in conn.groups, f"{conn} in {group} does not know it"
            assert all(c.state is ConnectionState.OPEN for c in self.core.members_of(group))
        for conn in self.core.connections.values():
            for group in conn.groups or ():
                assert conn.id in self.core.groups.get(group, ()), f"{conn} thinks it is in {group}"

    @invariant()
    def counters_match_the_table(self):
        table = self.core.connections.values()
        assert self.core.open_count == sum(c.state is ConnectionState.OPEN for c in table)
        ended = sum(conn.state is CLOSED for conn in self.known)
        assert sum(self.core.stats.closed_by_code.values()) + self.refused_records == ended, (
            dict(self.core.stats.closed_by_code), self.refused_records, ended)
        limits = self.core.address_limits
        for address in ADDRESSES[:-1]:
            assert limits.open_connections(address) == sum(c.address == address for c in table), address

    def teardown(self):
        """Every connection still alive ends; then nothing may remain anywhere."""
        self.run(self.core.shutdown())
        for conn in list(self.core.connections.values()):
            self.run(self.core.closed(conn))
        self.no_record_outlives_its_connection()
        assert not self.core.connections and not self.core.groups and not self.core.watchers
        assert all(not worker.connections for worker in self.core.workers.values())
        for conn in self.known:
            # Ended exactly once: with one code, told to its worker at most once (an upgraded one that
            # its worker still held is told exactly once; a refused handshake's worker hears of it too).
            assert conn.state is CLOSED and len(self.close_codes[conn.id]) <= 1
        self.counters_match_the_table()


EdgeCoreMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("DJANGO_WS_HYPOTHESIS_EXAMPLES", "150")), stateful_step_count=40,
    deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow], derandomize=not os.environ.get(
        "DJANGO_WS_HYPOTHESIS_EXAMPLES"))
TestEdgeCore = EdgeCoreMachine.TestCase
