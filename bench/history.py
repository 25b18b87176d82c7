#!/usr/bin/env python3
"""What group history costs a broadcast, and how long a replay to many reconnecting clients takes.

    python bench/history.py [--members 1000] [--messages 100] [--rounds 3]

Broadcast: ``--members`` connections in one room, ``--messages`` messages
sent into it by one of them, with ``WS_GROUP_HISTORY`` off and on
(``{"room.*": {"size": messages, "ttl": 300}}``) in interleaved rounds; the
figure is deliveries per second, from the first send to the last delivery,
and the ratio on/off of each round. The members are plain clients: they do
not ask for positions, so they receive exactly what they would without
history, and the edge pays only for keeping it.

Replay (history on): the members connect asking for positions (``dws=1``),
leave, ``--messages`` messages are sent while they are away, and they all
come back at once presenting their last position; the figure is the time
from the first reconnect to the last member having every missed message.

The client is the ``websockets`` library (asyncio), in this process; no
message may be lost, duplicated or reordered, or the run fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from django_ws.testing import WebSocketServer  # noqa: E402


def start(history: dict) -> WebSocketServer:
    # The server imports the django_ws this script imported (this checkout's).
    env = {"DJWS_BENCH_HISTORY": json.dumps(history), "PYTHONPATH": str(HERE.parent)}
    return WebSocketServer(settings="djws_project.history_settings", cwd=str(HERE / "servers"), env=env,
                           ready_timeout=60).start()


async def connect_all(url: str, n: int) -> list:
    from websockets.asyncio.client import connect

    sockets = []
    for start_at in range(0, n, 200):
        sockets += await asyncio.gather(*(connect(url, max_queue=None, open_timeout=60)
                                          for _ in range(min(200, n - start_at))))
    return sockets


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def broadcast(url: str, members: int, messages: int, edge_pid: int) -> tuple[float, float]:
    """Deliveries per second, and the edge's CPU microseconds per delivery."""
    sockets = await connect_all(url, members)
    expected = [f"m{n}" for n in range(messages)]

    async def receive(ws) -> list[str]:
        return [await asyncio.wait_for(ws.recv(), 60) for _ in range(messages)]

    readers = [asyncio.ensure_future(receive(ws)) for ws in sockets]
    cpu = cpu_seconds(edge_pid)
    started = time.monotonic()
    for text in expected:
        await sockets[0].send(text)
    received = await asyncio.gather(*readers)
    elapsed = time.monotonic() - started
    edge_us = (cpu_seconds(edge_pid) - cpu) / (members * messages) * 1e6
    bad = sum(got != expected for got in received)
    await asyncio.gather(*(ws.close() for ws in sockets))
    if bad:
        raise AssertionError(f"{bad} members did not get every message once, in order")
    return members * messages / elapsed, edge_us


def unwrap(frame: str) -> tuple[dict | None, str]:
    header, _, payload = frame.partition("\n")
    return (json.loads(header) if header else None), payload


async def replay(url: str, members: int, messages: int) -> float:
    from websockets.asyncio.client import connect

    first = await connect_all(f"{url}?dws=1", members)
    # Each member's position: that of the message it saw last (a marker sent before they leave).
    await first[0].send("before")
    positions = []
    for ws in first:
        header, payload = unwrap(await asyncio.wait_for(ws.recv(), 60))
        assert payload == "before" and header is not None, (header, payload)
        positions.append({header["g"]: [header["e"], header["o"]]})
    await asyncio.gather(*(ws.close() for ws in first[1:]))
    expected = [f"m{n}" for n in range(messages)]
    for text in expected:  # while the others are away
        await first[0].send(text)
    for _ in expected:
        await asyncio.wait_for(first[0].recv(), 60)
    await first[0].close()

    async def come_back(position: dict) -> list[str]:
        since = urllib.parse.quote(json.dumps(position, separators=(",", ":")))
        async with connect(f"{url}?dws=1&dws_since={since}", max_queue=None, open_timeout=60) as ws:
            got = []
            while len(got) < messages:
                header, payload = unwrap(await asyncio.wait_for(ws.recv(), 60))
                if header is not None and "resync" in header:
                    raise AssertionError(f"told to resync: {header}")
                got.append(payload)
            return got

    started = time.monotonic()
    results = await asyncio.gather(*(come_back(p) for p in positions[1:]))
    elapsed = time.monotonic() - started
    bad = sum(got != expected for got in results)
    if bad:
        raise AssertionError(f"{bad} members did not get the gap once, in order")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    on = {"room.*": {"size": args.messages, "ttl": 300}}
    rates: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    replays: list[float] = []
    for round_ in range(args.rounds):
        for name, history in (("off", {}), ("on", on)):
            server = start(history)
            try:
                rate, edge_us = asyncio.run(broadcast(server.url("room/bench"), args.members, args.messages,
                                                      server.process.pid))
                rates[name].append(rate)
                cpu[name].append(edge_us)
                if name == "on":
                    replays.append(asyncio.run(replay(server.url("room/replay"), args.members, args.messages)))
            finally:
                server.stop()
            print(f"round {round_ + 1} history {name}: {rates[name][-1]:,.0f} deliveries/s, "
                  f"edge {cpu[name][-1]:.2f} us of CPU per delivery"
                  + (f", replay of {args.messages} to {args.members - 1} members in {replays[-1]:.2f} s"
                     if name == "on" else ""), flush=True)
    ratios = [b / a for a, b in zip(rates["off"], rates["on"])]
    # A run too short for the clock's ticks measures no CPU at all: no ratio then.
    cpu_ratios = [b / a for a, b in zip(cpu["off"], cpu["on"]) if a] or [float("nan")]

    def spread(values: list[float], fmt: str) -> str:
        return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)} to {format(max(values), fmt)})"

    print(f"\nbroadcast to {args.members}, {args.messages} messages, deliveries/s: "
          f"history off {spread(rates['off'], ',.0f')}, on {spread(rates['on'], ',.0f')}; "
          f"on/off per round {spread(ratios, '.2f')}")
    print(f"edge CPU per delivery, us: history off {spread(cpu['off'], '.2f')}, on {spread(cpu['on'], '.2f')}; "
          f"on/off per round {spread(cpu_ratios, '.2f')} (the rate above is bound by this Python client)")
    print(f"replay of {args.messages} messages to {args.members - 1} reconnecting members: {spread(replays, '.2f')} s")
    print(f"load average: {Path('/proc/loadavg').read_text().split()[:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
