"""Cluster mode across hosts: Redis, edges, a worker and a sender on separate network namespaces, tcp + CURVE.

The edges bind their ZeroMQ endpoints to 0.0.0.0 and announce their host's
address (--announce-host); the worker is given no edge at all.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time

from django.test import override_settings

from django_ws import group_members, send_to_group
from tests import netns
from tests.conftest import RedisServer, require_redis
from tests.e2e.test_cluster import FORGOTTEN_BOUND, LEASE, receive_until
from tests.e2e.test_groups import join
from tests.e2e.test_hosts import PUSH_PORT, SUB_PORT, curve, network, served, start  # noqa: F401  (fixtures)


def test_a_cluster_across_hosts_finds_its_edges_and_survives_an_edge_and_redis_dying(network, start, curve,
                                                                                    tmp_path):
    require_redis()
    redis_host = network.host("redis")
    redis = RedisServer(tmp_path, port=6379, bind=redis_host.ip, password=secrets.token_hex(8),
                        prefix=tuple(redis_host.exec)).start()
    try:
        run_the_cluster(network, start, curve, redis, redis_host)
    finally:
        redis.stop()


def run_the_cluster(network, start, curve, redis, redis_host):
    env = {"DJANGO_WS_CURVE": json.dumps(curve), "DJANGO_WS_BROKER": redis.url,
           "DJANGO_WS_BROKER_LEASE": str(LEASE)}

    def edge(name):
        host = network.host(name)
        return start(netns.HostedServer(host, edge_only=True, push_socket=f"tcp://0.0.0.0:{PUSH_PORT}",
                                         sub_socket=f"tcp://0.0.0.0:{SUB_PORT}",
                                         extra_args=("--announce-host", host.ip), env=dict(env)))

    here = override_settings(WS_BROKER=redis.url, WS_BROKER_LEASE=LEASE, WS_CURVE=curve)
    edges = [edge(name) for name in ("a", "b", "c")]
    worker = start(netns.HostedWorker(network.host("worker"), None, env=dict(env)))
    for e in edges:
        served(e, 30)
    members = {e.host.name: [join(e, "hosts") for _ in range(2)] for e in edges}
    everyone = [m for ms in members.values() for m in ms]

    # A group spanning three edges: each message exactly once, in order.
    with here:
        for n in range(100):
            send_to_group("room.hosts", f"m{n}")
        send_to_group("room.hosts", "end")
    for ws, conn_id in everyone:
        assert receive_until(ws, "end") == [f"m{n}" for n in range(100)], f"{conn_id}: each message once, in order"

    # A fourth edge, started mid-run, is found by the running worker and serves connections.
    fourth = edge("d")
    took = served(fourth, 15)
    print(f"a fourth edge was served {took:.2f}s after it was ready, by a worker that was not restarted")
    members["d"] = [join(fourth, "hosts")]
    everyone += members["d"]

    # kill -9 of edge b: its lease lapses, presence drops its members, the others carry on.
    dead = edges[1]
    os.killpg(dead.process.pid, signal.SIGKILL)
    dead.expected_returncode = -signal.SIGKILL
    killed = time.monotonic()
    survivors = [m for name, ms in members.items() if name != "b" for m in ms]
    with here:
        while group_members("room.hosts") != sorted(conn_id for _, conn_id in survivors):
            assert time.monotonic() - killed < FORGOTTEN_BOUND + 2, "the dead edge's members left presence"
            time.sleep(0.1)
        print(f"kill -9 of edge b: its members left presence after {time.monotonic() - killed:.2f}s")
        worker.wait_for("is no longer announced", timeout=FORGOTTEN_BOUND + 3)
        # Group messages are delivered at most once: one published while an edge's session with Redis
        # restarts (a command slower than a third of this test's 1.5 s lease, on a loaded machine) is
        # not seen there. "Carry on" is: every survivor gets the group within a few seconds.
        waiting, deadline = list(survivors), time.monotonic() + 10
        while waiting:
            assert time.monotonic() < deadline, (
                f"{[conn_id for _, conn_id in waiting]} still get the group after edge b died; the edges said: "
                + " | ".join(f"{e.host.name}: {e.lines[-8:]}" for e in (*edges, fourth) if e is not dead))
            send_to_group("room.hosts", "after b")
            for ws, conn_id in list(waiting):
                try:
                    if ws.recv(timeout=0.5) == "after b":
                        waiting.remove((ws, conn_id))
                except TimeoutError:
                    pass

    # Redis killed under traffic from a sender on its own host: errors where due, then service back.
    sender = start(netns.HostedSender(network.host("sender"), "room.hosts", env=dict(env)))
    sender.wait_for("sent to None", timeout=15)
    for ws, _ in survivors:  # drain the sender's probes while Redis is up
        ws.recv(timeout=10)
    redis.kill()
    mark = len(sender.lines)
    line = sender.wait_for("failed", timeout=10, start=mark)
    assert "websocket broker not reachable" in line and redis.password not in line, line
    redis.start()
    back, mark = time.monotonic(), len(sender.lines)
    sender.wait_for("sent to None", timeout=10, start=mark)
    probes_reach(survivors, since=back, within=15, after="once Redis is back")
    print(f"Redis restarted: every surviving member got the group again within {time.monotonic() - back:.2f}s")

    # Redis's host cut off, without a word (no reset, no refusal): each send fails within its timeout, never
    # hangs; once healed, the edges come back by themselves.
    mark = len(sender.lines)
    redis_host.cut()
    for n in range(3):
        line = sender.wait_for("failed", timeout=1.0 + 1.5, start=mark)  # the sender's timeout is 1 s
        assert "websocket broker not reachable" in line, line
        mark = sender.lines.index(line, mark) + 1
    redis_host.heal()
    healed = time.monotonic()
    sender.wait_for("sent to None", timeout=10, start=mark)
    probes_reach(survivors, since=healed, within=20, after="once the partition heals")
    print(f"Redis cut off then healed: every surviving member got the group again within "
          f"{time.monotonic() - healed:.2f}s of the heal")
    assert worker.process.poll() is None
    for ws, _ in everyone:
        ws.close()


def probes_reach(members, since: float, within: float, after: str) -> None:
    """Each of ``members`` gets one of the sender's probes within ``within`` seconds of ``since``."""
    for ws, conn_id in members:
        while True:
            assert time.monotonic() - since < within, f"{conn_id} gets the group again {after}"
            try:
                if ws.recv(timeout=1) == "probe":
                    break
            except TimeoutError:
                continue
