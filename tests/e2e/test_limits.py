"""The edge's rate limits on real servers: per client address at the handshake, per connection after it.

docs/security.rst, "Rate limits", is what these hold the server to. The limit
logic itself is unit-tested in tests/unit/edge/test_limits.py; here the servers run
conf.py's defaults (DJANGO_WS_RATE_LIMITS=defaults) unless a test says otherwise.
"""

import asyncio
import base64
import json
import multiprocessing
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from django_ws.conf import DEFAULTS
from tests.conftest import ROOT, SETTINGS
from tests.e2e.test_modes import stats, wait_until
from tests.e2e.test_security import RawClient, refused_status

DEFAULT_LIMITS = {"DJANGO_WS_RATE_LIMITS": "defaults"}


def limits_env(**settings) -> dict:
    return {"DJANGO_WS_RATE_LIMITS": json.dumps(settings)}


async def _handshake(port: int, path: str, source: str, headers: str) -> tuple[int, dict, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n".encode())
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)).decode()
    lines = head.split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), fields, writer


def burst(server, n: int, *, source: str = "127.0.0.1", headers: str = "") -> tuple[list, float]:
    """Open ``n`` handshakes at once from ``source``, then drop them; their (status, headers), and the seconds it took."""
    async def run():
        started = time.monotonic()
        results = await asyncio.gather(*(_handshake(server.port, f"{server.prefix}/echo", source, headers)
                                         for _ in range(n)))
        elapsed = time.monotonic() - started
        for _, _, writer in results:
            writer.transport.abort()
        return [(status, fields) for status, fields, _ in results], elapsed

    return asyncio.run(run())


def echo_from(server, source: str, message: str = "hello", **kwargs) -> str:
    sock = socket.create_connection(("127.0.0.1", server.port), source_address=(source, 0), timeout=10)
    with connect(server.url("echo"), sock=sock, **kwargs) as ws:
        ws.send(message)
        return ws.recv(timeout=10)


def metrics(server) -> str:
    with urllib.request.urlopen(server.http_url + "/_django_ws/metrics", timeout=10) as response:
        return response.read().decode()


# -- per address ------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_thousand_connections_in_a_second_from_one_address_get_429_past_the_limit(make_server):
    srv = make_server(workers=2, env=DEFAULT_LIMITS)
    results, elapsed = burst(srv, 1000)
    statuses = [status for status, _ in results]
    accepted, refused = statuses.count(101), statuses.count(429)
    assert accepted + refused == 1000, f"only 101 or 429 expected, got {sorted(set(statuses))}"
    allowed = DEFAULTS["WS_NEW_CONNECTIONS_PER_ADDRESS"]
    refill = allowed / DEFAULTS["WS_NEW_CONNECTIONS_WINDOW"] * elapsed
    assert allowed <= accepted <= allowed + refill + 1, (
        f"{allowed} at once plus what refilled in {elapsed:.2f}s should pass, {accepted} did")
    retry_after = {fields.get("Retry-After") for status, fields in results if status == 429}
    assert retry_after == {"1"}, f"every 429 says when one more connection is allowed, got {retry_after}"
    # Another address is not held back by the first one's burst.
    assert echo_from(srv, "127.0.0.2") == "hello"
    data = stats(srv)["rate_limits"]
    assert data["hits"]["new_connections"] == refused
    assert data["limits"]["new_connections"] == allowed and data["limits"]["concurrent"] == DEFAULTS[
        "WS_CONNECTIONS_PER_ADDRESS"]
    edge = stats(srv)["edge_id"]
    assert f'django_ws_rate_limited_total{{edge="{edge}",limit="new_connections"}} {refused}' in metrics(srv)
    assert f'django_ws_rate_limit{{edge="{edge}",limit="messages"}} {DEFAULTS["WS_MESSAGES_PER_CONNECTION"]}' in metrics(srv)
    print(f"\n1000 handshakes from one address in {elapsed:.2f}s: {accepted} upgraded, {refused} got 429")


def test_open_connections_per_address_get_429_past_the_limit_whatever_the_client_claims(make_server):
    srv = make_server(env=limits_env(WS_CONNECTIONS_PER_ADDRESS=3, WS_NEW_CONNECTIONS_WINDOW=7))
    held = [connect(srv.url("echo")) for _ in range(3)]
    spoofed = {"X-Forwarded-For": "198.51.100.9", "X-Real-Ip": "198.51.100.9"}
    with pytest.raises(InvalidStatus) as refused:
        connect(srv.url("echo"), additional_headers=spoofed)
    response = refused.value.response
    assert response.status_code == 429 and response.headers["Retry-After"] == "7", (
        "proxy headers are not believed by default, and Retry-After is the window")
    assert echo_from(srv, "127.0.0.3") == "hello", "another address has its own count"
    held[0].close()
    wait_until(lambda: stats(srv)["connections"] == 2, 10, "the closed connection is counted out")
    with connect(srv.url("echo")) as ws:
        ws.send("room again")
        assert ws.recv(timeout=10) == "room again"
    for ws in held[1:]:
        ws.close()
    assert stats(srv)["rate_limits"]["hits"]["concurrent"] == 1


def test_behind_a_trusted_proxy_the_limits_apply_to_the_forwarded_address(make_server):
    env = {**limits_env(WS_NEW_CONNECTIONS_PER_ADDRESS=5, WS_CONNECTIONS_PER_ADDRESS=0),
           "DJANGO_WS_TRUST_PROXY_HEADERS": "1"}
    srv = make_server(workers=2, env=env)
    results, _ = burst(srv, 50, headers="X-Forwarded-For: 203.0.113.7\r\n")
    assert [status for status, _ in results].count(101) in (5, 6), "one client behind the proxy: its own budget"
    # Everyone else behind the same proxy (the same peer address) still connects.
    with connect(srv.url("echo"), additional_headers={"X-Forwarded-For": "203.0.113.8"}) as ws:
        ws.send("fine")
        assert ws.recv(timeout=10) == "fine"



def test_limits_that_strike_a_proxy_say_so_once_per_address_and_count_every_time(make_server):
    """Proxy headers not trusted (the default): everyone behind the proxy is one address, and the log says why."""
    srv = make_server(env=limits_env(WS_CONNECTIONS_PER_ADDRESS=2, WS_NEW_CONNECTIONS_PER_ADDRESS=0))
    forwarded = {"X-Forwarded-For": "203.0.113.7"}
    held = [connect(srv.url("echo"), additional_headers=forwarded) for _ in range(2)]
    try:
        results, _ = burst(srv, 5, headers="X-Forwarded-For: 203.0.113.9\r\n")
        assert [status for status, _ in results] == [429] * 5
        assert refused_status(srv.url("echo")) == 429, "no proxy header: one client over its limit, not counted"
        # Another proxied address: its own warning, and the mark that the server has printed all of the first's.
        results, _ = burst(srv, 3, source="127.0.0.2", headers="X-Real-IP: 203.0.113.8\r\n")
        assert [status for status, _ in results].count(429) == 1
        srv.wait_for("refused a handshake from 127.0.0.2 ", timeout=10)
    finally:
        for ws in held:
            ws.close()
    warned = [line for line in srv.lines if "refused a handshake from 127.0.0.1 " in line]
    assert len(warned) == 1, f"one warning for the address, not one per 429: {warned}"
    assert "WS_TRUST_PROXY_HEADERS = True" in warned[0] and "raise WS_CONNECTIONS_PER_ADDRESS" in warned[0], warned
    data = stats(srv)["rate_limits"]
    assert (data["proxy_limited"], data["hits"]["concurrent"]) == (6, 7), data
    assert f'django_ws_proxy_limited_total{{edge="{stats(srv)["edge_id"]}"}} 6' in metrics(srv)

# -- per connection ---------------------------------------------------------------------------------


def read_close(client: RawClient) -> tuple[int | None, str]:
    """Read until the server's close frame: (code, reason); (None, "") if the socket ended first."""
    try:
        while True:
            opcode, payload = client.read_frame()
            if opcode == 0x8:
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode()
    except (EOFError, ConnectionResetError):
        return None, ""


def flood(srv, closes) -> None:
    """Five connections one after another, each sending as fast as it can until the edge closes it.

    Run in a process of its own: in the test's process, this loop would hold
    the GIL and slow the neighbour's client down, not the server.
    """
    key = os.urandom(4)
    frame = bytes([0x81, 0x80 | 5]) + key + bytes(b ^ key[i % 4] for i, b in enumerate(b"flood"))
    burst_of_frames = frame * 10_000  # masked once: the flood costs this process next to nothing
    for _ in range(5):
        client = RawClient(srv, "echo")
        try:
            for _ in range(10):
                client.sock.sendall(burst_of_frames)
        except OSError:
            pass  # the edge closed it mid-flood
        closes.put(read_close(client))
        client.close()


@pytest.mark.timeout(120)
def test_a_flooding_connection_is_closed_with_1008_while_a_neighbours_echo_keeps_its_latency(make_server):
    srv = make_server(workers=2, env=DEFAULT_LIMITS)
    with connect(srv.url("echo")) as neighbour:
        def round_trip() -> float:
            started = time.perf_counter()
            neighbour.send("ping")
            assert neighbour.recv(timeout=10) == "ping"
            return time.perf_counter() - started

        baseline = statistics.median(round_trip() for _ in range(50))
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        flooder = context.Process(target=flood, args=(srv, queue))
        flooder.start()
        during = []
        while flooder.is_alive() or not during:
            during.append(round_trip())
        flooder.join()
        closes = [queue.get(timeout=10) for _ in range(5)]
    assert flooder.exitcode == 0
    assert closes == [(1008, "message rate limit exceeded")] * 5, closes
    assert statistics.median(during) < max(10 * baseline, 0.1), (
        f"the neighbour's echo took {statistics.median(during) * 1000:.1f} ms (median) during the floods, "
        f"{baseline * 1000:.1f} ms before")
    assert stats(srv)["rate_limits"]["hits"]["messages"] == 5
    print(f"\nneighbour echo median: {baseline * 1000:.2f} ms before, {statistics.median(during) * 1000:.2f} ms "
          f"during 5 floods ({len(during)} round trips)")


def test_a_connection_over_its_byte_budget_is_closed_with_1008(make_server):
    srv = make_server(env=limits_env(WS_BYTES_PER_CONNECTION=200_000, WS_MESSAGES_PER_CONNECTION=0))
    chunk = os.urandom(64 * 1024)
    with connect(srv.url("echo"), max_size=None) as ws, pytest.raises(ConnectionClosed) as closed:
        for _ in range(10):
            ws.send(chunk)
            assert ws.recv(timeout=10) == chunk
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "byte rate limit exceeded")
    assert stats(srv)["rate_limits"]["hits"]["bytes"] == 1
    with connect(srv.url("echo")) as ws:  # the next connection has a budget of its own
        ws.send(chunk)
        assert ws.recv(timeout=10) == chunk



def test_the_limits_are_the_edges_whatever_workers_serve_it(make_server, server_db):
    """Two run_wsworker processes of their own (as on other hosts) behind one edge: the edge still counts."""
    env_limits = limits_env(WS_CONNECTIONS_PER_ADDRESS=4, WS_NEW_CONNECTIONS_PER_ADDRESS=0)
    edge = make_server(edge_only=True, env=env_limits)
    env = dict(os.environ, DJANGO_SETTINGS_MODULE=SETTINGS, PYTHONPATH=ROOT, DJANGO_WS_TEST_DB=server_db, **env_limits)
    workers = [subprocess.Popen([sys.executable, "-m", "django", "run_wsworker", "--push-socket", edge.push_socket,
                                 "--sub-socket", edge.sub_socket], cwd=ROOT, env=env) for _ in range(2)]
    try:
        wait_until(lambda: len(stats(edge)["workers"]) == 2, 20, "both workers joined the edge")
        held = [connect(edge.url("echo")) for _ in range(4)]
        assert sorted(w["connections_here"] for w in stats(edge)["workers"]) == [2, 2], "spread over both workers"
        assert refused_status(edge.url("echo")) == 429
        for ws in held:
            ws.close()
    finally:
        for worker in workers:
            worker.terminate()
        assert [worker.wait(20) for worker in workers] == [0, 0]
