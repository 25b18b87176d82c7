#!/usr/bin/env python3
"""The HTTP publish API against send_to_group() from Python, and what the delivery-latency histogram costs.

    python bench/publish_api.py [--members 10] [--seconds 3] [--rounds 3]

One server (an edge and a worker, threaded) with ``WS_API_KEYS`` set and
``--members`` clients in one group. In interleaved rounds, for ``--seconds``
each, this process publishes to the group one message after the other:

- ``send_to_group``: from Python, to the edge's ZeroMQ endpoint (static
  mode, ``WS_EDGES``), each call waiting for the edge's Ack;
- ``HTTP publish``: ``POST /_django_ws/publish`` on one kept-alive HTTP/1.1
  connection (``http.client``), each request waiting for its answer.

The figures are requests per second (one request: one message to every
member), the ratio HTTP / Python of each round, and the edge's delivery
latency (from the call, or the request's arrival, to the frames handed to
the members' sockets; /_django_ws/stats) for each. Every member must get
every message, or the run fails.

Then, in this process, the edge's added work per delivered message: one
wall-clock read and one observation in the histogram (timeit).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import statistics
import sys
import threading
import time
import timeit
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE / "servers"))

from django_ws.testing import WebSocketServer  # noqa: E402

KEY = "bench-only-publish-key-0123456789abcdef"
GROUP = "room.publish"


class Members:
    """``n`` clients in the group, on an asyncio loop of their own, counting what they receive."""

    def __init__(self, url: str, n: int):
        self.received = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sockets = self.run(self._connect(url, n))
        self.readers = [asyncio.run_coroutine_threadsafe(self._read(ws), self.loop) for ws in self.sockets]

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    async def _connect(self, url: str, n: int) -> list:
        from websockets.asyncio.client import connect

        return list(await asyncio.gather(*(connect(url, max_queue=None, open_timeout=60) for _ in range(n))))

    async def _read(self, ws) -> None:
        async for _ in ws:
            self.received += 1

    def wait_for(self, total: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.received < total:
            if time.monotonic() > deadline:
                raise AssertionError(f"the members got {self.received} messages of {total}")
            time.sleep(0.01)

    def close(self) -> None:
        async def close_all() -> None:
            await asyncio.gather(*(ws.close() for ws in self.sockets))

        self.run(close_all())
        self.loop.call_soon_threadsafe(self.loop.stop)


def latency(server: WebSocketServer) -> list[list]:
    with urllib.request.urlopen(f"{server.http_url}/_django_ws/stats", timeout=10) as response:
        return json.loads(response.read())["delivery_latency"]["buckets"]


def quantiles(before: list[list], after: list[list]) -> str:
    """p50 and p99 of the deliveries between two readings of the histogram."""
    from django_ws.edge.core.latency import LatencyHistogram

    h = LatencyHistogram()
    previous = 0
    for i, ((_, a), (_, b)) in enumerate(zip(before, after)):
        h.counts[i] = (b - a) - previous
        previous = b - a
    h.count = previous
    p50, p99 = h.quantile(0.5), h.quantile(0.99)
    return "-" if p50 is None else f"p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms"


def python_sends(seconds: float) -> int:
    from django_ws import send_to_group

    done, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        send_to_group(GROUP, "from python")
        done += 1
    return done


def http_sends(server: WebSocketServer, seconds: float, members: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    body = json.dumps({"group": GROUP, "data": "over http"})
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    done, deadline = 0, time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            connection.request("POST", "/_django_ws/publish", body, headers)
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200 or json.loads(answer) != {"delivered": members}:
                raise AssertionError(f"publish answered {response.status} {answer!r}")
            done += 1
    finally:
        connection.close()
    return done


def observation_cost() -> float:
    """Nanoseconds the edge adds per delivered message: a clock read and an observation."""
    from django_ws.edge.core.latency import LatencyHistogram

    h, sent_at = LatencyHistogram(), time.time_ns() // 1000
    number = 200_000
    # CPU time of this process: on a shared machine, wall time would count the other processes' turns.
    best = min(timeit.repeat(lambda: h.observe(time.time() - sent_at / 1e6, 25), number=number, repeat=5,
                             timer=time.process_time))
    return best / number * 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    env = {"PYTHONPATH": str(HERE.parent), "DJWS_BENCH_API_KEY": KEY}
    server = WebSocketServer(settings="djws_project.publish_settings", cwd=str(HERE / "servers"), env=env,
                             ready_timeout=60).start()
    os.environ.update(DJANGO_SETTINGS_MODULE="djws_project.publish_settings", DJWS_BENCH_EDGES=server.sub_socket,
                      DJWS_BENCH_API_KEY=KEY)
    import django

    django.setup()
    members = Members(server.url("room/publish"), args.members)
    rates: dict[str, list[float]] = {"send_to_group": [], "HTTP publish": []}
    sent = 0
    try:
        # Warm up both paths: connections, the pool's threads.
        sent = python_sends(0.5) + http_sends(server, 0.5, args.members)
        for round_ in range(args.rounds):
            for name in rates:
                before = latency(server)
                started = time.monotonic()
                done = (python_sends(args.seconds) if name == "send_to_group"
                        else http_sends(server, args.seconds, args.members))
                rates[name].append(done / (time.monotonic() - started))
                sent += done
                print(f"round {round_ + 1} {name}: {rates[name][-1]:,.0f} requests/s; delivery latency "
                      f"{quantiles(before, latency(server))}", flush=True)
        members.wait_for(sent * args.members)
    finally:
        members.close()
        server.stop()

    def spread(values: list[float], fmt: str) -> str:
        return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)} to {format(max(values), fmt)})"

    ratios = [b / a for a, b in zip(rates["send_to_group"], rates["HTTP publish"])]
    print(f"\none message to {args.members} members per request, requests/s: send_to_group "
          f"{spread(rates['send_to_group'], ',.0f')}, HTTP publish {spread(rates['HTTP publish'], ',.0f')}; "
          f"HTTP / Python per round {spread(ratios, '.2f')}")
    print(f"the edge's delivery-latency observation: {observation_cost():.0f} ns per message (one clock read, "
          f"one histogram observation), whatever the number of members")
    print(f"load average: {Path('/proc/loadavg').read_text().split()[:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
