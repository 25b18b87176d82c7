"""Worker modes and several worker processes: resources, capacity, faults."""

import json
import os
import signal
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests import procinfo


def wait_until(predicate, timeout, what):
    """Wait for a condition that has no event to wait on (a process's /proc figures)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true within {timeout}s")
        time.sleep(0.05)


def stats(server):
    import urllib.request

    with urllib.request.urlopen(server.http_url + "/_django_ws/stats", timeout=10) as response:
        return json.load(response)


@pytest.mark.parametrize("mode", ["threaded", "gevent"])
def test_ws_thread_idle_timeout_none_starts_and_serves(make_server, mode):
    """docs/settings.rst: None means idle pool threads never end (it used to crash the worker at start)."""
    srv = make_server(mode=mode, env={"DJANGO_WS_THREAD_IDLE_TIMEOUT": "None"})
    for i in range(3):
        with connect(srv.url("echo")) as ws:
            ws.send(f"still here {i}")
            assert ws.recv(timeout=10) == f"still here {i}"


@pytest.mark.parametrize("mode", ["threaded", "gevent", "multiprocess"])
def test_resources_return_after_1000_connect_disconnect_cycles(make_server, mode):
    # Threaded mode's pool threads end after WS_THREAD_IDLE_TIMEOUT idle: 1 s here.
    srv = make_server(mode=mode, env={"DJANGO_WS_THREAD_IDLE_TIMEOUT": "1"})
    (worker_pid,) = srv.worker_pids

    def cycle(n):
        for i in range(n):
            with connect(srv.url("echo")) as ws:
                ws.send(f"cycle {i}")
                assert ws.recv(timeout=10) == f"cycle {i}"

    cycle(50)  # warm up: imports, caches, allocator arenas
    wait_until(lambda: stats(srv)["workers"][0]["load"] == 0, 10, "worker idle after warm-up")
    before = procinfo.status(worker_pid)
    fds_before = procinfo.fds(worker_pid)
    cycle(1000)
    # Every connection's greenlet / process / idle pool thread has ended...
    wait_until(lambda: stats(srv)["workers"][0]["load"] == 0, 10, "worker reports no live connections")
    wait_until(lambda: procinfo.status(worker_pid)["threads"] <= before["threads"], 10,
               f"thread count back to {before['threads']}")
    wait_until(lambda: not procinfo.handler_processes(worker_pid), 10, "no handler processes left")
    # At most the fork server of --multiprocess stays.
    assert len(procinfo.children(worker_pid)) == (mode == "multiprocess"), procinfo.children(worker_pid)
    after = procinfo.status(worker_pid)
    print(f"{mode}: threads {before['threads']} -> {after['threads']}, "
          f"RSS {before['rss_kb']} -> {after['rss_kb']} kB, fds {fds_before} -> {procinfo.fds(worker_pid)}")
    # ...and memory and descriptors went back: no per-connection leak.
    assert after["rss_kb"] - before["rss_kb"] < 8 * 1024, f"RSS grew {before['rss_kb']} -> {after['rss_kb']} kB"
    assert procinfo.fds(worker_pid) <= fds_before + 2


def test_multiprocess_runs_each_connection_in_its_own_process(make_server):
    srv = make_server(mode="multiprocess")
    (worker_pid,) = srv.worker_pids
    pids = []
    sockets = [connect(srv.url("info")) for _ in range(3)]
    for ws in sockets:
        ws.send("{}")
        pids.append(json.loads(ws.recv(timeout=10))["pid"])
    assert len(set(pids)) == 3 and worker_pid not in pids
    assert set(pids) <= set(procinfo.handler_processes(worker_pid))
    for ws in sockets:
        ws.close()
    wait_until(lambda: not any(procinfo.alive(p) for p in pids), 10, "handler processes exit with their connections")


def test_multiprocess_cap_refuses_new_connections_with_1013(make_server):
    srv = make_server(mode="multiprocess", extra_args=("--max-processes=2",))
    held = [connect(srv.url("echo")) for _ in range(2)]
    for ws in held:
        ws.send("x")
        assert ws.recv(timeout=10) == "x"
    with connect(srv.url("echo")) as extra:
        with pytest.raises(ConnectionClosed) as closed:
            extra.recv(timeout=10)
    assert closed.value.rcvd.code == 1013
    # The edge counts it under the code the client got (not 1006, "handshake not completed").
    wait_until(lambda: stats(srv)["closed_by_code"].get("1013") == 1, 10, "the edge counted the 1013")
    assert "1006" not in stats(srv)["closed_by_code"]
    # The worker's reported load lags by a heartbeat: see it count both
    # first, so that the drop below is the slot being freed.
    wait_until(lambda: stats(srv)["workers"][0]["load"] == 2, 10, "the worker reports both processes")
    held[0].close()
    wait_until(lambda: stats(srv)["workers"][0]["load"] <= 1, 10, "a process slot is free again")
    with connect(srv.url("echo")) as ws:  # room again: served, not queued forever
        ws.send("y")
        assert ws.recv(timeout=10) == "y"
    held[1].close()


def test_multiprocess_handler_killed_by_a_signal_closes_only_its_connection(make_server):
    srv = make_server(mode="multiprocess")
    victim, bystander = connect(srv.url("info")), connect(srv.url("info"))
    victim.send("{}")
    victim_pid = json.loads(victim.recv(timeout=10))["pid"]
    os.kill(victim_pid, signal.SIGKILL)
    with pytest.raises(ConnectionClosed) as closed:
        victim.recv(timeout=10)
    assert closed.value.rcvd.code == 1011
    bystander.send("{}")
    assert json.loads(bystander.recv(timeout=10))["pid"] != victim_pid
    bystander.close()


def test_connections_spread_over_workers_and_stay_on_theirs(make_server):
    srv = make_server(workers=3)
    sockets = [connect(srv.url("info")) for _ in range(9)]
    pids = []
    for ws in sockets:
        for _ in range(3):  # every frame of a connection reaches the same worker
            ws.send("{}")
            pids.append(json.loads(ws.recv(timeout=10))["pid"])
    per_connection = [set(pids[i * 3:i * 3 + 3]) for i in range(9)]
    assert all(len(s) == 1 for s in per_connection)
    workers_used = {next(iter(s)) for s in per_connection}
    assert workers_used == set(srv.worker_pids), "the least-loaded placement used every worker"
    for ws in sockets:
        ws.close()


def test_kill_9_of_one_worker_among_three_under_traffic(make_server):
    srv = make_server(workers=3)
    sockets = []
    for _ in range(12):
        ws = connect(srv.url("info"))
        ws.send("{}")
        sockets.append((ws, json.loads(ws.recv(timeout=10))["pid"]))
    victim = srv.worker_pids[0]
    on_victim = [ws for ws, pid in sockets if pid == victim]
    survivors = [ws for ws, pid in sockets if pid != victim]
    assert on_victim and survivors
    started = len(srv.lines)
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    for ws in on_victim:
        with pytest.raises(ConnectionClosed) as closed:
            while True:  # traffic continues until the close arrives
                ws.send("{}")
                ws.recv(timeout=10)
        assert closed.value.rcvd.code == 1012
    detected = time.monotonic() - killed_at
    print(f"kill -9 to close 1012 on all {len(on_victim)} connections: {detected:.2f}s")
    assert detected < 5.0
    for ws in survivors:  # nobody else noticed
        for _ in range(5):
            ws.send("{}")
            assert json.loads(ws.recv(timeout=10))["pid"] != victim
    srv.wait_for("starting a replacement", timeout=10, start=started)
    srv.wait_for("connected", timeout=10, start=started + 1)
    with connect(srv.url("echo")) as ws:
        ws.send("after")
        assert ws.recv(timeout=10) == "after"
    for ws in survivors:
        ws.close()
