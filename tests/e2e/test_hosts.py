"""Several hosts, real faults: edges, workers and senders on separate network namespaces, over tcp + CURVE.

Partitions heal within RECOVERY_BOUND whatever their length, a dead edge
keeps no other edge from a message, and every refused peer says why.
Each test builds its own namespaces (tests/netns.py) and removes them.
"""

import json
import time

import pytest
from django.test import override_settings
from websockets.exceptions import InvalidStatus, WebSocketException
from websockets.sync.client import connect

from django_ws import SendError, security, send_to_group
from tests import netns
from tests.conftest import ROOT, SETTINGS, require
from tests.e2e.test_groups import join
from tests.e2e.test_security import require_curve

#: After a partition of any length heals, each link serves again within this (docs/reliability.rst).
RECOVERY_BOUND = 5.0
PUSH_PORT, SUB_PORT = 5555, 5556


@pytest.fixture
def network():
    why = netns.unavailable()
    require(why is None, why or "")
    net = netns.Network()
    yield net
    net.close()


@pytest.fixture
def start(network, server_db):
    """Start a hosted process (stopped, and required to exit as expected, before the network goes).

    Expected is 0 on SIGTERM, or the ``expected_returncode`` a test set on
    a process it killed.
    """
    started = []

    def start(process):
        process.cwd, process.settings = ROOT, SETTINGS
        process.env.setdefault("DJANGO_WS_TEST_DB", server_db)
        started.append(process)
        return process.start()

    yield start
    codes = [(type(p).__name__, p.host.name, p.stop(), getattr(p, "expected_returncode", 0)) for p in reversed(started)]
    assert all(code == expected for *_, code, expected in codes), f"every process exits as expected: {codes}"


@pytest.fixture
def curve():
    require_curve()
    return security.generate_curve()


def edge_on(host, curve_keys, **env):
    """An edge-only run_wsserver on ``host``, with its ZeroMQ endpoints on the host's address."""
    env = {"DJANGO_WS_CURVE": json.dumps(curve_keys), **env} if curve_keys else env
    return netns.HostedServer(host, edge_only=True, push_socket=f"tcp://{host.ip}:{PUSH_PORT}",
                              sub_socket=f"tcp://{host.ip}:{SUB_PORT}", env=env)


def curve_env(curve_keys):
    return {"DJANGO_WS_CURVE": json.dumps(curve_keys)} if curve_keys else {}


def served(edge, limit: float) -> float:
    """Seconds until ``edge`` serves a new connection end to end (a worker echoes), at most ``limit``."""
    started = time.monotonic()
    while True:
        try:
            with connect(edge.url("echo"), open_timeout=2) as ws:
                ws.send("are you there")
                if ws.recv(timeout=2) == "are you there":
                    return time.monotonic() - started
        except (InvalidStatus, WebSocketException, OSError, TimeoutError):
            pass  # 503 while no worker is joined, or the worker lost meanwhile
        if time.monotonic() - started > limit:
            raise AssertionError(f"{edge.url()} served no new connection within {limit}s")
        time.sleep(0.1)


@pytest.mark.parametrize("seconds", [5, pytest.param(30, marks=pytest.mark.slow), pytest.param(90, marks=pytest.mark.slow)])
def test_a_partition_of_any_length_heals_within_the_bound(network, start, curve, seconds):
    edge_host, worker_host, sender_host = network.host("edge"), network.host("worker"), network.host("sender")
    edge = start(edge_on(edge_host, curve))
    worker = start(netns.HostedWorker(worker_host, [edge], env=curve_env(curve)))
    sender = start(netns.HostedSender(sender_host, "room.probe",
                                      env={**curve_env(curve), "DJANGO_WS_EDGES": edge.sub_socket}))
    edge.wait_for("joined", timeout=15)
    sender.wait_for("sent to", timeout=15)
    served(edge, 15)

    cut_at, cut_mark = time.monotonic(), len(edge.lines)
    worker_host.cut()
    sender_host.cut()
    # The edge takes the worker for lost when it falls silent, or when ZeroMQ's own heartbeat
    # finds the socket dead first (links.keep_alive): which comes first is a race; either is right.
    edge.wait_for(" lost (", timeout=10, start=cut_mark)
    mark = len(sender.lines)
    sender.wait_for("failed", timeout=10, start=mark)
    time.sleep(max(0.0, seconds - (time.monotonic() - cut_at)))  # the partition itself
    worker_host.heal()
    sender_host.heal()
    healed_at, mark = time.monotonic(), len(sender.lines)

    # Measured up to a minute and a half so that a failure says how long it took.
    edge_recovery = served(edge, 150)
    sender.wait_for("sent to", timeout=150, start=mark)
    sender_recovery = time.monotonic() - healed_at
    print(f"{seconds}s partition: edge served again after {edge_recovery:.2f}s, "
          f"sender reached it after {sender_recovery:.2f}s")
    assert edge_recovery < RECOVERY_BOUND, f"the worker serves the edge within {RECOVERY_BOUND}s of the heal"
    assert sender_recovery < RECOVERY_BOUND, f"the sender reaches the edge within {RECOVERY_BOUND}s of the heal"
    assert worker.process.poll() is None and sender.process.poll() is None


def test_a_dead_edge_host_first_or_last_keeps_no_edge_from_a_send(network, start, curve):
    a_host, b_host, worker_host = network.host("a"), network.host("b"), network.host("worker")
    a, b = start(edge_on(a_host, curve)), start(edge_on(b_host, curve))
    start(netns.HostedWorker(worker_host, [a, b], env=curve_env(curve)))
    a.wait_for("joined", timeout=15)
    b.wait_for("joined", timeout=15)
    on_a = [join(a, "split") for _ in range(11)]
    on_b = [join(b, "split") for _ in range(2)]
    with override_settings(WS_CURVE=curve, WS_EDGES=[a.sub_socket, b.sub_socket]):
        assert send_to_group("room.split", "both up") == 13
    for ws, _ in on_a + on_b:
        assert ws.recv(timeout=10) == "both up"

    b_host.cut()  # edge B's host is gone: no answer at all, not even a refusal
    for order in ([b.sub_socket, a.sub_socket], [a.sub_socket, b.sub_socket]):
        with override_settings(WS_CURVE=curve, WS_EDGES=order):
            started = time.monotonic()
            with pytest.raises(SendError) as failed:
                send_to_group("room.split", f"order {order[0]}", timeout=2.0)
            took = time.monotonic() - started
        error = failed.value
        assert list(error.unreached) == [b.sub_socket], f"edge B is named as not reached: {error}"
        assert error.delivered == 11 and error.reached == [a.sub_socket], f"A's 11 members got it: {error}"
        assert took < 2.0 + 1.5, f"one timeout overall ({took:.2f}s)"
        for ws, _ in on_a:
            assert ws.recv(timeout=10) == f"order {order[0]}", "edge A's members got it whatever the order"
    b_host.heal()
    for ws, _ in on_a + on_b:
        ws.close()


def test_an_edge_restarted_on_the_same_endpoints_is_served_by_the_running_worker(network, start, curve):
    edge_host, worker_host = network.host("edge"), network.host("worker")
    edge = start(edge_on(edge_host, curve))
    worker = start(netns.HostedWorker(worker_host, [edge], env=curve_env(curve)))
    edge.wait_for("joined", timeout=15)
    served(edge, 15)
    assert edge.stop() == 0
    restarted = start(netns.HostedServer(edge_host, edge_only=True, port=edge.port, push_socket=edge.push_socket,
                                         sub_socket=edge.sub_socket, env=curve_env(curve)))
    restarted_at = time.monotonic()
    restarted.wait_for("joined", timeout=RECOVERY_BOUND)
    took = served(restarted, RECOVERY_BOUND)
    print(f"restarted edge served {time.monotonic() - restarted_at:.2f}s after it was ready ({took:.2f}s to echo)")
    assert worker.process.poll() is None


def test_every_curve_misconfiguration_is_refused_and_each_side_says_why(network, start, curve):
    edge_host = network.host("edge")
    edge = start(edge_on(edge_host, curve))
    # Workers and senders hold no server_secret; these hold the wrong half of a pair.
    keys = {name: key for name, key in curve.items() if name != "server_secret"}
    wrong_server = dict(keys, server_public=security.generate_curve()["server_public"])
    wrong_client = {**keys, **{k: v for k, v in security.generate_curve().items() if k.startswith("client_")}}
    cases = {  # host name: (worker's WS_CURVE, what the worker says, what the edge says)
        "nokeys": (None, "requires CURVE and this process has no keys", "it has no CURVE keys"),
        "srvkey": (wrong_server, "server_public here is most likely not that edge's key",
                   "server_public is not this edge's key"),
        "clikey": (wrong_client, "does not know this process's CURVE client key", "unknown CURVE key"),
    }
    workers, peers = {}, {}
    for name, (keys, _, _) in cases.items():
        host = network.host(name)
        peers[name] = host.ip
        workers[name] = start(netns.HostedWorker(host, [edge], env=curve_env(keys)))
    for name, (_, worker_says, edge_says) in cases.items():
        line = workers[name].wait_for("refused the handshake", timeout=10)
        assert worker_says in line, f"worker on {name} names the cause: {line}"
        # The edge names the peer: by its key when it has one, else by its address.
        line = edge.wait_for(edge_says if name == "clikey" else f"from {peers[name]} on", timeout=10)
        assert edge_says in line, f"the edge names the cause of {name}: {line}"

    # A sender refused the same ways gets a SendError that says why, within its timeout.
    for keys, says in ((None, "has no keys"), (wrong_server, "server_public"), (wrong_client, "client key")):
        with override_settings(WS_CURVE=keys, WS_EDGES=[edge.sub_socket]):
            with pytest.raises(SendError, match="refused the handshake") as failed:
                send_to_group("room.x", "refused", timeout=3.0)
        assert says in str(failed.value), f"the sender's error names the cause: {failed.value}"

    # An edge without CURVE, and a worker with it: both say so.
    plain_host = network.host("plain")
    plain = start(edge_on(plain_host, None))
    confused = start(netns.HostedWorker(network.host("curved"), [plain], env=curve_env(curve)))
    assert "does not use CURVE" in confused.wait_for("refused the handshake", timeout=10)
    assert "uses CURVE, and WS_CURVE is not set here" in plain.wait_for("refused a ZeroMQ peer", timeout=10)

    # All the while the refused peers kept retrying; each was logged once.
    for name, (_, worker_says, edge_says) in cases.items():
        assert sum(worker_says in line for line in workers[name].lines) == 1, f"worker on {name} said it once"
        from_there = [line for line in edge.lines if edge_says in line and (name == "clikey" or f"from {peers[name]} on" in line)]
        assert len(from_there) == 1, f"the edge logged {name} once, not once per retry: {from_there}"
    assert not [line for line in edge.lines if "joined" in line], "no refused worker joined"
