"""A bounded soak: 1,000 connections sending continuously while one worker of three is killed."""

import asyncio
import collections
import os
import signal
import time

import pytest
from websockets.exceptions import ConnectionClosed

from tests import procinfo
from tests.e2e.test_modes import stats, wait_until

CONNECTIONS = 1000
SECONDS = float(os.environ.get("DJANGO_WS_SOAK_SECONDS", "40"))


def resources(pids):
    return {pid: {**procinfo.status(pid), "fds": procinfo.fds(pid)} for pid in pids}


@pytest.mark.slow
def test_soak_1000_connections_with_a_worker_killed(make_server):
    from websockets.asyncio.client import connect

    # Pool threads idle for WS_THREAD_IDLE_TIMEOUT end: 1 s here, so the thread counts come back.
    srv = make_server(workers=3, env={"DJANGO_WS_THREAD_IDLE_TIMEOUT": "1"})
    edge_pid = srv.process.pid
    victim = srv.worker_pids[0]
    survivors = srv.worker_pids[1:]
    before = resources([edge_pid, *survivors])

    closes = collections.Counter()
    mismatches = []
    round_trips = [0]
    deadline = time.monotonic() + SECONDS

    async def client(i):
        n = 0
        while time.monotonic() < deadline:
            try:
                async with connect(srv.url(f"rel/echo/soak{i % 10}"), open_timeout=30) as ws:
                    while time.monotonic() < deadline:
                        sent = f"{i}:{n}"
                        await ws.send(sent)
                        reply = await asyncio.wait_for(ws.recv(), 30)
                        if reply != sent:
                            mismatches.append((sent, reply))
                        n += 1
                        round_trips[0] += 1
            except ConnectionClosed as exc:
                closes[exc.rcvd.code if exc.rcvd else None] += 1

    async def killer():
        await asyncio.sleep(SECONDS / 3)  # the fault is the event under test: inject it mid-run
        os.kill(victim, signal.SIGKILL)

    async def main():
        tasks = []
        for i in range(CONNECTIONS):
            tasks.append(asyncio.ensure_future(client(i)))
            if i % 100 == 99:
                await asyncio.sleep(0)
        await asyncio.gather(killer(), *tasks)

    asyncio.run(main())
    print(f"soak: {round_trips[0]} round trips in {SECONDS:.0f}s, closes by code {dict(closes)}, "
          f"mismatches {len(mismatches)}")
    assert mismatches == [], "every reply matches what its client sent"
    assert set(closes) <= {1012}, f"only the killed worker's connections closed, with 1012: {dict(closes)}"
    assert closes[1012] > 0, "the kill closed some connections"
    assert round_trips[0] > CONNECTIONS * 5
    srv.wait_for("starting a replacement", timeout=10)
    wait_until(lambda: stats(srv)["connections"] == 0, 20, "every connection closed at the edge")
    wait_until(lambda: all(w["load"] == 0 for w in stats(srv)["workers"]), 20, "workers idle")
    after = resources([edge_pid, *survivors])
    for pid in [edge_pid, *survivors]:
        b, a = before[pid], after[pid]
        print(f"pid {pid}: threads {b['threads']} -> {a['threads']}, RSS {b['rss_kb']} -> {a['rss_kb']} kB, "
              f"fds {b['fds']} -> {a['fds']}")
        wait_until(lambda: procinfo.status(pid)["threads"] <= b["threads"], 10, f"threads of {pid} back")
        assert a["fds"] <= b["fds"] + 4, f"file descriptors of {pid}: {b['fds']} -> {a['fds']}"
        assert a["rss_kb"] - b["rss_kb"] < 64 * 1024, f"RSS of {pid}: {b['rss_kb']} -> {a['rss_kb']} kB"
