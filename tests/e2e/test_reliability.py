"""Faults and shutdowns with real processes and real signals: nothing hangs, nothing is lost silently."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests import procinfo
from tests.conftest import ROOT, SETTINGS
from tests.e2e.test_modes import stats, wait_until


@pytest.fixture
def close_log(tmp_path):
    path = tmp_path / "closes.log"
    path.touch()

    class Log:
        env = {"DJANGO_WS_CLOSE_LOG": str(path)}

        def lines(self):
            return path.read_text().splitlines()

        def tags(self, tag):
            return [line for line in self.lines() if line.split()[1] == tag]

    return Log()


def echo_clients(server, tag, n):
    sockets = []
    for i in range(n):
        ws = connect(server.url(f"rel/echo/{tag}"))
        ws.send(f"hello {i}")
        assert ws.recv(timeout=10) == f"hello {i}"
        sockets.append(ws)
    return sockets


def closed_code(ws, timeout=10):
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=timeout)
    return closed.value.rcvd.code if closed.value.rcvd else None


def test_sigstop_hang_is_detected_and_sigcont_rejoins(make_server, close_log):
    srv = make_server(workers=2, env=close_log.env)
    sockets = echo_clients(srv, "hang", 6)
    hung = srv.worker_pids[0]
    stopped_at = time.monotonic()
    mark = len(srv.lines)
    os.kill(hung, signal.SIGSTOP)
    try:
        # Its silence, or ZeroMQ's own heartbeat (the same timeout: links.keep_alive), whichever the
        # edge sees first: a hung worker's libzmq threads are stopped too.
        line = srv.wait_for(" lost (", timeout=10, start=mark)
        detected = time.monotonic() - stopped_at
        print(f"SIGSTOP detected in {detected:.2f}s: {line}")
        assert detected < 4.0
        codes = []
        for ws in sockets:  # those on the hung worker got 1012; the others still echo
            try:
                ws.send("ping")
                assert ws.recv(timeout=10) == "ping"
                codes.append("alive")
            except ConnectionClosed as exc:
                codes.append(exc.rcvd.code)
        assert set(codes) == {"alive", 1012}, codes
        with connect(srv.url("rel/echo/new")) as ws:  # new connections go to the live worker
            ws.send("served")
            assert ws.recv(timeout=10) == "served"
    finally:
        mark = len(srv.lines)
        os.kill(hung, signal.SIGCONT)
    # Resumed, it notices it missed the edge's heartbeats, ends the stale
    # connections (their on_close runs) and joins again as a fresh worker.
    srv.wait_for("joined; 2 connected", timeout=10, start=mark)
    hung_count = codes.count(1012)
    wait_until(lambda: len(close_log.tags("hang")) == hung_count, 10,
               f"on_close ran for the {hung_count} connections of the resumed worker")
    for ws in sockets:
        ws.close()
    wait_until(lambda: len(close_log.tags("hang")) == 6, 10, "and for the others when they closed")


def test_a_dead_edge_is_noticed_by_its_workers_and_a_new_edge_is_served(make_server, close_log, server_db):
    edge = make_server(edge_only=True)
    env = dict(os.environ, DJANGO_SETTINGS_MODULE=SETTINGS, PYTHONPATH=ROOT, DJANGO_WS_TEST_DB=server_db,
               **close_log.env)
    worker = subprocess.Popen([sys.executable, "-m", "django", "run_wsworker", "--push-socket", edge.push_socket,
                               "--sub-socket", edge.sub_socket], cwd=ROOT, env=env)
    try:
        edge.wait_for("joined")
        sockets = echo_clients(edge, "orphan", 20)
        killed_at = time.monotonic()
        os.kill(edge.process.pid, signal.SIGKILL)
        edge.expected_returncode = -signal.SIGKILL
        wait_until(lambda: len(close_log.tags("orphan")) == 20, 10, "on_close ran for every connection of the dead edge")
        print(f"edge kill -9 to on_close of all 20 connections: {time.monotonic() - killed_at:.2f}s")
        for ws in sockets:
            ws.close()
        edge.process.wait()
        # A new edge on the same endpoints: the running worker joins it by itself.
        new_edge = make_server(edge_only=True, push_socket=edge.push_socket, sub_socket=edge.sub_socket)
        new_edge.wait_for("joined")
        with connect(new_edge.url("rel/echo/again")) as ws:
            ws.send("served by the same worker")
            assert ws.recv(timeout=10) == "served by the same worker"
    finally:
        worker.terminate()
        assert worker.wait(20) == 0


def test_no_worker_means_503_at_once_not_a_hang(make_server):
    srv = make_server(edge_only=True)
    started = time.monotonic()
    with pytest.raises(InvalidStatus) as refused:
        connect(srv.url("echo"), open_timeout=10)
    assert refused.value.response.status_code == 503
    assert time.monotonic() - started < 5


def test_sighup_to_an_edge_only_server_is_reported_and_ignored(make_server):
    srv = make_server(edge_only=True)
    srv.process.send_signal(signal.SIGHUP)
    srv.wait_for("SIGHUP: no workers here to restart (--edge-only); ignored.")
    with pytest.raises(InvalidStatus) as refused:  # still there, answering as before
        connect(srv.url("echo"), open_timeout=10)
    assert refused.value.response.status_code == 503
    assert srv.process.poll() is None, "SIGHUP must not end an --edge-only server"


def test_keepalive_drops_a_client_that_stops_answering_pings(make_server, close_log):
    srv = make_server(env={**close_log.env, "DJANGO_WS_PING_INTERVAL": "0.3", "DJANGO_WS_PING_TIMEOUT": "0.5"})
    # A client that completes the handshake and then never reads: no pongs.
    raw = socket.create_connection(("127.0.0.1", srv.port))
    raw.sendall(
        f"GET {srv.prefix}/rel/echo/mute HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert raw.recv(4096).startswith(b"HTTP/1.1 101")
    # One masked text frame so the handler opens ("hi").
    raw.sendall(bytes([0x81, 0x82, 1, 2, 3, 4, ord("h") ^ 1, ord("i") ^ 2]))
    with connect(srv.url("rel/echo/talker")) as healthy:  # answers pings: stays
        wait_until(lambda: close_log.tags("mute"), 15, "the silent client was dropped and its on_close ran")
        (line,) = close_log.tags("mute")
        assert line.split()[3] == "1011", f"on_close should see 1011 (keepalive ping timeout): {line}"
        healthy.send("still here")
        assert healthy.recv(timeout=10) == "still here"
    # The edge sent its close frame (1011, "keepalive ping timeout") before dropping the connection.
    data = b""
    while chunk := raw.recv(4096):
        data += chunk
    assert b"\x88" in data and b"\x03\xf3keepalive ping timeout" in data, data[-80:]
    raw.close()


def test_sigterm_with_500_clients_closes_all_with_1001_and_runs_every_on_close(make_server, close_log):
    from websockets.asyncio.client import connect as aconnect

    srv = make_server(workers=2, env={**close_log.env, "DJANGO_WS_SHUTDOWN_TIMEOUT": "10"})
    codes = []

    async def main():
        sockets = []
        for _ in range(5):
            sockets += await asyncio.gather(*(aconnect(srv.url("rel/echo/term")) for _ in range(100)))
        for i, ws in enumerate(sockets):
            await ws.send(str(i))
        for i, ws in enumerate(sockets):
            assert await asyncio.wait_for(ws.recv(), 30) == str(i)
        started = time.monotonic()
        srv.process.send_signal(signal.SIGTERM)

        async def until_closed(ws):
            try:
                await asyncio.wait_for(ws.recv(), 30)
            except ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd else None

        codes.extend(await asyncio.gather(*(until_closed(ws) for ws in sockets)))
        return time.monotonic() - started

    elapsed = asyncio.run(main())
    assert srv.process.wait(20) == 0
    print(f"SIGTERM with 500 clients: all closed in {elapsed:.2f}s")
    assert codes == [1001] * 500
    assert len(close_log.tags("term")) == 500, "on_close ran for every connection"
    for pid in srv.worker_pids:
        assert not procinfo.alive(pid), "no worker left behind"


def test_sighup_restarts_the_workers_and_the_edge_keeps_serving(make_server, close_log):
    srv = make_server(workers=2, env=close_log.env)
    old_workers = set(srv.worker_pids)
    sockets = echo_clients(srv, "deploy", 4)
    mark = len(srv.lines)
    srv.process.send_signal(signal.SIGHUP)
    srv.wait_for("Restarted 2 worker(s)", timeout=30, start=mark)
    assert set(srv.worker_pids) - old_workers, "new worker processes started"
    for pid in old_workers:
        wait_until(lambda: not procinfo.alive(pid), 10, f"old worker {pid} exited")
    assert [closed_code(ws) for ws in sockets] == [1012] * 4  # service restart: reconnect
    assert len(close_log.tags("deploy")) == 4
    with connect(srv.url("rel/echo/after-deploy")) as ws:  # same edge, same port, new code
        ws.send("new code")
        assert ws.recv(timeout=10) == "new code"
    assert srv.process.poll() is None, "the edge did not restart"


def test_a_route_added_or_removed_by_a_deploy_is_served_or_refused_after_sighup(server_db, tmp_path):
    """The new workers load the routes now on disk; the edge defers to them for paths it does not know."""
    import json

    from django_ws.testing import WebSocketServer

    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps([r"^old$"]))
    srv = WebSocketServer(settings="tests.project.deploy_settings", cwd=ROOT, fail_on_warnings=True,
                          env={"DJANGO_WS_TEST_DB": server_db, "DJANGO_WS_DEPLOYED_ROUTES": str(routes)}).start()
    try:
        with pytest.raises(InvalidStatus) as refused:
            connect(srv.url("new"))
        assert refused.value.response.status_code == 404, "not deployed yet"
        routes.write_text(json.dumps([r"^new$"]))  # the deploy: new code on disk, then a reload
        mark = len(srv.lines)
        srv.process.send_signal(signal.SIGHUP)
        srv.wait_for("Restarted 1 worker(s)", timeout=30, start=mark)
        with connect(srv.url("new")) as ws:
            ws.send("deployed")
            assert ws.recv(timeout=10) == "deployed"
        with pytest.raises(InvalidStatus) as refused:
            connect(srv.url("old"))
        assert refused.value.response.status_code == 404, "a route the deploy removed is refused (by a worker)"
    finally:
        assert srv.stop() == 0


def test_an_edge_that_hangs_past_the_timeout_and_resumes_closes_what_the_worker_ended(make_server, server_db):
    """No silent gap: the worker ended the connection while the edge was silent; the client must hear of it."""
    import threading

    edge = make_server(edge_only=True)
    env = dict(os.environ, DJANGO_SETTINGS_MODULE=SETTINGS, PYTHONPATH=ROOT, DJANGO_WS_TEST_DB=server_db)
    worker = subprocess.Popen([sys.executable, "-m", "django", "run_wsworker", "--push-socket", edge.push_socket,
                               "--sub-socket", edge.sub_socket], cwd=ROOT, env=env,
                              stderr=subprocess.PIPE, text=True)
    noticed = threading.Event()

    def watch():
        for line in worker.stderr:
            if "silent for" in line:
                noticed.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        edge.wait_for("joined")
        with connect(edge.url("echo")) as ws:
            ws.send("before")
            assert ws.recv(timeout=10) == "before"
            os.kill(edge.process.pid, signal.SIGSTOP)
            try:
                assert noticed.wait(15), "the worker noticed the silent edge"
            finally:
                os.kill(edge.process.pid, signal.SIGCONT)
            assert closed_code(ws) == 1012
    finally:
        worker.terminate()
        assert worker.wait(20) == 0


def test_a_full_worker_queue_closes_the_connection_that_sent_more_with_1013(make_server):
    """Past WS_QUEUE_LIMIT messages waiting for a stuck worker, the edge neither blocks nor
    drops a frame silently: a connection whose frames did not fit is closed with 1013.
    (A live worker drains its queue into per-connection mailboxes at once, where a
    flooder meets its own limit; the queue fills only while the worker is stuck.)"""
    srv = make_server(env={"DJANGO_WS_QUEUE_LIMIT": "4", "DJANGO_WS_HEARTBEAT_TIMEOUT": "30"})
    (worker,) = srv.worker_pids
    bystander = connect(srv.url("echo"))
    bystander.send("before")
    assert bystander.recv(timeout=10) == "before"
    flooder = connect(srv.url("echo"))
    os.kill(worker, signal.SIGSTOP)  # its queue fills: kernel buffers, then 4 messages a side
    try:
        big = "x" * (256 * 1024)
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(400):  # 100 MB: far more than the queue and the socket buffers hold
                flooder.send(big)
            flooder.recv(timeout=10)
    finally:
        os.kill(worker, signal.SIGCONT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013, closed.value
    # Once the worker has worked through its queue (a new handshake queues behind
    # it, so its Accept says so), the connection that sent nothing meanwhile, and
    # the worker itself, never noticed.
    for attempt in range(50):
        try:
            with connect(srv.url("echo"), open_timeout=10) as probe:
                probe.send("drained")
                assert probe.recv(timeout=10) == "drained"
            break
        except InvalidStatus as refused:  # 503 while the queue is still full: try again
            assert refused.response.status_code == 503
    else:
        raise AssertionError("the worker never worked through its queue")
    bystander.send("after")
    assert bystander.recv(timeout=10) == "after"
    # The flooder's Disconnect, refused by the full queue, was sent again later:
    # the worker ended it (on_close ran) and holds the bystander only.
    wait_until(lambda: stats(srv)["workers"][0]["load"] == 1, 10, "the worker holds the bystander only")
    bystander.close()
    assert srv.worker_pids == [worker]
