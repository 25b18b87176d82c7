"""Group history and recovery across reconnects, with real processes (docs/protocol.rst, "Positions and recovery").

The clients here follow the documented protocol by hand (``dws=1``, the
envelope, ``dws_since``), as any client may: nothing of the shipped
JavaScript client is needed. tests/test_client_js.py runs that one.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import urllib.request
from urllib.parse import quote

import pytest
import websockets
from django.test import override_settings
from websockets.sync.client import connect

from django_ws import send_to_group
from tests import procinfo
from tests.e2e.test_modes import wait_until


class Positions:
    """What a client following docs/protocol.rst keeps: the last position of each group, and what it got."""

    def __init__(self):
        self.since: dict[str, list] = {}
        self.messages: list[str] = []  # application data, in arrival order
        self.resyncs: list[str] = []
        #: What the handler said (its on_connect's "joined", its on_recovered, its on_resync), decoded.
        self.said: list[dict] = []

    def url(self, server, route: str) -> str:
        query = "dws=1"
        if self.since:
            query += "&dws_since=" + quote(json.dumps(self.since, separators=(",", ":")))
        return f"{server.url(route)}?{query}"

    def frame(self, data: str | bytes) -> str | bytes:
        """Take the envelope off a frame; return the application's data, or None for a resync signal."""
        sep = "\n" if isinstance(data, str) else b"\n"
        header, _, payload = data.partition(sep)
        if header:
            fields = json.loads(header)
            if "resync" in fields:
                self.since[fields["resync"]] = [fields["e"], fields["o"]]
                self.resyncs.append(fields["resync"])
                return None
            self.since[fields["g"]] = [fields["e"], fields["o"]]
        return payload


def stats(server) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/_django_ws/stats", timeout=10) as response:
        return json.loads(response.read())


class TcpCutter:
    """A TCP relay in front of the edge whose connections can all be cut at once (a reset, no close frame)."""

    def __init__(self, port: int):
        self.port = port
        self.pipes: set[asyncio.Transport] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _relay(self, reader, writer):
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            writer.close()
            return
        self.pipes.update((writer.transport, up_writer.transport))

        async def pump(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self.pipes.discard(writer.transport)
        self.pipes.discard(up_writer.transport)

    def cut(self) -> int:
        cut = list(self.pipes)
        for transport in cut:
            transport.abort()
        return len(cut) // 2

    def close(self):
        if self.server is not None:
            self.server.close()


async def recovering_client(url_for, positions: Positions, want: int, reconnects: list, ready: asyncio.Event | None):
    """Stay in the room until ``want`` messages have arrived, reconnecting (with positions) whenever cut off."""
    delay = 0.05
    while len(positions.messages) < want:
        try:
            async with websockets.connect(url_for(), open_timeout=20, max_queue=None) as ws:
                delay = 0.05
                async for frame in ws:
                    data = positions.frame(frame)
                    if data is None:
                        continue
                    if data.startswith("{"):  # what the handler itself says
                        positions.said.append(json.loads(data))
                        if '"joined"' in data and ready is not None:
                            ready.set()
                            ready = None
                        continue
                    positions.messages.append(data)
                    if len(positions.messages) >= want:
                        return
        except (OSError, websockets.InvalidStatus, websockets.ConnectionClosed, asyncio.TimeoutError):
            pass
        reconnects.append(1)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


def sender(server, group: str, count: int, interval: float, started: threading.Event):
    """A Django process's sends: ``count`` numbered messages to ``group``."""
    with override_settings(WS_EDGES=[server.sub_socket]):
        started.set()
        for i in range(count):
            send_to_group(group, f"m{i:03d}")
            time.sleep(interval)


def run_200_clients_across(server, disconnect, route: str, group: str, relay: bool = False):
    """200 clients in ``group``; ``await disconnect(relay)`` cuts them all while 100 messages are sent.

    Each client must end with all 100 messages, in order, exactly once.
    """
    clients, want = 200, 100

    async def main():
        cutter = None
        url_port = server.port
        if relay:
            cutter = TcpCutter(server.port)
            url_port = await cutter.start()
        positions = [Positions() for _ in range(clients)]
        reconnects: list = []
        readies = [asyncio.Event() for _ in range(clients)]

        def url_for(p):
            return lambda: p.url(server, route).replace(f":{server.port}/", f":{url_port}/")

        tasks = [asyncio.ensure_future(recovering_client(url_for(p), p, want, reconnects, r))
                 for p, r in zip(positions, readies)]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
        started = threading.Event()
        loop = asyncio.get_running_loop()
        sending = loop.run_in_executor(None, sender, server, group, want, 0.02, started)
        await loop.run_in_executor(None, started.wait)
        async def some_live():  # some messages reach every client live before the cut
            while not all(p.messages for p in positions):
                await asyncio.sleep(0.01)

        await asyncio.wait_for(some_live(), 30)
        await disconnect(cutter)
        await sending
        await asyncio.wait_for(asyncio.gather(*tasks), 90)
        if cutter is not None:
            cutter.close()
        return positions, len(reconnects)

    positions, reconnects = asyncio.run(main())
    expected = [f"m{i:03d}" for i in range(want)]
    for i, p in enumerate(positions):
        assert p.messages == expected, f"client {i} got {len(p.messages)} messages, not m000..m099 once each " \
                                       f"in order: {p.messages[:5]}...; resyncs {p.resyncs}"
        assert p.resyncs == [], f"client {i} was told to resync, though the history covered the gap"
        recovered = [said for said in p.said if "recovered" in said]
        assert recovered == [{"recovered": group}] * len(recovered) and recovered, \
            f"client {i}: its handler's on_recovered ran for {group} after the reconnect: {p.said}"
    assert reconnects >= clients, f"every client was cut off and came back (reconnects: {reconnects})"
    return positions


@pytest.mark.slow
def test_200_clients_miss_nothing_across_a_deploy_sighup(make_server):
    server = make_server(workers=2)

    async def deploy(_relay):
        mark = len(server.lines)
        server.process.send_signal(signal.SIGHUP)
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: server.wait_for("Restarted 2 worker(s)", timeout=30, start=mark))

    run_200_clients_across(server, deploy, "history/deploy", "hist.deploy")
    assert stats(server)["history"]["messages"] == 100, "the edge kept every message of the group (size 100)"


@pytest.mark.slow
def test_200_clients_miss_nothing_across_a_tcp_cut(make_server):
    server = make_server()

    async def cut(relay):
        assert relay.cut() == 200, "every client's TCP connection was cut"

    run_200_clients_across(server, cut, "history/tcpcut", "hist.tcpcut", relay=True)


def recv_app(ws, positions: Positions, timeout: float = 10):
    """The next application message (or handler's word) on ``ws``, envelopes taken off; resyncs are recorded."""
    while True:
        data = positions.frame(ws.recv(timeout=timeout))
        if data is not None:
            return data


def joined(server, room: str, positions: Positions):
    """Connect to the history room with ``positions``; return the socket once on_connect's word arrived."""
    ws = connect(positions.url(server, f"history/{room}"))
    said = json.loads(recv_app(ws, positions))
    assert said["joined"] == room, said
    return ws, said


def test_a_plain_client_receives_exactly_the_bytes_it_did_before(make_server):
    server = make_server()
    with connect(server.url("history/plain")) as plain, override_settings(WS_EDGES=[server.sub_socket]):
        assert json.loads(plain.recv(timeout=10)) == {"joined": "plain", "recovering": []}
        send_to_group("hist.plain", "text as sent")
        send_to_group("hist.plain", b"\x00\xffbinary")
        assert plain.recv(timeout=10) == "text as sent"
        assert plain.recv(timeout=10) == b"\x00\xffbinary"


@pytest.mark.parametrize("gap", ["size", "ttl", "restart"])
def test_a_gap_the_history_cannot_fill_gets_the_resync_signal_and_on_resync(make_server, gap):
    history = {"size": 100, "ttl": 300}
    if gap == "size":
        history["size"] = 5
    elif gap == "ttl":
        history["ttl"] = 1
    env = {"DJANGO_WS_GROUP_HISTORY": json.dumps({"hist.*": history})}
    server = make_server(env=env)
    positions = Positions()
    ws, _ = joined(server, "gap", positions)
    with override_settings(WS_EDGES=[server.sub_socket]):
        send_to_group("hist.gap", "seen")
        assert recv_app(ws, positions) == "seen"
        seen = list(positions.since["hist.gap"])
        ws.close()
        for i in range(10):
            send_to_group("hist.gap", f"missed {i}")
    if gap == "ttl":
        wait_until(lambda: stats(server)["history"]["messages"] == 0, 10, "the messages expired after ttl (1 s)")
    elif gap == "restart":
        server.stop()
        server = make_server(env=env, port=server.port)
    ws, said = joined(server, "gap", positions)
    assert said["recovering"] == ["hist.gap"], "the handler sees which groups the client recovers"
    assert json.loads(recv_app(ws, positions)) == {"resync": "hist.gap"}, "its on_resync ran"
    assert positions.resyncs == ["hist.gap"], "the client got the resync signal, and no missed message"
    assert positions.since["hist.gap"] != seen, "the signal gave the position to recover from next time"
    with override_settings(WS_EDGES=[server.sub_socket]):
        send_to_group("hist.gap", "live again")
        assert recv_app(ws, positions) == "live again"
    ws.close()


def test_a_position_for_a_group_the_handler_does_not_join_gives_nothing(make_server):
    server = make_server()
    other = Positions()
    ws, _ = joined(server, "secret", other)
    with override_settings(WS_EDGES=[server.sub_socket]):
        send_to_group("hist.secret", "s0")
        assert recv_app(ws, other) == "s0"
        ws.close()
        send_to_group("hist.secret", "s1 (for members of secret only)")
    # Another room's handler, presented the position in hist.secret: it joins hist.public only.
    intruder = Positions()
    intruder.since = {"hist.secret": [other.since["hist.secret"][0], 0]}
    ws, said = joined(server, "public", intruder)
    assert said["recovering"] == ["hist.secret"]
    with override_settings(WS_EDGES=[server.sub_socket]):
        send_to_group("hist.public", "public")
        send_to_group("hist.secret", "s2")
        assert recv_app(ws, intruder) == "public", "nothing of hist.secret came first"
        with pytest.raises(TimeoutError):
            recv_app(ws, intruder, timeout=0.5)
    assert intruder.resyncs == [] and "hist.secret" not in [s.get("resync") for s in intruder.said]
    ws.close()


@pytest.mark.parametrize("query, reason", [
    ("dws=2", "unsupported dws"),
    ("dws=1&dws_since=not-json", "dws_since is not JSON"),
])
def test_a_bad_position_query_is_refused_with_400_and_why(make_server, query, reason):
    server = make_server()
    with pytest.raises(websockets.InvalidStatus) as refused:
        connect(f"{server.url('history/bad')}?{query}")
    assert refused.value.response.status_code == 400
    assert reason in refused.value.response.body.decode()


@pytest.mark.slow
def test_the_history_bound_holds_with_1mb_messages(make_server):
    server = make_server(env={"DJANGO_WS_GROUP_HISTORY": json.dumps({"hist.*": {"size": 100, "ttl": 300}})})
    edge = server.process.pid
    big = "x" * 1_000_000
    with override_settings(WS_EDGES=[server.sub_socket]):
        for _ in range(100):
            send_to_group("hist.big", big)
        full = procinfo.status(edge)["rss_kb"]
        for _ in range(200):
            send_to_group("hist.big", big)
    figures = stats(server)["history"]
    assert figures["messages"] == 100 and figures["bytes"] == 100_000_000, \
        f"the edge keeps the last 100 messages of the group, no more: {figures}"
    after = procinfo.status(edge)["rss_kb"]
    print(f"edge RSS with 100 x 1 MB kept: {full // 1024} MB; after 200 more: {after // 1024} MB")
    assert after < full + 60 * 1024, f"200 more 1 MB messages grew the edge from {full} kB to {after} kB"


# -- the shipped JavaScript client, under Node -----------------------------------------------


class NodeClient:
    """django-ws.js in Node (as an ES module, with the ws package passed in options), driven line by line."""

    def __init__(self, url: str, base_delay_ms: int = 300):
        import subprocess

        from tests.conftest import ROOT, node_client

        client = node_client("django-ws.mjs")
        self.process = subprocess.Popen(
            [client.node, os.path.join(ROOT, "tests", "fixtures", "js_recovery_client.mjs"), client.script, url, str(base_delay_ms)],
            env=dict(os.environ, NODE_PATH=client.node_path), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.events: list[dict] = []

    def next(self) -> dict:
        line = self.process.stdout.readline()  # the script exits with {"timeout"} after 60 s at most
        assert line, f"the Node client ended (exit {self.process.poll()}); events so far: {self.events}"
        event = json.loads(line)
        assert "timeout" not in event, f"the Node client timed out; events so far: {self.events}"
        self.events.append(event)
        return event

    def until(self, **match) -> list[dict]:
        """Read events up to one with ``match``; return those before it."""
        before = []
        while True:
            event = self.next()
            if all(event.get(k) == v for k, v in match.items()):
                return before
            before.append(event)

    def command(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            self.command("quit")
            self.process.wait(10)


def test_the_js_client_recovers_a_gap_and_its_handlers_never_see_positions(make_server):
    server = make_server()
    client = NodeClient(server.url("history/js"))
    try:
        client.until(json={"joined": "js", "recovering": []})
        with override_settings(WS_EDGES=[server.sub_socket]):
            send_to_group("hist.js", "one")
            assert client.until(message="one") == [], "onmessage sees the data as sent, without its envelope"
            client.command("drop")
            client.until(open=True)
            # Reconnected: the handler's on_connect ran with the position presented.
            client.until(json={"joined": "js", "recovering": ["hist.js"]})
            # on_recovered runs after on_connect, in its own reply: wait for it before the next
            # message, which the test sends to the edge directly and could otherwise overtake it.
            client.until(json={"recovered": "hist.js"})
            send_to_group("hist.js", "two")
            client.until(message="two")
            client.command("drop")
            wait_until(lambda: stats(server)["connections"] == 0, 10, "the edge saw the client leave")
            for text in ("three", "four", "five"):  # while it is away
                send_to_group("hist.js", text)
            client.until(json={"joined": "js", "recovering": ["hist.js"]})
            client.until(json={"recovered": "hist.js"})
            send_to_group("hist.js", "six")
            client.until(message="six")
        got = [e["message"] for e in client.events if "message" in e and not e["message"].startswith("{")]
        assert got == ["one", "two", "three", "four", "five", "six"], f"each message once, in order: {got}"
        assert not any("resync" in e for e in client.events)
        assert client.events.count({"json": {"recovered": "hist.js"}}) == 2, "the handler's on_recovered ran twice"
        client.command("positions")
        assert client.next()["positions"]["hist.js"][1] == 6, "the client kept the last offset it saw"
    finally:
        client.close()


def test_the_js_client_calls_onresync_when_the_gap_is_too_old(make_server):
    server = make_server(env={"DJANGO_WS_GROUP_HISTORY": json.dumps({"hist.*": {"size": 2, "ttl": 300}})})
    client = NodeClient(server.url("history/jsgap"), base_delay_ms=2000)
    try:
        client.until(json={"joined": "jsgap", "recovering": []})
        with override_settings(WS_EDGES=[server.sub_socket]):
            send_to_group("hist.jsgap", "seen")
            client.until(message="seen")
            client.command("drop")
            wait_until(lambda: stats(server)["connections"] == 0, 10, "the edge saw the client leave")
            for i in range(5):  # size 2: the first of them will be gone
                send_to_group("hist.jsgap", f"missed {i}")
            client.until(open=True)
        before = client.until(resync="hist.jsgap")
        assert not [e for e in before if "message" in e and "missed" in e["message"]], f"nothing was replayed: {before}"
        client.until(json={"resync": "hist.jsgap"})  # and the handler's on_resync ran
        with override_settings(WS_EDGES=[server.sub_socket]):
            send_to_group("hist.jsgap", "after")
            client.until(message="after")
    finally:
        client.close()
