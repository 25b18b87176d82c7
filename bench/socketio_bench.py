#!/usr/bin/env python3
"""Socket.IO on the edge: echo round trips per second and memory per held connection, beside plain WebSocket
and beside python-socketio on its own.

    python bench/socketio_bench.py [--rounds 3] [--connections 20] [--seconds 5] [--hold 1000]

Targets, in interleaved rounds (A B C D E, A B C D E, ...), each on a fresh server:

``djws-websocket``
    run_wsserver (one threaded worker, WS_SOCKETIO on), a plain WebSocket client: the relay's own figure.
``djws-sio-websocket`` / ``djws-sio-polling``
    The same server, socket.io-client forced to WebSocket / to long-polling: the same handler, through
    python-socketio and the relay.
``alone-sio-websocket`` / ``alone-sio-polling``
    python-socketio under Tornado on its own (bench/servers/socketio_echo.py), a plain async echo handler,
    no relay, no Django: what python-socketio itself costs.

Echo: ``--connections`` clients each send a 32-byte message and wait for its echo, again and again, for
``--seconds``; the figure is round trips per second, all clients together (each echo is checked). Hold:
``--hold`` idle connections; the figure is the growth of the resident memory of the server's whole
process tree (edge and worker for django-ws), divided by the connections. Figures are the median of the
rounds and their range. The client is Node (bench/socketio_load.mjs) with the ws and socket.io-client
packages, found through BENCH_NODE_PATH or DJANGO_WS_TEST_NODE_PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.procs import process_tree, raise_nofile, rss_bytes, wait_for_port  # noqa: E402
from django_ws.testing import WebSocketServer  # noqa: E402
from django_ws.testing.server import free_port  # noqa: E402

TARGETS = {
    "djws-websocket": ("djws", "ws", None),
    "djws-sio-websocket": ("djws", "sio", ["websocket"]),
    "djws-sio-polling": ("djws", "sio", ["polling"]),
    "alone-sio-websocket": ("alone", "sio", ["websocket"]),
    "alone-sio-polling": ("alone", "sio", ["polling"]),
}


class Server:
    """A fresh server of one kind: its port and the pids whose memory counts."""

    def __init__(self, kind: str):
        self.kind = kind
        if kind == "djws":
            self.djws = WebSocketServer(settings="djws_project.socketio_settings", cwd=str(HERE / "servers"),
                                        env={"PYTHONPATH": str(HERE.parent)}, ready_timeout=60).start()
            self.port, self.root = self.djws.port, self.djws.process.pid
        else:
            self.port = free_port()
            self.process = subprocess.Popen([sys.executable, str(HERE / "servers" / "socketio_echo.py"),
                                             str(self.port)], stdout=subprocess.DEVNULL)
            wait_for_port(self.port, self.process)
            self.root = self.process.pid

    def rss(self) -> int:
        return sum(rss_bytes(pid) for pid in process_tree([self.root]))

    def stop(self) -> None:
        if self.kind == "djws":
            self.djws.stop()
        else:
            self.process.terminate()
            self.process.wait(15)


def node() -> tuple[str, str]:
    node = shutil.which("node")
    modules = os.environ.get("BENCH_NODE_PATH") or os.environ.get("DJANGO_WS_TEST_NODE_PATH") or ""
    if not node or not all(os.path.isdir(os.path.join(modules, p)) for p in ("ws", "socket.io-client")):
        sys.exit("bench/socketio_bench.py needs node, and BENCH_NODE_PATH naming a node_modules with ws and "
                 "socket.io-client: npm install --prefix /tmp/bench-node ws@8 socket.io-client@4")
    return node, modules


def client_command(target: str, port: int, command: str, connections: int, seconds: float = 0) -> list[str]:
    node_bin, _ = node()
    _, kind, transports = TARGETS[target]
    if kind == "ws":
        url, options = f"ws://127.0.0.1:{port}/socket/echo", {}
    else:
        url, options = f"http://127.0.0.1:{port}/echo", {"path": "/socket/socket.io", "transports": transports}
    return [node_bin, str(HERE / "socketio_load.mjs"), kind, url, json.dumps(options), command, str(connections),
            str(seconds)]


def run_target(target: str, args: argparse.Namespace) -> dict:
    _, modules = node()
    env = dict(os.environ, NODE_PATH=modules)
    server = Server(TARGETS[target][0])
    try:
        out = subprocess.run(client_command(target, server.port, "echo", args.connections, args.seconds),
                             env=env, capture_output=True, text=True, timeout=args.seconds + 120)
        if out.returncode:
            sys.exit(f"{target}: the echo client failed: {out.stderr.strip()}")
        echo = json.loads(out.stdout)
        before = server.rss()
        holder = subprocess.Popen(client_command(target, server.port, "hold", args.hold), env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = holder.stdout.readline()
        if not line:
            sys.exit(f"{target}: the hold client failed (exit {holder.wait()})")
        held = json.loads(line)["held"]
        after = server.rss()
        holder.stdin.write("done\n")
        holder.stdin.flush()
        holder.wait(60)
    finally:
        server.stop()
    return {"round_trips_per_s": echo["round_trips"] / echo["seconds"], "kb_per_connection": (after - before) / held / 1024}


def spread(values: list[float], fmt: str) -> str:
    return f"{format(statistics.median(values), fmt)} [{format(min(values), fmt)}-{format(max(values), fmt)}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--hold", type=int, default=1000)
    parser.add_argument("--only", default="", help="comma-separated targets (default: all)")
    args = parser.parse_args()
    node()
    raise_nofile(args.hold * 2 + 1000)
    targets = [t for t in TARGETS if not args.only or t in args.only.split(",")]
    results: dict[str, list[dict]] = {t: [] for t in targets}
    for round_ in range(args.rounds):
        for target in targets:
            figures = run_target(target, args)
            results[target].append(figures)
            print(f"round {round_ + 1} {target}: {figures['round_trips_per_s']:.0f} round trips/s, "
                  f"{figures['kb_per_connection']:.1f} KB/connection", file=sys.stderr, flush=True)
    print(f"\necho: {args.connections} connections, {args.seconds:g} s; hold: {args.hold} connections; "
          f"median [min-max] of {args.rounds} rounds; load average {os.getloadavg()[0]:.2f}")
    print(f"{'target':<22} {'round trips/s':>24} {'KB per held connection':>26}")
    for target in targets:
        rounds = results[target]
        print(f"{target:<22} {spread([r['round_trips_per_s'] for r in rounds], '.0f'):>24} "
              f"{spread([r['kb_per_connection'] for r in rounds], '.1f'):>26}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
