"""What an open connection keeps on the edge, and the keepalive that pings them all.

An edge holds thousands of idle connections, so each must keep only what it
still uses once upgraded: its record in the core, its transport (stream and
protocol state), one pending read; no HTTP request handler, no coroutine or
task of its own, no keepalive task. The keepalive is tested on its own with a
stand-in connection; the connections on a real edge and worker
(LiveWebSocketServer) with a real client.

Nothing here waits a fixed time: each step waits for the event it checks (a
ping, a close, a frame), for at most WAIT seconds, and timings are checked
from the times the events were recorded at.
"""

import asyncio
import itertools
import json
import logging
import threading

import pytest
from django.test import override_settings
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from django_ws import send_to_group
from django_ws.edge.core import ConnectionState
from django_ws.edge.keepalive import Keepalive
from django_ws.edge.transports.websocket import WebSocketConnection
from django_ws.testing.live import LiveWebSocketServer

#: The longest any one awaited event may take before the test fails (a loaded machine is slow, not broken).
WAIT = 10.0

# -- Keepalive on its own ----------------------------------------------------------------

INTERVAL, TIMEOUT = 0.08, 0.04


class FakeConnection:
    """What Keepalive uses of a transport's connection, recording when it is used."""

    def __init__(self, answers: bool, pings_wanted: int = 3):
        self.loop = asyncio.get_running_loop()
        self.answers = answers
        self.ping_times: list[float] = []
        self.pings_wanted = pings_wanted
        self.pinged = asyncio.Event()  # set once pings_wanted pings went out
        self.expired = asyncio.Event()
        self.expired_at = None
        self.pong_received = False
        self.record = None

    def watch(self, keepalive: Keepalive) -> None:
        self.record = keepalive.watch(self)
        self.watched_at = self.loop.time()

    def ping(self) -> bool:
        self.ping_times.append(self.loop.time())
        if len(self.ping_times) >= self.pings_wanted:
            self.pinged.set()
        if self.answers:  # the pong comes back on the loop's next turn
            self.loop.call_soon(setattr, self, "pong_received", True)
        return True

    def keepalive_expired(self) -> None:
        self.expired_at = self.loop.time()
        self.expired.set()


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


async def until(predicate) -> None:
    """Wait until predicate() is true (checked every few ms), at most WAIT seconds."""

    async def poll():
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), WAIT)


def test_keepalive_pings_one_interval_after_watch_then_every_interval_and_expires_who_does_not_answer():
    async def main():
        keepalive = Keepalive(INTERVAL, TIMEOUT)
        talker, mute = FakeConnection(answers=True), FakeConnection(answers=False)
        talker.watch(keepalive)
        mute.watch(keepalive)
        assert len(keepalive) == 2
        # A ping or a check may come up to one bucket (resolution) away from its exact time.
        slack = keepalive.resolution
        assert 0 < slack <= TIMEOUT / 4

        await asyncio.wait_for(mute.expired.wait(), WAIT)
        assert len(mute.ping_times) == 1  # expired at the first check, never pinged again
        assert mute.ping_times[0] - mute.watched_at >= INTERVAL - slack  # not at once: one interval after
        assert mute.expired_at - mute.ping_times[0] >= TIMEOUT - slack  # its pong had the whole timeout
        assert mute.record.connection is None and len(keepalive) == 1

        await asyncio.wait_for(talker.pinged.wait(), WAIT)
        assert not talker.expired.is_set()  # answered every ping: still open
        assert talker.ping_times[0] - talker.watched_at >= INTERVAL - slack
        assert all(gap >= INTERVAL - slack for gap in gaps(talker.ping_times)), gaps(talker.ping_times)

        record = talker.record
        record.cancel()  # the transport ends: it leaves the keepalive at once
        assert record.connection is None and len(keepalive) == 0 and not keepalive._buckets
        pings = len(talker.ping_times)
        # The timer armed for the talker's next ping still fires, finds nobody, and is not armed again.
        await until(lambda: keepalive._timer is None)
        assert len(talker.ping_times) == pings

    asyncio.run(main())


def test_keepalive_with_no_timeout_only_pings():
    async def main():
        keepalive = Keepalive(INTERVAL, 0)
        mute = FakeConnection(answers=False)
        mute.watch(keepalive)
        await asyncio.wait_for(mute.pinged.wait(), WAIT)
        assert not mute.expired.is_set()  # no pong ever came, and that closes nothing
        slack = keepalive.resolution
        assert mute.ping_times[0] - mute.watched_at >= INTERVAL - slack
        assert all(gap >= INTERVAL - slack for gap in gaps(mute.ping_times)), gaps(mute.ping_times)
        mute.record.cancel()
        assert len(keepalive) == 0

    asyncio.run(main())


def test_keepalive_off_watches_nothing():
    async def main():
        assert Keepalive(0, 10).watch(FakeConnection(answers=True)) is None

    asyncio.run(main())


# -- Connections on a real edge and worker ------------------------------------------------

#: Pings every PING_INTERVAL s; each must be answered within as long.
PING_INTERVAL = 0.5


@pytest.fixture
def server():
    """A real edge and threaded worker in this process, stopped after the test."""
    with override_settings(WS_PING_INTERVAL=PING_INTERVAL, WS_PING_TIMEOUT=PING_INTERVAL):
        live = LiveWebSocketServer()
        try:
            live.start()
            with override_settings(WS_EDGES=[live.sub]):  # the test's send_to_group() reaches this edge
                yield live
        finally:
            live.stop()


def on_edge(server, function):
    """Call function() in the edge's thread, between two turns of its loop; return its result."""

    async def call():
        return function()

    return asyncio.run_coroutine_threadsafe(call(), server.loop).result(WAIT)


def wait_on_edge(server, predicate) -> None:
    """Wait until predicate() is true in the edge's thread, at most WAIT seconds."""
    asyncio.run_coroutine_threadsafe(until(predicate), server.loop).result(WAIT + 5)


class FrameLog(logging.Handler):
    """The frames a websockets client reads ("< PING ...") and writes ("> PONG ..."), from its debug log."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.changed:
            self.lines.append(record.getMessage())
            self.changed.notify_all()

    def logger(self) -> logging.Logger:
        logger = logging.Logger(f"test-client-{id(self)}", logging.DEBUG)  # noqa: LOG001 (kept out of the logging tree)
        logger.addHandler(self)
        return logger

    def count(self, prefix: str) -> int:
        return sum(line.startswith(prefix) for line in self.lines)

    def wait_for(self, predicate) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(self), WAIT), self.lines


def client(server, route: str, **options):
    # The edge's keepalive is under test: the client pings nothing itself.
    return connect(server.url(route), ping_interval=None, proxy=None, compression=None, **options)


def open_state(server) -> dict:
    """What the edge holds for its one open connection, read in the edge's thread."""
    edge, core = server.edge, server.edge.core
    (conn,) = core.connections.values()
    coroutines = [getattr(task.get_coro(), "__qualname__", "?") for task in asyncio.all_tasks()]
    return {
        "conn": conn,
        "state": conn.state,
        "transport": conn.transport,
        "groups": None if conn.groups is None else set(conn.groups),
        "early": conn.early,
        "request": conn.request,
        "coroutines": coroutines,
        "keepalive": len(edge.keepalive),
        "pending": core.handshakes_pending,
    }


def assert_shed(state: dict) -> None:
    """The HTTP exchange is gone from an open connection: a core record and a transport with slots."""
    assert state["state"] is ConnectionState.OPEN
    transport = state["transport"]
    assert type(transport) is WebSocketConnection, "the handshake's RequestHandler is not kept once open"
    assert not hasattr(transport, "__dict__") and not hasattr(state["conn"], "__dict__"), "slots only"
    assert state["early"] is None and state["request"] is None and state["pending"] == 0
    # Neither the handshake's coroutines nor a ping task nor a frame loop task wait for the connection to end.
    assert not [name for name in state["coroutines"]
                if "_execute" in name or "periodic_ping" in name or "WebSocket" in name], state["coroutines"]
    assert state["keepalive"] == 1  # pinged from the edge's one timer


def test_an_open_connection_keeps_only_what_it_still_uses_and_closes_cleanly(server):
    with client(server, "echo") as ws:
        ws.send("hi")
        assert ws.recv(timeout=WAIT) == "hi"  # the frame loop runs: the handshake state is shed
        state = on_edge(server, lambda: open_state(server))
        assert_shed(state)
        assert state["groups"] is None  # no group joined: no set made for it
        ws.send(b"\x00bin")
        assert ws.recv(timeout=WAIT) == b"\x00bin"  # bytes stay bytes
        ws.close(1000, "bye")
        assert ws.close_code == 1000  # the edge answered the close frame

    conn, core = state["conn"], server.edge.core
    wait_on_edge(server, lambda: conn.state is ConnectionState.CLOSED)
    # The edge saw the client's code, and kept nothing of the connection.
    assert on_edge(server, lambda: core.stats.closed_by_code[1000]) == 1
    assert on_edge(server, lambda: (dict(core.connections), len(server.edge.keepalive))) == ({}, 0)


def test_the_edge_pings_an_open_connection_and_its_answers_keep_it_open(server):
    frames = FrameLog()
    with client(server, "echo", logger=frames.logger()) as ws:
        ws.send("hi")
        assert ws.recv(timeout=WAIT) == "hi"
        # A second ping comes only once the edge has seen the pong to the first in time.
        frames.wait_for(lambda log: log.count("< PING") >= 2 and log.count("> PONG") >= 2)
        state = on_edge(server, lambda: open_state(server))
        assert_shed(state)  # pings and pongs brought nothing back
        ws.send("still here")
        assert ws.recv(timeout=WAIT) == "still here"


def test_sends_and_joins_from_on_connect_arrive_first(server):
    with client(server, "eager") as ws:
        assert ws.recv(timeout=WAIT) == "welcome"  # written right after the upgrade, before any client message
        state = on_edge(server, lambda: open_state(server))
        assert_shed(state)
        assert state["groups"] == {"eager"}  # joined during the handshake, kept once open
        assert send_to_group("eager", "to the silent member") == 1
        assert ws.recv(timeout=WAIT) == "to the silent member"
        ws.send(json.dumps({"n": 1}))
        assert json.loads(ws.recv(timeout=WAIT)) == {"n": 1}


def test_a_close_right_after_the_upgrade_reaches_the_client_and_leaves_nothing_behind(server):
    with client(server, "echo") as first:
        first.send("hi")
        assert first.recv(timeout=WAIT) == "hi"
        # The worker now takes one connection: the next is upgraded, then closed with 1013 at once
        # (by the worker, or by the edge once the worker's heartbeat has said it is full).
        server.worker.mode.capacity = 1
        with client(server, "echo") as refused:
            with pytest.raises(ConnectionClosed):
                refused.recv(timeout=WAIT)
            assert refused.close_code == 1013
            assert refused.close_reason in ("worker at capacity", "all workers at capacity")
        core = server.edge.core
        wait_on_edge(server, lambda: len(core.connections) == 1)
        assert on_edge(server, lambda: len(server.edge.keepalive)) == 1  # the refused one's record is gone
        first.send("still served")
        assert first.recv(timeout=WAIT) == "still served"
