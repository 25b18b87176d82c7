#!/usr/bin/env python3
"""What permessage-deflate costs the edge: memory per idle connection and CPU per echo round trip.

    python bench/compression.py [--conns 1000] [--seconds 5] [--rounds 3]

Three configurations of WS_COMPRESSION, run in interleaved rounds on the same
bench project: off; on with context takeover (``True``: the defaults of
django_ws.edge.deflate.DEFLATE_DEFAULTS); on without context takeover
(``server_no_context_takeover`` and ``client_no_context_takeover``). The
client is the ``websockets`` library, which offers permessage-deflate
(the bench's Node client does not). Each connection sends one 200-byte JSON
message and reads its echo before idling, so that the zlib state a
connection keeps between messages exists. Memory is the edge process's RSS
growth over ``--conns`` connections; CPU is the edge's user+system time over
an echo run of 20 connections, per round trip. Medians and ranges of the
rounds are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from django_ws.testing import WebSocketServer  # noqa: E402

CONFIGS = {
    "off": False,
    "takeover": True,
    "no takeover": {"server_no_context_takeover": True, "client_no_context_takeover": True},
}
MESSAGE = json.dumps({"type": "say", "room": "lobby", "author": "someone", "text": "x" * 120})


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def hold(url: str, conns: int, compression: str | None) -> list:
    from websockets.asyncio.client import connect

    sockets = []
    for start in range(0, conns, 100):
        batch = await asyncio.gather(*(connect(url, compression=compression, max_queue=None)
                                       for _ in range(min(100, conns - start))))
        for ws in batch:
            await ws.send(MESSAGE)
        for ws in batch:
            assert await ws.recv() == MESSAGE
        sockets += batch
    return sockets


async def echo(url: str, seconds: float, compression: str | None) -> int:
    from websockets.asyncio.client import connect

    deadline = time.monotonic() + seconds
    counts = []

    async def loop() -> None:
        async with connect(url, compression=compression) as ws:
            n = 0
            while time.monotonic() < deadline:
                await ws.send(MESSAGE)
                assert await ws.recv() == MESSAGE
                n += 1
            counts.append(n)

    await asyncio.gather(*(loop() for _ in range(20)))
    return sum(counts)


def measure(name: str, conns: int, seconds: float) -> dict:
    # The server imports the django_ws this script imported (this checkout's).
    env = {"DJWS_BENCH_COMPRESSION": json.dumps(CONFIGS[name]), "PYTHONPATH": str(HERE.parent)}
    server = WebSocketServer(settings="djws_project.compression_settings", cwd=str(HERE / "servers"), env=env,
                             ready_timeout=60).start()
    compression = None if name == "off" else "deflate"
    try:
        edge = server.process.pid
        url = server.url("echo")

        async def run() -> tuple[float, str, float, int]:
            before = rss_kb(edge)
            sockets = await hold(url, conns, compression)
            await asyncio.sleep(1.0)  # let the allocator settle; nothing is in flight (every echo was read)
            kb_per_conn = (rss_kb(edge) - before) / conns
            agreed = sockets[0].response.headers.get("Sec-WebSocket-Extensions", "")
            await asyncio.gather(*(ws.close() for ws in sockets))
            cpu = cpu_seconds(edge)
            round_trips = await echo(url, seconds, compression)
            return kb_per_conn, agreed, (cpu_seconds(edge) - cpu) / round_trips * 1e6, round_trips

        kb_per_conn, agreed, us_per_rt, round_trips = asyncio.run(run())
    finally:
        server.stop()
    if name != "off":
        assert agreed.startswith("permessage-deflate"), f"{name}: the server did not agree to compress: {agreed!r}"
    return {"kb_per_conn": kb_per_conn, "edge_us_per_rt": us_per_rt, "rt_per_s": round_trips / seconds,
            "extension": agreed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conns", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    for round_ in range(args.rounds):
        for name in CONFIGS:
            results[name].append(measure(name, args.conns, args.seconds))
            print(f"round {round_ + 1} {name}: {results[name][-1]}", flush=True)
    print(f"\n{'WS_COMPRESSION':14} {'KB/idle conn (edge)':>22} {'edge CPU us/round trip':>26}  extension agreed")
    for name, runs in results.items():
        def cell(key: str) -> str:
            values = [run[key] for run in runs]
            return f"{statistics.median(values):7.1f} ({min(values):.1f}-{max(values):.1f})"
        print(f"{name:14} {cell('kb_per_conn'):>22} {cell('edge_us_per_rt'):>26}  {runs[0]['extension'] or '-'}")
    print(f"load average: {Path('/proc/loadavg').read_text().split()[:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
