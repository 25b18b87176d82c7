"""Socket.IO (WS_SOCKETIO): the official socket.io-client, under Node, against the real server.

Every client test runs in the three transport modes a Socket.IO client may
use: long-polling only, WebSocket only, and the default (long-polling,
upgraded to WebSocket). The handlers are the ones WebSocket clients reach.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from django.test import override_settings
from websockets.sync.client import connect

from django_ws import group_members, send_to_connection, send_to_group
from tests.conftest import ROOT, SETTINGS, Observer, node_client, require, start_server
from tests.e2e.test_modes import wait_until

TRANSPORTS = {"polling": ["polling"], "websocket": ["websocket"], "upgrade": ["polling", "websocket"]}
SOCKETIO = {"DJANGO_WS_SOCKETIO": "1"}


def node_path() -> tuple[str, str]:
    """Node and a node_modules with socket.io-client (CI npm-installs it into DJANGO_WS_TEST_NODE_PATH)."""
    client = node_client()
    require(os.path.isdir(os.path.join(client.node_path, "socket.io-client")),
            f"no socket.io-client npm package in {client.node_path}: npm install socket.io-client@4 there")
    return client.node, client.node_path


class SocketIOClient:
    """socket.io-client in Node (tests/fixtures/js_socketio_client.mjs), driven by JSON lines."""

    def __init__(self, server, namespace: str, transports: list[str] | None = None, port: int | None = None,
                 **options):
        node, modules = node_path()
        options = {"path": f"{server.prefix}/socket.io", **options}
        if transports is not None:
            options["transports"] = transports
        self.process = subprocess.Popen(
            [node, os.path.join(ROOT, "tests", "fixtures", "js_socketio_client.mjs"),
             f"http://127.0.0.1:{port or server.port}/{namespace}", json.dumps(options)],
            env=dict(os.environ, NODE_PATH=modules), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.events: list[dict] = []

    def next(self) -> dict:
        line = self.process.stdout.readline()  # the script exits with {"timeout"} after 120 s at most
        assert line, f"the Node client ended (exit {self.process.poll()}); events so far: {self.events}"
        event = json.loads(line)
        assert "timeout" not in event, f"the Node client timed out; events so far: {self.events}"
        self.events.append(event)
        return event

    def until(self, key: str, value=None) -> tuple[dict, list[dict]]:
        """Read events up to the first with ``key`` (equal to ``value`` if given); return it and those before."""
        before = []
        while True:
            event = self.next()
            if key in event and (value is None or event[key] == value):
                return event, before
            before.append(event)

    def connected(self) -> dict:
        """Wait for the connection and the handler's welcome; return the welcome."""
        self.until("connect")
        event, _ = self.until("message")
        return json.loads(event["message"])

    def command(self, **command) -> None:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def emit(self, name: str, *args, ack: int | None = None) -> None:
        self.command(emit=name, args=list(args), **({} if ack is None else {"ack": ack}))

    def close(self) -> None:
        if self.process.poll() is None:
            self.command(quit=True)
            self.process.wait(10)


def binary(data: bytes) -> dict:
    return {"$binary": base64.b64encode(data).decode()}


@pytest.fixture(scope="module", autouse=True)
def python_socketio():
    """Every test here needs the [socketio] extra (the [test] extra includes it)."""
    import importlib.util

    require(importlib.util.find_spec("socketio") is not None,
            "python-socketio is not installed: pip install 'django-ws-edge[socketio]'")


@pytest.fixture(scope="module")
def sio_server(server_db):
    srv = start_server(server_db, env=SOCKETIO)
    yield srv
    assert srv.stop() == 0


@pytest.fixture
def clients():
    started = []

    def make(*args, **kwargs) -> SocketIOClient:
        client = SocketIOClient(*args, **kwargs)
        started.append(client)
        return client

    yield make
    for client in started:
        client.close()


@pytest.fixture(params=list(TRANSPORTS))
def transports(request) -> list[str]:
    return TRANSPORTS[request.param]


# -- the handler contract, in each transport mode ------------------------------------------


def test_echo_text_and_binary(sio_server, clients, transports):
    client = clients(sio_server, "echo", transports)
    client.until("connect")
    client.emit("message", "hello")
    assert client.until("message")[0] == {"message": "hello"}, "text comes back as a str message event"
    client.emit("message", binary(b"\x00\x01\xff"))
    assert client.until("binary")[0] == {"binary": base64.b64encode(b"\x00\x01\xff").decode()}, \
        "binary comes back as bytes"
    client.emit("message", "acked", ack=7)
    event, _ = client.until("ack")
    assert event == {"ack": 7, "args": []}, "a message event's ack says the edge passed it on, with no arguments"
    client.until("message", "acked")


def test_json_events_with_acks_reach_on_type_methods(sio_server, clients, transports):
    client = clients(sio_server, "sio/events", transports, query={"room": "blue"})
    welcome = client.connected()
    assert welcome["transport"] == "socketio", "the handler may ask which transport it is on"
    assert welcome["path"] == "/socket/sio/events", "request.path is the route's WebSocket path"
    assert welcome["query"] == {"room": "blue"}, "request.GET has the client's query, without Engine.IO's own"
    assert welcome["remote_addr"] == "127.0.0.1"
    client.emit("add", {"a": 2, "b": 40}, ack=1)
    assert client.until("ack")[0] == {"ack": 1, "args": [42]}, "the @on_type method's return value is the ack"
    client.emit("pair", [1, 2], ack=2)
    assert client.until("ack")[0] == {"ack": 2, "args": [[1, 2], "second"]}, "a returned tuple is several arguments"
    client.emit("elsewhere", 1, 2, ack=3)
    assert client.until("ack")[0] == {"ack": 3, "args": [{"unrouted": "elsewhere", "payload": [1, 2]}]}, \
        "an event without an @on_type method goes to on_event, its arguments as a list"
    client.emit("shout", "hey")  # no ack asked: the handler's send is the answer
    assert json.loads(client.until("message")[0]["message"]) == {"shouted": "hey"}
    client.emit("message", {"type": "nothing in particular"})
    assert json.loads(client.until("message")[0]["message"]) == {"json": {"type": "nothing in particular"}}, \
        "a message event with an object reaches on_json as its JSON text would"


def test_a_denied_connect_is_a_connect_error_with_the_reason(sio_server, clients, transports):
    client = clients(sio_server, "sio/denied", transports, query={"deny": "1"})
    event, before = client.until("connect_error")
    assert event["connect_error"] == {"message": "denied, as the test asked", "data": {"status": 403}}, \
        "on_connect's HandshakeDenied reaches the client as connect_error, with its status"
    assert not any("connect" in e for e in before), f"never connected: {before}"


def test_an_unknown_namespace_is_refused(sio_server, clients, transports):
    client = clients(sio_server, "no/such/route", transports)
    event, _ = client.until("connect_error")
    assert event["connect_error"] == {"message": "no websocket route here", "data": {"status": 404}}


def test_close_codes_reach_the_client_before_it_is_disconnected(sio_server, clients, transports):
    observer = Observer(sio_server)
    try:
        client = clients(sio_server, "sio/closing", transports)
        conn_id = client.connected()["id"]
        client.emit("bye", {"code": 4001, "reason": "done here"})
        event, _ = client.until("event", "close")
        assert event["args"] == [{"code": 4001, "reason": "done here"}], "the close event carries code and reason"
        assert client.until("disconnect")[0] == {"disconnect": "io server disconnect"}
        report = observer.wait(event="close", conn=conn_id)
        assert report["code"] == 4001 and report["transport"] == "socketio", "on_close ran with the code sent"

        failing = clients(sio_server, "sio/failing", transports)
        failing.connected()
        failing.emit("boom", None, ack=1)
        event, before = failing.until("event", "close")
        assert event["args"] == [{"code": 1011, "reason": "handler error"}], "a handler exception closes with 1011"
        assert not any("ack" in e for e in before), "no ack from a handler that raised"
    finally:
        observer.close()


def test_the_client_leaving_runs_on_close_with_1000(sio_server, clients, transports):
    observer = Observer(sio_server)
    try:
        client = clients(sio_server, "sio/leaving", transports)
        conn_id = client.connected()["id"]
        client.emit("add", {"a": 1, "b": 1}, ack=1)  # a named event opens the connection for on_close
        client.until("ack")
        client.command(disconnect=True)
        report = observer.wait(event="close", conn=conn_id)
        assert report["code"] == 1000, f"a client's disconnect() is a normal close: {report}"
    finally:
        observer.close()


# -- groups and senders -------------------------------------------------------------------


def test_a_group_mixes_socketio_and_websocket_clients(sio_server, clients, transports):
    room = "mixed_" + "_".join(transports)  # the clients of other tests may linger until their ping timeout
    client = clients(sio_server, f"room/{room}", transports)
    client.until("connect")
    client.emit("message", {"hello": "from socket.io"})  # the first message: on_open_json joins
    assert json.loads(client.until("message")[0]["message"])["joined"] == room
    with connect(sio_server.url(f"room/{room}")) as ws:
        ws.send("{}")
        assert json.loads(ws.recv(timeout=10))["joined"] == room
        ws.send(json.dumps({"n": 1, "from": "ws"}))
        client.emit("message", {"n": 2, "from": "sio"})
        ws.send(json.dumps({"n": 3, "from": "ws"}))
        seen_ws = [json.loads(ws.recv(timeout=10)) for _ in range(3)]
        seen_sio = [json.loads(client.until("message")[0]["message"]) for _ in range(3)]
        assert sorted(m["n"] for m in seen_ws) == [1, 2, 3], f"the WebSocket member got each once: {seen_ws}"
        assert sorted(m["n"] for m in seen_sio) == [1, 2, 3], f"the Socket.IO member got each once: {seen_sio}"
        # Nothing more is on its way: a marker from outside arrives next on both.
        with override_settings(WS_EDGES=[sio_server.sub_socket]):
            assert len(group_members(f"room.{room}")) == 2, "presence counts both kinds of member"
            assert send_to_group(f"room.{room}", "marker") == 2, "both members are counted"
        assert ws.recv(timeout=10) == "marker", "no duplicate before the marker on the WebSocket member"
        assert client.until("message")[1] == [], "no duplicate before the marker on the Socket.IO member"


def test_send_to_connection_reaches_a_socketio_client(sio_server, clients, transports):
    client = clients(sio_server, "sio/direct", transports)
    conn_id = client.connected()["id"]
    with override_settings(WS_EDGES=[sio_server.sub_socket]):
        assert send_to_connection(conn_id, "just for you").delivered == 1
        assert send_to_connection(conn_id, b"\x01\x02").delivered == 1
    assert client.until("message")[0]["message"] == "just for you"
    assert client.until("binary")[0]["binary"] == base64.b64encode(b"\x01\x02").decode()


def test_order_holds_for_1000_messages_across_the_upgrade(sio_server, clients):
    with UpgradeGate(sio_server.port) as gate:
        client = clients(sio_server, "echo", TRANSPORTS["upgrade"], port=gate.port)
        event, _ = client.until("connect")
        assert event["connect"] == "polling", "the upgrade waits at the gate: the client starts on long-polling"
        # A stream of about two seconds; from the 500th on, the client waits for the upgrade.
        client.command(burst=1000, prefix="m", interval=2, untilUpgrade=500)
        received = []
        upgraded_at = None
        while len(received) < 1000:
            event = client.next()
            if "upgrade" in event:
                upgraded_at = len(received)
            elif "message" in event:
                received.append(event["message"])
                if len(received) == 100:
                    gate.open()  # mid-stream: the rest crosses the upgrade
        assert received == [f"m{i}" for i in range(1000)], "every echo came back once, in order"
        if upgraded_at is None:
            client.until("upgrade")
        print(f"upgraded to WebSocket after {upgraded_at} of the 1000 echoes")
        assert upgraded_at is not None and 100 <= upgraded_at <= 500, \
            f"the upgrade happened in the middle of the stream (after {upgraded_at} echoes)"


class UpgradeGate:
    """A TCP relay in front of the edge that holds WebSocket upgrades until open(), or refuses them (403).

    Only the first request of each TCP connection is looked at: a WebSocket
    handshake always opens a connection of its own.
    """

    def __init__(self, port: int, refuse: bool = False):
        self.upstream = port
        self.refuse = refuse
        self._open = threading.Event()
        self.refused = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._sockets: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    def open(self) -> None:
        self._open.set()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._open.set()
        for sock in [self.listener, *self._sockets]:
            try:
                sock.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self._sockets.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client) -> None:
        head = b""
        try:
            while b"\r\n\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    client.close()
                    return
                head += chunk
            if b"\nupgrade: websocket" in head.lower():
                if self.refuse:
                    self.refused += 1
                    client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    client.close()
                    return
                self._open.wait()
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
        except OSError:
            client.close()
            return
        self._sockets.append(upstream)
        upstream.sendall(head)
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        _pipe(client, upstream)


def _pipe(source, destination) -> None:
    try:
        while data := source.recv(65536):
            destination.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, destination):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# -- recovery -------------------------------------------------------------------------------


def test_recovery_replays_the_gap_to_a_socketio_client_that_presents_its_position(sio_server, clients, transports):
    room = "sio" + "".join(t[0] for t in transports)  # a group of its own per transport mode
    group = f"hist.{room}"
    first = clients(sio_server, f"history/{room}", transports, auth={"dws": 1})
    first.until("connect")
    event, _ = first.until("message")
    assert json.loads(event["message"]) == {"joined": room, "recovering": []}
    assert event["position"] is None, "a client that asked for positions gets one with every message: none here"
    with override_settings(WS_EDGES=[sio_server.sub_socket]):
        send_to_group(group, "one")
        event, _ = first.until("message", "one")
        epoch = event["position"]["e"]
        assert event["position"] == {"g": group, "e": epoch, "o": 1}, "a message of a group with history: its position"
        first.command(disconnect=True)
        first.until("disconnect")
        wait_until(lambda: not group_members(group), 10, "the edge saw the client leave")
        for text in ("two", "three"):  # while it is away
            send_to_group(group, text)

    back = clients(sio_server, f"history/{room}", transports, auth={"dws": 1, "dws_since": {group: [epoch, 1]}})
    back.until("connect")
    said, replayed = [], []
    while {"recovered": group} not in said:
        event, _ = back.until("message")
        if event["message"].startswith("{"):
            said.append(json.loads(event["message"]))
        else:
            replayed.append((event["message"], event["position"]))
    assert {"joined": room, "recovering": [group]} in said, "the handler saw the position presented"
    assert replayed == [("two", {"g": group, "e": epoch, "o": 2}), ("three", {"g": group, "e": epoch, "o": 3})], \
        "the gap was replayed, in order, with positions"

    bad = clients(sio_server, f"history/{room}", transports, auth={"dws": 1, "dws_since": {group: ["e", -1]}})
    event, _ = bad.until("connect_error")
    assert event["connect_error"]["data"] == {"status": 400}, "bad positions are refused as over a WebSocket"
    assert "dws_since" in event["connect_error"]["message"]


# -- faults and bad input ---------------------------------------------------------------------


class PollingSession:
    """Engine.IO v4 long-polling by hand (urllib): what a client that misbehaves can send."""

    def __init__(self, server, origin: str | None = None, query: str = ""):
        self.base = f"http://127.0.0.1:{server.port}{server.prefix}/socket.io/?EIO=4&transport=polling{query}"
        self.origin = origin
        status, body = self.request("GET", sid=None)
        assert status == 200 and body.startswith("0{"), f"an Engine.IO handshake: {status} {body!r}"
        self.sid = json.loads(body[1:])["sid"]

    def request(self, method: str, body: bytes | str | None = None, sid: str | None | bool = True,
                headers: dict | None = None, timeout: float = 30) -> tuple[int, str]:
        url = self.base if sid is None else f"{self.base}&sid={self.sid if sid is True else sid}"
        data = body.encode() if isinstance(body, str) else body
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Content-Type": "text/plain;charset=UTF-8", **({"Origin": self.origin} if self.origin else {}),
            **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def packets(self) -> list[str]:
        """One poll: the Engine.IO packets waiting (a 200 with them separated by \\x1e)."""
        status, body = self.request("GET")
        assert status == 200, f"a poll is answered 200, not {status}: {body!r}"
        return body.split("\x1e")

    def connect(self, namespace: str) -> dict:
        """Connect to ``namespace`` and return the handler's welcome (the first message event)."""
        assert self.request("POST", f"40/{namespace},")[0] == 200
        packets = []
        while not any(p.startswith(f"42/{namespace},") for p in packets):
            packets += self.packets()
        assert f"40/{namespace},{{" in "".join(packets), f"the namespace is connected: {packets}"
        (message,) = [p for p in packets if p.startswith(f"42/{namespace},")]
        return json.loads(json.loads(message.split(",", 1)[1])[1])


def test_a_polling_client_that_stops_polling_is_closed_within_the_ping_timeout(make_server):
    interval, timeout = 1.0, 1.0
    server = make_server(env={**SOCKETIO, "DJANGO_WS_SOCKETIO_PING_INTERVAL": str(interval),
                              "DJANGO_WS_SOCKETIO_PING_TIMEOUT": str(timeout)})
    observer = Observer(server)
    try:
        session = PollingSession(server)
        conn_id = session.connect("sio/stalled")["id"]
        assert session.request("POST", '42/sio/stalled,1["add",{"a":1,"b":2}]')[0] == 200
        assert '43/sio/stalled,1[3]' in session.packets(), "the event was answered: the connection is open"
        stopped = time.monotonic()
        # It polls no more: no pong goes back for the edge's pings.
        report = observer.wait(timeout=interval + timeout + 10, event="close", conn=conn_id)
        elapsed = time.monotonic() - stopped
        print(f"on_close {elapsed:.1f}s after the last poll (ping interval {interval}s + timeout {timeout}s)")
        assert report["code"] == 1011, f"a keepalive timeout closes with 1011, as for WebSocket: {report}"
        assert elapsed <= interval + timeout + 2, "within WS_SOCKETIO_PING_INTERVAL + WS_SOCKETIO_PING_TIMEOUT"
    finally:
        observer.close()


def test_a_websocket_message_over_the_size_limit_ends_that_session_only(sio_server, clients):
    observer = Observer(sio_server)
    try:
        bystander = clients(sio_server, "echo", TRANSPORTS["websocket"])
        bystander.until("connect")
        big = clients(sio_server, "sio/big", TRANSPORTS["websocket"])
        conn_id = big.connected()["id"]
        big.emit("add", {"a": 1, "b": 1}, ack=1)  # opens it for on_close
        big.until("ack")
        big.emit("shout", "x" * (1024 * 1024 + 10))  # over WS_MAX_MESSAGE_SIZE
        assert big.until("disconnect")[0] == {"disconnect": "transport close"}, \
            "Tornado closes the WebSocket of a message over websocket_max_message_size"
        report = observer.wait(event="close", conn=conn_id)
        assert report["code"] == 1006, f"the handler sees the transport drop: {report}"
        bystander.emit("message", "unaffected")
        assert bystander.until("message")[0] == {"message": "unaffected"}
    finally:
        observer.close()


def test_a_polling_client_that_stops_fetching_is_closed_at_the_buffer_limit_and_one_that_reads_is_not(
        make_server, clients):
    server = make_server(env={**SOCKETIO, "DJANGO_WS_MAX_BUFFER_SIZE": str(256 * 1024)})
    observer = Observer(server)
    try:
        reader = clients(server, "sio/reader", TRANSPORTS["polling"])
        reader_id = reader.connected()["id"]
        stalled = PollingSession(server)
        stalled_id = stalled.connect("sio/stalled")["id"]
        assert stalled.request("POST", '42/sio/stalled,1["add",{"a":1,"b":2}]')[0] == 200  # opened
        with override_settings(WS_EDGES=[server.sub_socket]):
            # 400 KB to each, over WS_MAX_BUFFER_SIZE (256 KB): the reader fetches as it goes.
            for i in range(400):
                send_to_connection(stalled_id, f"{i:04d}" + "x" * 1020)
                send_to_connection(reader_id, f"{i:04d}" + "x" * 1020)
        report = observer.wait(event="close", conn=stalled_id)
        assert report["code"] == 1008, f"the client that does not poll is closed as one that does not read: {report}"
        received = [reader.until("message")[0]["message"][:4] for _ in range(400)]
        assert received == [f"{i:04d}" for i in range(400)], "the client that polls got everything, in order"
        reader.emit("add", {"a": 1, "b": 2}, ack=1)
        assert reader.until("ack")[0] == {"ack": 1, "args": [3]}, "and it is still connected"
    finally:
        observer.close()


def test_a_client_that_leaves_while_on_connect_runs_leaves_nothing_behind(make_server, tmp_path):
    sio_server = make_server(env=SOCKETIO)  # its own: no other test's client counts in its figures
    gate = tmp_path / "gate"
    session = PollingSession(sio_server, query=f"&gate={gate}")
    # The POST that carries the connect is answered once the worker has: in a thread of its own.
    connecting = threading.Thread(target=session.request, args=("POST", "40/gated,"))
    connecting.start()
    wait_until(lambda: edge_stats(sio_server)["handshakes_pending"] == 1, 10, "on_connect is running")
    assert session.request("POST", "1")[0] == 200, "an Engine.IO close packet: the client leaves"
    gate.touch()  # on_connect returns: the worker accepts a client that is gone
    connecting.join(20)
    wait_until(lambda: edge_stats(sio_server)["handshakes_pending"] == 0, 20, "the worker answered")
    wait_until(lambda: edge_stats(sio_server)["connections"] == 0, 20, "the edge holds no connection for it")


def edge_stats(server) -> dict:
    with urllib.request.urlopen(f"{server.http_url}/_django_ws/stats", timeout=10) as response:
        return json.loads(response.read())


def test_the_edges_rate_limits_apply_to_socketio_clients(make_server, clients):
    limits = {"WS_CONNECTIONS_PER_ADDRESS": 2, "WS_MESSAGES_PER_CONNECTION": 5, "WS_MESSAGE_WINDOW": 60}
    server = make_server(env={**SOCKETIO, "DJANGO_WS_RATE_LIMITS": json.dumps(limits)})
    first = clients(server, "echo", TRANSPORTS["polling"])
    first.until("connect")
    second = clients(server, "echo", TRANSPORTS["websocket"])
    second.until("connect")
    third = clients(server, "echo", TRANSPORTS["websocket"])
    event, _ = third.until("connect_error")
    assert event["connect_error"]["message"] == "too many connections from this address"
    assert event["connect_error"]["data"]["status"] == 429 and event["connect_error"]["data"]["retry_after"] >= 1, \
        "the per-address limit refuses as for a WebSocket handshake, with Retry-After in the data"
    for i in range(6):
        second.emit("message", f"m{i}")
    event, before = second.until("event", "close")
    assert event["args"] == [{"code": 1008, "reason": "message rate limit exceeded"}], \
        "the sixth message in the window closes the connection with 1008"
    echoed = [e["message"] for e in before if "message" in e]
    # Echoes still on their way from the worker when the edge closed are dropped, as for WebSocket.
    assert echoed == [f"m{i}" for i in range(len(echoed))] and len(echoed) <= 5, \
        f"only messages within the limit reached the handler: {echoed}"


def test_bad_input_on_the_polling_endpoint_is_refused_without_disturbing_others(sio_server, clients):
    bystander = clients(sio_server, "echo", TRANSPORTS["polling"])
    bystander.until("connect")
    limit = 1024 * 1024  # WS_MAX_MESSAGE_SIZE of the tests' settings: python-engineio's max_http_buffer_size

    session = PollingSession(sio_server)
    status, body = session.request("GET", sid="not-a-session")
    assert status == 400 and "Invalid session" in body, f"an unknown sid is a 400: {status} {body!r}"
    status, _ = session.request("POST", b"\xff\xfe garbage \x00", sid="not-a-session")
    assert status == 400, "a POST to an unknown sid is a 400"

    foreign = PollingSession.__new__(PollingSession)
    foreign.base, foreign.sid, foreign.origin = session.base, session.sid, "http://evil.example"
    status, body = foreign.request("POST", "40/echo,")
    assert status == 403 and "origin not allowed" in body, f"a sid used from another origin is refused: {status}"
    status, _ = foreign.request("GET")
    assert status == 403, "polls from another origin are refused too"
    status, _ = foreign.request("GET", sid=None)
    assert status == 403, "and so is a handshake"

    welcome = session.connect("sio/huge")
    status, body = session.request("POST", b"x" * (limit + 1000))
    assert status == 413, f"a POST over the message size limit is refused with 413: {status} {body[:80]!r}"
    assert '42/sio/huge,["close",{"code":1009,"reason":"message too big"}]' in session.packets(), \
        f"its connection {welcome['id']} is closed with 1009, as a WebSocket message too big would be"
    try:
        status, _ = session.request("POST", b"x" * (limit + 200_000))
    except (ConnectionError, urllib.error.URLError):
        status = None  # Tornado may cut a body that large short before it answers
    assert status in (None, 400), f"a body past the edge's HTTP limit is not read: {status}"

    garbage = PollingSession(sio_server)
    status, _ = garbage.request("POST", "42/echo,[not json")
    assert status in (200, 400), f"garbage in a packet is no server error: {status}"
    for nonsense in ("\x00\x01\x02", "9", "4" + "[" * 5000):
        status, _ = PollingSession(sio_server).request("POST", nonsense)
        assert status in (200, 400), f"{nonsense[:10]!r}: no server error ({status})"

    bystander.emit("message", "still here")
    assert bystander.until("message")[0] == {"message": "still here"}, "the other client noticed nothing"


def test_a_worker_killed_closes_socketio_clients_with_1012(make_server, clients, transports):
    server = make_server(env=SOCKETIO)
    client = clients(server, "echo", transports)
    client.until("connect")
    client.emit("message", "before")
    client.until("message", "before")
    with connect(server.url("echo")) as ws:
        ws.send("before")
        assert ws.recv(timeout=10) == "before"
        (worker,) = server.worker_pids
        os.kill(worker, signal.SIGKILL)
        event, _ = client.until("event", "close")
        assert event["args"] == [{"code": 1012, "reason": "worker lost"}], "the same close as a WebSocket client's"
        with pytest.raises(Exception) as closed:
            ws.recv(timeout=20)
        assert getattr(closed.value, "rcvd", None) is not None and closed.value.rcvd.code == 1012, \
            f"the WebSocket client beside it got 1012 too: {closed.value!r}"
    assert client.until("disconnect")[0] == {"disconnect": "io server disconnect"}


def test_socketio_off_imports_nothing_of_it_and_its_path_is_a_route_like_any(make_server):
    script = (
        "import sys, django; django.setup()\n"
        "from django_ws.edge.app import Edge\n"
        "from django_ws.routing import Mount\n"
        "edge = Edge(Mount('/socket'), 'ipc:///tmp/dws-unused-push', 'ipc:///tmp/dws-unused-sub')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('socketio', 'engineio')))\n"
    )
    env = dict(os.environ, DJANGO_SETTINGS_MODULE=SETTINGS, PYTHONPATH=ROOT)
    env.pop("DJANGO_WS_SOCKETIO", None)
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]", f"WS_SOCKETIO off: no socketio module loaded: {result.stdout}"

    server = make_server()
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}/socket/socket.io/?EIO=4&transport=polling")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 404, "without WS_SOCKETIO, /socket/socket.io/ is an unknown route"


# -- the example chat in a browser whose WebSockets are blocked --------------------------------


@pytest.mark.browser
def test_example_chat_over_long_polling_when_websockets_are_blocked(chromium, tmp_path):
    from playwright.sync_api import expect

    from tests.e2e.test_browser import SEED, TIMEOUT_MS, Example, lines, open_pages, say

    expect.set_options(timeout=TIMEOUT_MS)
    example = Example()
    # The pages reach the edge through a proxy that refuses every WebSocket upgrade.
    gate = UpgradeGate(example.ws_port, refuse=True)
    example.env["WS_BASE_URL"] = f"ws://127.0.0.1:{gate.port}/socket"
    contexts = []
    try:
        example.setup_db()
        example.start_http()
        example.start_ws()
        pages = open_pages(chromium, f"{example.http_url}/room/lobby/socketio/", contexts)
        alice, bob = pages
        for page in pages:
            expect(page.locator("#status")).to_have_text("connected (polling)")
            expect(lines(page, f"history: {SEED}")).to_have_count(1)
        say(alice, "alice", "hello over long-polling")
        say(bob, "bob", "hello back")
        for page in pages:
            for text in ("alice: hello over long-polling", "bob: hello back"):
                expect(lines(page, text)).to_have_count(1)
        wait_until(lambda: gate.refused >= 2, 20, "each page tried the WebSocket upgrade, and the proxy refused it")
        for page in pages:
            assert page.evaluate("socket.io.engine.transport.name") == "polling", "still on long-polling"

        # A server reload: a new edge on the same port. The pages are closed with
        # 1001, come back by themselves, are told to resync (a new edge's history
        # is new) and get the room's saved lines again: each shows once.
        assert example.stop_ws() == 0, "run_wsserver exited non-zero on SIGTERM"
        for page in pages:
            expect(page.locator("#status")).to_contain_text("reconnecting")
        example.start_ws()
        for page in pages:
            expect(page.locator("#status")).to_have_text("connected (polling)")
            expect(page.locator("body")).to_have_attribute("data-resynced", "chat.lobby")
            for text in (f"history: {SEED}", "alice: hello over long-polling", "bob: hello back"):
                expect(lines(page, text)).to_have_count(1)
        say(bob, "bob", "still here after the reload")
        for page in pages:
            expect(lines(page, "bob: still here after the reload")).to_have_count(1)
        screenshot = tmp_path / "socketio-chat.png"
        alice.screenshot(path=str(screenshot), full_page=True)
        print(f"screenshot: {screenshot}")
    finally:
        for context in contexts:
            context.close()
        example.stop()
        gate.close()


# -- several edges behind nginx -------------------------------------------------------------------

NGINX_CONF = """
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;

    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    upstream sticky_edges {{
        ip_hash;
        {servers}
    }}
    upstream round_robin_edges {{
        {servers}
    }}
    server {{
        listen 127.0.0.1:{sticky_port};
        location /socket/ {{
            proxy_pass http://sticky_edges;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_read_timeout 1h;
            proxy_buffering off;
        }}
    }}
    server {{
        listen 127.0.0.1:{round_robin_port};
        location /socket/ {{
            proxy_pass http://round_robin_edges;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_read_timeout 1h;
            proxy_buffering off;
        }}
    }}
}}
"""


def test_two_edges_behind_nginx_need_and_get_sticky_sessions(make_server, clients, tmp_path):
    import shutil

    from django_ws.testing.server import free_port

    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    require(nginx is not None, "nginx is not installed (apt-get install nginx)")
    edges = [make_server(env=SOCKETIO), make_server(env=SOCKETIO)]
    sticky_port, round_robin_port = free_port(), free_port()
    (tmp_path / "nginx.conf").write_text(NGINX_CONF.format(
        tmp=tmp_path, sticky_port=sticky_port, round_robin_port=round_robin_port,
        servers="\n        ".join(f"server 127.0.0.1:{edge.port};" for edge in edges)))
    process = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: _listening(sticky_port) and _listening(round_robin_port), 20, "nginx listens")

        class Via:  # what SocketIOClient needs of a server: its port and prefix
            prefix = edges[0].prefix

            def __init__(self, port):
                self.port = port

        # Long-polling clients from addresses in different /24s (ip_hash's key): spread over both edges.
        addresses = [f"127.0.{n}.1" for n in range(8)]
        polling = [clients(Via(sticky_port), "sio/sticky", TRANSPORTS["polling"], localAddress=address)
                   for address in addresses]
        edge_ids = []
        for client in polling:
            edge_ids.append(client.connected()["id"].split(".")[0])
        for n, client in enumerate(polling):
            for i in range(3):  # a few round trips: every poll and POST must reach the session's edge
                client.emit("add", {"a": n, "b": i}, ack=i)
                assert client.until("ack")[0] == {"ack": i, "args": [n + i]}
        assert len(set(edge_ids)) == 2, f"the clients were spread over both edges: {edge_ids}"

        # The default transports through the same proxy upgrade to WebSocket.
        upgrading = clients(Via(sticky_port), "echo", TRANSPORTS["upgrade"])
        event, _ = upgrading.until("connect")
        upgrading.command(burst=50, prefix="u")
        assert [upgrading.until("message")[0]["message"] for _ in range(50)] == [f"u{i}" for i in range(50)]
        # The upgrade may be over before the namespace connects, or come among the messages.
        if event["connect"] != "websocket" and {"upgrade": "websocket"} not in upgrading.events:
            upgrading.until("upgrade", "websocket")

        # Without stickiness, a polling session's next request lands on the other edge and fails.
        lost = clients(Via(round_robin_port), "sio/unsticky", TRANSPORTS["polling"])
        event, _ = lost.until("connect_error")
        assert event["connect_error"]["message"] in ("xhr post error", "xhr poll error", "websocket error"), \
            f"a polling session is refused by the edge that does not hold it: {event}"
    finally:
        process.terminate()
        process.wait(10)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
