"""Cluster mode on one host: several run_wsserver edges, a worker that follows them, one Redis.

Real processes throughout: redis-server, the edges, a run_wsworker started
without --edge, and this process sending through WS_BROKER. The same
scenarios across hosts, with CURVE, are in tests/e2e/test_cluster_hosts.py.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time

import pytest
from django.test import override_settings

from django_ws import (
    SendError,
    close_connection,
    close_group,
    group_members,
    group_size,
    send_to_connection,
    send_to_group,
)
from django_ws.testing import WebSocketServer
from tests.conftest import ROOT, SETTINGS, RedisServer, require
from tests.e2e.test_groups import closed_with, join
from tests.e2e.test_history import Positions, joined, recv_app, stats
from tests.e2e.test_hosts import served

#: WS_BROKER_LEASE for these tests: short, so that a dead edge is forgotten quickly.
LEASE = 1.5
#: docs/cluster.rst: a dead edge is forgotten by presence within the lease; its members are told as left to
#: watchers, and it is forgotten by workers, within 4/3 of it.
FORGOTTEN_BOUND = LEASE * 4 / 3


class FollowingWorker(WebSocketServer):
    """run_wsworker without --edge: it serves every edge announced on the broker."""

    ready_text = "serving the edges announced"

    def command(self) -> list[str]:
        return [self.python, "-m", "django", "run_wsworker", f"--{self.mode}"]


class Cluster:
    """The broker settings shared by every process of one test, and what it started."""

    def __init__(self, redis: RedisServer, server_db: str):
        self.redis, self.server_db = redis, server_db
        self.prefix = f"t{secrets.token_hex(4)}:"
        self.started: list[WebSocketServer] = []
        #: WS_BROKER for the processes started from now on, if not the Redis's URL (a Sentinel dict as JSON).
        self.broker: str | None = None

    @property
    def env(self) -> dict[str, str]:
        return {"DJANGO_WS_BROKER": self.broker or self.redis.url, "DJANGO_WS_BROKER_LEASE": str(LEASE),
                "DJANGO_WS_BROKER_PREFIX": self.prefix, "DJANGO_WS_TEST_DB": self.server_db}

    def settings(self, **extra):
        """override_settings for this process: it sends as a web process of the cluster would."""
        return override_settings(**{"WS_BROKER": self.redis.url, "WS_BROKER_PREFIX": self.prefix,
                                    "WS_BROKER_LEASE": LEASE, **extra})

    def edge(self, **kwargs) -> WebSocketServer:
        return self._start(WebSocketServer(settings=SETTINGS, cwd=ROOT, env=self.env, edge_only=True, fail_on_warnings=True,
                                           **kwargs))

    def worker(self, mode: str = "threaded") -> FollowingWorker:
        return self._start(FollowingWorker(settings=SETTINGS, cwd=ROOT, env=self.env, mode=mode))

    def _start(self, process: WebSocketServer) -> WebSocketServer:
        self.started.append(process)
        return process.start()

    def stop(self) -> list[tuple[str, int]]:
        codes = []
        for process in reversed(self.started):
            expected = getattr(process, "expected_returncode", 0)
            codes.append((" ".join(process.command()[3:5]), process.stop(), expected))
        return [(what, code) for what, code, expected in codes if code != expected]


def kill_9(process: WebSocketServer) -> None:
    os.killpg(process.process.pid, signal.SIGKILL)
    process.expected_returncode = -signal.SIGKILL


@pytest.fixture
def cluster(redis_server, server_db):
    cluster = Cluster(redis_server, server_db)
    yield cluster
    failed = cluster.stop()
    assert not failed, f"every process exits as expected on SIGTERM: {failed}"


def receive_until(ws, marker: str, timeout: float = 10.0) -> list[str]:
    """Every message ``ws`` receives up to ``marker`` (not included): what came, in order, and how often."""
    seen = []
    while True:
        message = ws.recv(timeout=timeout)
        if message == marker:
            return seen
        seen.append(message)


def test_a_web_process_closes_a_connection_and_a_group_across_edges(cluster):
    edges = [cluster.edge() for _ in range(2)]
    cluster.worker()
    for edge in edges:
        served(edge, 30)
    (a, a_id), (b, _), (c, _) = [join(edges[n % 2], "shut") for n in range(3)]
    with cluster.settings():
        assert close_connection(a_id, 4003, "banned").delivered == 1, "the connection's edge took it"
        assert closed_with(a) == (4003, "banned")
        deadline = time.monotonic() + 10
        while group_size("room.shut") != 2:  # presence follows the close: b and c, on both edges
            assert time.monotonic() < deadline, f"room.shut kept {group_members('room.shut')}"
            time.sleep(0.05)
        assert close_group("room.shut", 4000, "room closed").delivered is None, "one publish: no count"
    assert closed_with(b) == (4000, "room closed")
    assert closed_with(c) == (4000, "room closed")


def test_a_group_spanning_three_edges_gets_each_message_once_in_order(cluster):
    edges = [cluster.edge() for _ in range(3)]
    worker = cluster.worker()
    for edge in edges:
        served(edge, 30)  # the worker found every edge on the broker: none was given to it
    members = [join(edge, "span") for edge in edges for _ in range(2)]
    ids = sorted(conn_id for _, conn_id in members)
    assert len({conn_id.rpartition(".")[0] for conn_id in ids}) == 3, f"members on three edges: {ids}"

    with cluster.settings():
        assert group_members("room.span") == ids, "presence answers for every edge in one round trip"
        assert group_size("room.span") == 6
        for n in range(50):
            assert send_to_group("room.span", f"m{n}").delivered is None, "cluster mode does not count clients"
        send_to_group("room.span", "end")
    for ws, conn_id in members:
        assert receive_until(ws, "end") == [f"m{n}" for n in range(50)], f"{conn_id}: each message once, in order"

    excluded = members[0][1]
    with cluster.settings():
        send_to_group("room.span", "not you", exclude=excluded)
        send_to_group("room.span", "keyed", key="once-only")
        send_to_group("room.span", "keyed", key="once-only")  # a retry with the same key: not delivered again
        send_to_group("room.span", "end")
    for ws, conn_id in members:
        expected = ["keyed"] if conn_id == excluded else ["not you", "keyed"]
        assert receive_until(ws, "end") == expected, f"{conn_id}: exclude= and key= hold across edges"

    # A handler's send_to_group, in the worker, is one publish too: every edge's members get it.
    members[5][0].send(json.dumps({"from": "handler"}))
    for ws, conn_id in members:
        assert json.loads(ws.recv(timeout=10)) == {"from": "handler"}, f"{conn_id} got the handler's message"

    ws, conn_id = members[4]
    with cluster.settings():
        assert send_to_connection(conn_id, "just you").delivered == 1, "the connection's edge took it"
        assert send_to_connection("0123456789abcdef.1", "nobody").delivered == 0, "no such edge: nobody subscribed"
    assert ws.recv(timeout=10) == "just you"

    members[0][0].close()
    with cluster.settings():
        deadline = time.monotonic() + 10
        while group_size("room.span") != 5:
            assert time.monotonic() < deadline, "a member that left is gone from presence"
            time.sleep(0.05)
    for ws, _ in members[1:]:
        ws.close()
    assert worker.process.poll() is None


def test_a_lease_that_lapses_while_the_edge_lives_loses_no_connection(cluster):
    """An edge too busy to renew in time is alive: its worker keeps it, and it announces itself again."""
    import redis

    edge = cluster.edge()
    worker = cluster.worker()
    served(edge, 30)
    ws, conn_id = join(edge, "lapse")
    edge_id = conn_id.rpartition(".")[0]
    edge_mark, worker_mark = len(edge.lines), len(worker.lines)
    # What Redis does to a lease the edge renewed too late: the key is gone.
    with redis.Redis.from_url(cluster.redis.url) as broker:
        assert broker.delete(f"{cluster.prefix}edge:{edge_id}") == 1, "the edge's announcement was there"
    # (The worker may or may not read the registry before the edge's next renewal: the rule it follows
    # then is unit-tested in tests/unit/broker/test_broker.py.)
    edge.wait_for("renewed its lease too late", timeout=LEASE * 2, start=edge_mark)
    with cluster.settings():
        deadline = time.monotonic() + 10
        while group_members("room.lapse") != [conn_id]:  # the readers of presence had dropped it
            assert time.monotonic() < deadline, "the edge wrote its presence again"
            time.sleep(0.05)
        send_to_group("room.lapse", "still served")
    assert ws.recv(timeout=10) == "still served", "the connection lived through the lapse"
    assert "no longer announced" not in "".join(worker.lines[worker_mark:]), "the worker never dropped the edge"
    assert stats(edge)["broker"]["lease_lapses"] == 1
    ws.close()


def test_a_new_edge_is_found_by_the_running_worker_and_a_dead_one_forgotten_within_the_bound(cluster):
    first = cluster.edge()
    worker = cluster.worker()
    served(first, 30)
    on_first = join(first, "dead")

    second = cluster.edge()  # started after the worker, which is not restarted
    took = served(second, 15)
    print(f"the running worker served a new edge {took:.2f}s after it was ready")
    on_second = [join(second, "dead") for _ in range(3)]
    with cluster.settings():
        assert group_size("room.dead") == 4

    kill_9(second)
    killed = time.monotonic()
    with cluster.settings():
        while group_members("room.dead") != [on_first[1]]:
            assert time.monotonic() - killed < FORGOTTEN_BOUND + 1.0, (
                f"the dead edge's members leave presence within the lease ({LEASE}s)")
            time.sleep(0.05)
    gone_from_presence = time.monotonic() - killed
    worker.wait_for("is no longer announced", timeout=FORGOTTEN_BOUND + 2.0)
    forgotten = time.monotonic() - killed
    print(f"kill -9 of an edge: its members left presence after {gone_from_presence:.2f}s, "
          f"the worker forgot it after {forgotten:.2f}s (lease {LEASE}s)")
    assert forgotten < FORGOTTEN_BOUND + 2.0, f"the worker forgets a dead edge within {FORGOTTEN_BOUND}s (+ slack)"

    # The others carry on: the first edge's member still gets the group, new connections are served.
    with cluster.settings():
        send_to_group("room.dead", "still here")
    assert on_first[0].recv(timeout=10) == "still here"
    served(first, 10)
    assert worker.process.poll() is None
    for ws, _ in [on_first, *on_second]:
        ws.close()

    # An edge that stops withdraws at once: the worker does not wait for its lease.
    first_id = first.wait_for("(edge ").split("(edge ")[1].split(",")[0]
    mark = len(worker.lines)
    assert first.stop() == 0
    stopped = time.monotonic()
    worker.wait_for(f"edge {first_id} is no longer announced", timeout=LEASE, start=mark)
    print(f"a stopped edge was forgotten {time.monotonic() - stopped:.2f}s after it exited")
    with cluster.settings():
        assert group_members("room.dead") == [], "its members left presence with it"


def subscribed(member, group: str, timeout: float = 30.0) -> None:
    """Wait until ``member``'s edge gets ``group``'s messages from Redis (call in cluster.settings()).

    A join returns before the edge's SUBSCRIBE reaches Redis, and a publish before it is delivered
    to nobody (at most once): probe until one arrives, then read up to a marker, so that the
    member's next message is the test's own.
    """
    deadline = time.monotonic() + timeout
    while True:
        send_to_group(group, "probe")
        try:
            assert member.recv(timeout=0.5) == "probe"
            break
        except TimeoutError:
            assert time.monotonic() < deadline, f"the edge never received {group}'s messages from Redis"
    send_to_group(group, "subscribed")
    while member.recv(timeout=10) != "subscribed":
        pass


def test_redis_killed_and_restarted_under_traffic(cluster):
    cluster.redis.stop()
    cluster.redis.password = "s3cret-pw"
    cluster.redis.start()
    edge = cluster.edge()
    cluster.worker()
    served(edge, 30)
    member, member_id = join(edge, "outage")
    with cluster.settings():
        subscribed(member, "room.outage")

    cluster.redis.kill()
    with cluster.settings():
        started = time.monotonic()
        with pytest.raises(SendError) as failed:
            send_to_group("room.outage", "lost?", timeout=1.0)
        took = time.monotonic() - started
        with pytest.raises(SendError):
            group_size("room.outage", timeout=1.0)
    error = failed.value
    assert took < 1.0 + 0.5, f"SendError within the send's timeout, not a hang ({took:.2f}s)"
    assert "s3cret-pw" not in str(error) and list(error.unreached) == [cluster.redis.url.replace("s3cret-pw", "***")]
    assert error.delivered == 0 and error.reached == []
    # The edge keeps serving its clients and its worker meanwhile.
    served(edge, 10)
    assert member.ping().wait(5), "the member's connection is still open"

    cluster.redis.start()  # back on the same port, empty, as after a restart without persistence
    back = time.monotonic()
    with cluster.settings():
        # Until the edge has subscribed again, a probe reaches nobody there.
        while True:
            assert time.monotonic() - back < 10, "the edge subscribed again within 10s of Redis coming back"
            try:
                send_to_group("room.outage", "probe", timeout=1.0)
            except SendError:
                continue  # the sender's pooled connection found Redis gone; the next one reconnects
            try:
                if member.recv(timeout=0.2) == "probe":
                    break
            except TimeoutError:
                pass
        resubscribed = time.monotonic() - back
        while group_members("room.outage") != [member_id]:
            assert time.monotonic() - back < 10, "the edge wrote its presence again into the empty Redis"
            time.sleep(0.05)
        send_to_group("room.outage", "after")
    assert set(receive_until(member, "after")) <= {"probe"}, "only probes were in flight"
    print(f"Redis restarted: the edge received the group again after {resubscribed:.2f}s")
    broker = stats(edge)["broker"]
    assert broker["connected"] and broker["sessions"] == 2, f"the stats show the second session: {broker}"
    member.close()


def group_messages(ws, positions: Positions, group: str, until: str) -> list[tuple[str, int]]:
    """(message, offset) of every message of ``group`` up to ``until`` (included); the handler's words skipped."""
    got = []
    while True:
        data = recv_app(ws, positions)
        if data.startswith("{"):
            positions.said.append(json.loads(data))
            continue
        got.append((data, positions.since[group][1]))
        if data == until:
            return got


def test_a_client_recovers_its_gap_on_another_edge_with_live_messages_in_order(cluster):
    first, second = cluster.edge(), cluster.edge()
    cluster.worker()
    served(first, 30)
    served(second, 30)
    positions = Positions()
    ws, _ = joined(first, "far", positions)
    with cluster.settings():
        for n in range(5):
            send_to_group("hist.far", f"m{n}")
        assert [m for m, _ in group_messages(ws, positions, "hist.far", "m4")] == [f"m{n}" for n in range(5)]
        epoch, offset = positions.since["hist.far"]
        ws.close()
        for n in range(5, 15):
            send_to_group("hist.far", f"m{n}")

        # Messages keep coming while the client comes back, on another edge.
        def keep_sending():
            for n in range(15, 65):
                send_to_group("hist.far", f"m{n}")

        sender = threading.Thread(target=keep_sending)
        sender.start()
        ws, said = joined(second, "far", positions)
        sender.join()
    assert said["recovering"] == ["hist.far"]
    got = group_messages(ws, positions, "hist.far", "m64")
    assert [m for m, _ in got] == [f"m{n}" for n in range(5, 65)], "the gap, then the live ones: none twice, in order"
    assert [o for _, o in got] == list(range(offset + 1, offset + 61)), "offsets from the broker, one per message"
    assert positions.since["hist.far"][0] == epoch, "the same epoch on every edge"
    while {"recovered": "hist.far"} not in positions.said:  # the handler's word may come after the replay
        positions.said.append(json.loads(recv_app(ws, positions)))
    assert positions.resyncs == []
    ws.close()

    # Redis restarted empty: that history is gone, the epoch changes. A client that stayed connected
    # meanwhile is told to resync by its edge; one that comes back resyncs too.
    staying = Positions()
    stay, _ = joined(second, "far", staying)
    cluster.redis.kill()
    cluster.redis.start()
    with cluster.settings():
        deadline = time.monotonic() + 10
        while True:
            try:
                send_to_group("hist.far", "new era")
                break
            except SendError:
                assert time.monotonic() < deadline, "Redis answers again"
    while not staying.resyncs:
        data = staying.frame(stay.recv(timeout=10))
        assert data in (None, "new era") or data.startswith("{"), f"nothing of the old epoch after the restart: {data!r}"
    assert staying.since["hist.far"][0] != epoch, "the connected client was told to resync, in a new epoch"
    with cluster.settings():
        send_to_group("hist.far", "newer")
    assert group_messages(stay, staying, "hist.far", "newer")[-1] == ("newer", staying.since["hist.far"][1])
    stay.close()
    ws, _ = joined(first, "far", positions)
    while not positions.resyncs:
        data = recv_app(ws, positions)
        assert data.startswith("{"), f"no old message replayed after the history was lost: {data!r}"
    assert positions.resyncs == ["hist.far"] and positions.since["hist.far"][0] != epoch, "a new epoch"
    ws.close()


def test_a_handler_watching_a_group_hears_joins_and_leaves_on_every_edge(cluster):
    from tests.e2e.test_groups import watch

    here, there = cluster.edge(), cluster.edge()
    cluster.worker()
    served(here, 30)
    served(there, 30)
    watcher = watch(here, "watched")
    events = []

    def next_event():
        event = json.loads(watcher.recv(timeout=10))
        events.append(event)
        return event

    for edge in (here, there):
        member, member_id = join(edge, "watched")
        assert next_event() == {"group": "room.watched", "joined": [member_id], "left": []}, (
            f"a join on the {'same' if edge is here else 'other'} edge is told once")
        member.close()
        assert next_event() == {"group": "room.watched", "joined": [], "left": [member_id]}
    watcher.close()


class PresenceEvents:
    """The presence changes a watcher's handler relays, one JSON message each."""

    def __init__(self, ws):
        self.ws = ws

    def next(self, timeout: float = 10.0) -> dict:
        return json.loads(self.ws.recv(timeout=timeout))

    def left_until(self, ids: set[str], deadline: float) -> list[str]:
        """Every id told as left, in order, until each of ``ids`` was: a join meanwhile fails the test."""
        left = []
        while not ids <= set(left):
            event = self.next(timeout=max(deadline - time.monotonic(), 0.01))
            assert event["joined"] == [], f"only leaves are told meanwhile: {event}"
            left += event["left"]
        return left


def test_a_watcher_hears_the_members_of_an_edge_killed_with_9_leave_once_within_the_bound(cluster):
    from tests.e2e.test_groups import watch

    here, there = cluster.edge(), cluster.edge()
    cluster.worker()
    served(here, 30)
    served(there, 30)
    watcher = PresenceEvents(watch(here, "swept"))
    local, local_id = join(here, "swept")
    assert watcher.next() == {"group": "room.swept", "joined": [local_id], "left": []}
    members = [join(there, "swept") for _ in range(3)]
    ids = {conn_id for _, conn_id in members}
    joined = [watcher.next()["joined"] for _ in ids]
    assert sorted(joined) == sorted([conn_id] for conn_id in ids), f"each join on the other edge is told: {joined}"

    kill_9(there)
    killed = time.monotonic()
    left = watcher.left_until(ids, deadline=killed + FORGOTTEN_BOUND + 2.0)
    took = time.monotonic() - killed
    print(f"kill -9 of an edge: a watcher on another edge heard its {len(ids)} members leave after {took:.2f}s "
          f"(lease {LEASE}s)")
    assert sorted(left) == sorted(ids), f"each member of the dead edge is told as left once: {left}"
    with cluster.settings():
        assert group_members("room.swept") == [local_id], "and presence no longer has them"
    # The next change told is this one: no leave of the dead edge's members was told twice.
    other, other_id = join(here, "swept")
    assert watcher.next() == {"group": "room.swept", "joined": [other_id], "left": []}, (
        "nothing between the leaves of the dead edge's members and the next join")
    for ws in (watcher.ws, local, other):
        ws.close()


def test_after_a_late_renewal_a_watcher_hears_the_edge_s_members_join_again(cluster):
    import redis

    from django_ws.broker.keys import SWEEP_DEAD_EDGES, Keys
    from tests.e2e.test_groups import watch

    here, there = cluster.edge(), cluster.edge()
    cluster.worker()
    served(here, 30)
    served(there, 30)
    watcher = PresenceEvents(watch(here, "late"))
    member, member_id = join(there, "late")
    assert watcher.next() == {"group": "room.late", "joined": [member_id], "left": []}
    there_id = member_id.rpartition(".")[0]

    # The edge's lease lapses (its loop too busy to renew) and a sweep runs before it renews, in one step:
    # what would otherwise depend on which of the two edges' timers fires first.
    keys = Keys(cluster.prefix)
    mark = len(there.lines)
    with redis.Redis.from_url(cluster.redis.url) as broker:
        sweep = broker.register_script(SWEEP_DEAD_EDGES)
        with broker.pipeline(transaction=True) as pipe:
            pipe.delete(keys.lease(there_id))
            sweep(keys=[keys.edges], args=keys.sweep_args(), client=pipe)
            deleted, swept = pipe.execute()
    assert (deleted, swept) == (1, [there_id.encode()]), "the edge's lease was there, and it was swept"
    assert watcher.next() == {"group": "room.late", "joined": [], "left": [member_id]}, "the sweep told its leave"

    there.wait_for("renewed its lease too late", timeout=LEASE * 2, start=mark)
    assert watcher.next() == {"group": "room.late", "joined": [member_id], "left": []}, (
        "the edge lived: its member is told as joined again")
    with cluster.settings():
        assert group_members("room.late") == [member_id]
        send_to_group("room.late", "still served")
    assert member.recv(timeout=10) == "still served", "the member's connection lived through it"
    member.close()
    assert watcher.next() == {"group": "room.late", "joined": [], "left": [member_id]}, (
        "its later leave is told as before")

    # An edge that stops with members tells their leaves as it withdraws.
    staying, staying_id = join(there, "late")
    assert watcher.next() == {"group": "room.late", "joined": [staying_id], "left": []}
    assert there.stop() == 0
    assert watcher.next() == {"group": "room.late", "joined": [], "left": [staying_id]}, (
        "the stopped edge's member is told as left")
    for ws in (staying, watcher.ws):
        ws.close()


def test_a_dead_edge_s_member_is_told_as_left_once_whether_a_read_or_the_sweep_drops_it(redis_server):
    """GROUP_MEMBERS and SWEEP_DEAD_EDGES both drop a lapsed edge's members: whichever comes first tells."""
    import redis

    from django_ws.broker.keys import GROUP_MEMBERS, MEMBER_CHANGED, SWEEP_DEAD_EDGES, Keys

    keys = Keys(f"t{secrets.token_hex(4)}:")
    sweep_args = keys.sweep_args()
    with redis.Redis.from_url(redis_server.url) as broker, broker.pubsub() as pubsub:
        pubsub.psubscribe(f"{keys.presence_prefix}*")
        assert pubsub.get_message(timeout=5)["type"] == "psubscribe"

        def told() -> list[tuple[str, dict]]:
            """What was published up to a marker published now: nothing told twice is missed."""
            broker.publish(keys.presence_channel("end"), "{}")
            out = []
            while True:
                message = pubsub.get_message(timeout=5)
                assert message is not None, "the marker comes back"
                group = message["channel"].decode()[len(keys.presence_prefix):]
                if group == "end":
                    return out
                out.append((group, json.loads(message["data"])))

        for read_first in (True, False):
            broker.flushdb()
            broker.set(keys.lease("alive"), "{}")
            broker.sadd(keys.edges, "alive", "dead")
            broker.sadd(keys.edge_groups("dead"), "a", "b")
            broker.hset(keys.members("a"), mapping={"dead.1": "dead", "dead.2": "dead", "alive.1": "alive"})
            broker.hset(keys.members("b"), mapping={"dead.3": "dead"})
            if read_first:
                assert broker.register_script(GROUP_MEMBERS)(
                    keys=[keys.members("a")], args=[keys.lease_prefix, keys.presence_channel("a")]) == [b"alive.1"]
            swept = broker.register_script(SWEEP_DEAD_EDGES)(keys=[keys.edges], args=sweep_args)
            assert swept == [b"dead"]
            assert broker.register_script(SWEEP_DEAD_EDGES)(keys=[keys.edges], args=sweep_args) == [], (
                "a second sweep finds nothing to do")
            events = told()
            assert sorted((group, sorted(change["left"])) for group, change in events) == [
                ("a", ["dead.1", "dead.2"]), ("b", ["dead.3"])], f"each member told once (read first: {read_first})"
            assert all(change["edge"] == "dead" for _, change in events)
            assert broker.smembers(keys.edges) == {b"alive"}, "the dead edge is forgotten"
            assert not broker.exists(keys.edge_groups("dead")), "and so are its groups"
            assert broker.hgetall(keys.members("a")) == {b"alive.1": b"alive"}
            assert not broker.exists(keys.members("b"))

        # A swept edge that was alive writes a join before it finds its lease gone, then dies: swept again.
        member_changed = broker.register_script(MEMBER_CHANGED)
        assert member_changed(keys=[keys.members("a"), keys.edge_groups("dead"), keys.edges],
                              args=["dead", "dead.4", 1, "a", keys.presence_channel("a"), 0]) == 1
        assert broker.register_script(SWEEP_DEAD_EDGES)(keys=[keys.edges], args=sweep_args) == [b"dead"]
        assert [change for _, change in told()] == [{"edge": "dead", "joined": ["dead.4"]},
                                                   {"edge": "dead", "left": ["dead.4"]}], "its join, then its leave"
        assert broker.hgetall(keys.members("a")) == {b"alive.1": b"alive"}


class SentinelServer(RedisServer):
    """redis-sentinel watching ``master`` as "mymaster", alone (quorum 1), quick to fail over."""

    def __init__(self, directory, master: RedisServer):
        super().__init__(directory)
        self.master = master

    def command(self) -> list[str]:
        conf = self.directory / f"sentinel-{self.port}.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\n"
            f"sentinel monitor mymaster 127.0.0.1 {self.master.port} 1\n"
            "sentinel down-after-milliseconds mymaster 1000\n"
            "sentinel failover-timeout mymaster 10000\n")
        return [shutil.which("redis-sentinel"), str(conf)]


def test_a_sentinel_failover_is_survived(cluster, tmp_path):
    require(shutil.which("redis-sentinel") is not None, "redis-sentinel is not installed (apt-get install redis-sentinel)")
    master = cluster.redis
    replica = RedisServer(tmp_path, args=("--replicaof", "127.0.0.1", str(master.port))).start()
    sentinel = SentinelServer(tmp_path, master).start()
    try:
        broker = {"sentinels": [["127.0.0.1", sentinel.port]], "service_name": "mymaster"}
        cluster.broker = json.dumps(broker)
        edge = cluster.edge()
        cluster.worker()
        served(edge, 30)
        member, member_id = join(edge, "failover")
        with cluster.settings(WS_BROKER=broker):
            subscribed(member, "room.failover")

            master.kill()
            killed = time.monotonic()
            failed = 0
            while True:  # SendError until Sentinel has promoted the replica, then service again
                assert time.monotonic() - killed < 30, "the cluster serves again after the failover"
                try:
                    send_to_group("room.failover", "probe", timeout=1.0)
                except SendError as exc:
                    assert "sentinel mymaster@" in str(exc), f"the error names the broker: {exc}"
                    failed += 1
                    time.sleep(0.02)  # Sentinel needs a second or two: no need to ask it a thousand times
                    continue
                try:
                    if member.recv(timeout=0.5) == "probe":
                        break
                except TimeoutError:
                    pass
            print(f"Sentinel failover: the member got the group again {time.monotonic() - killed:.2f}s after the "
                  f"master was killed ({failed} sends refused meanwhile)")
            assert group_members("room.failover") == [member_id], "presence survived on the promoted replica"
            send_to_group("room.failover", "after")
        assert set(receive_until(member, "after")) <= {"probe"}
        member.close()
    finally:
        sentinel.stop()
        replica.stop()


class TlsRedisServer(RedisServer):
    """redis-server on TLS only (a CA and a server certificate made here), with an ACL user and no default user."""

    user, secret = "wsapp", "acl-s3cret"

    def __init__(self, directory):
        super().__init__(directory)
        self.ca = directory / "ca.pem"
        openssl = shutil.which("openssl")
        require(openssl is not None, "openssl is not installed")
        run = functools.partial(subprocess.run, check=True, capture_output=True, cwd=directory)
        # Python 3.13 verifies strictly (VERIFY_X509_STRICT): a CA whose basicConstraints are
        # critical, and a server certificate naming its issuer's key.
        run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "1", "-subj", "/CN=django-ws test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-addext", "subjectKeyIdentifier=hash"])
        run([openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=127.0.0.1"])
        (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                                           "keyUsage=critical,digitalSignature,keyEncipherment\n"
                                           "extendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid,issuer\n"
                                           "subjectKeyIdentifier=hash\n")
        run([openssl, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "1", "-extfile", "san.cnf"])

    @property
    def url(self) -> str:
        return (f"rediss://{self.user}:{self.secret}@127.0.0.1:{self.port}/0"
                f"?ssl_cert_reqs=required&ssl_ca_certs={self.ca}")

    def command(self) -> list[str]:
        d = self.directory
        return [self.binary, "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
                "--tls-cert-file", str(d / "server.pem"), "--tls-key-file", str(d / "server.key"),
                "--tls-ca-cert-file", str(self.ca), "--tls-auth-clients", "no", "--save", "", "--dir", str(d),
                "--user", self.user, "on", f">{self.secret}", "~*", "&*", "+@all", "--user", "default", "off"]

    def answers(self) -> bool:
        import socket
        import ssl

        context = ssl.create_default_context(cafile=str(self.ca))
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw:
                with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                    sock.sendall(b"PING\r\n")
                    return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False


def test_a_broker_over_tls_with_an_acl_user(cluster, tmp_path):
    cluster.redis.stop()
    (tmp_path / "tls").mkdir()
    tls = TlsRedisServer(tmp_path / "tls").start()
    try:
        cluster.redis = tls
        edge = cluster.edge()
        cluster.worker()
        served(edge, 30)
        member, member_id = join(edge, "tls")
        with cluster.settings():
            send_to_group("room.tls", "over tls")
            assert group_members("room.tls") == [member_id]
        assert member.recv(timeout=10) == "over tls"
        wrong = tls.url.replace(tls.secret, "not-the-secret")
        with cluster.settings(WS_BROKER=wrong), pytest.raises(SendError) as failed:
            send_to_group("room.tls", "refused")
        assert "not-the-secret" not in str(failed.value) and "***" in str(failed.value), str(failed.value)
        member.close()
    finally:
        tls.stop()


@pytest.mark.parametrize("mode", ["gevent", "multiprocess"])
def test_every_worker_mode_follows_the_broker_and_publishes_from_handlers(cluster, mode):
    edge = cluster.edge()
    cluster.worker(mode)
    served(edge, 30)
    (first, _), (second, _) = join(edge, mode), join(edge, mode)
    first.send(json.dumps({"from": mode}))  # RoomHandler's send_to_group: a publish from the handler's process
    for ws in (first, second):
        assert json.loads(ws.recv(timeout=10)) == {"from": mode}, f"the {mode} handler's publish came back"
        ws.close()
