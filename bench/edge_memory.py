#!/usr/bin/env python3
"""What the edge holds per idle connection, by allocation site and by type: ``python bench/edge_memory.py --help``.

Starts ``run_wsserver`` on the bench project (one threaded worker) with
tracemalloc on in the edge, takes a snapshot, opens ``--conns`` idle
connections with bench/loadgen.js (hold), takes another and prints the
difference per connection: the biggest allocation sites (with their call
stacks) and the object types that grew. The edge runs slower under
tracemalloc, so keep ``--conns`` to a few thousand; the bench's ``hold``
scenario gives the real RSS per connection.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: Set in the edge's environment: where its snapshots go (<prefix>.N and <prefix>.N.types).
SNAPSHOT_ENV = "BENCH_EDGE_SNAPSHOTS"


def serve(argv: list[str]) -> None:
    """The edge side: run_wsserver with tracemalloc, a snapshot on each SIGUSR1."""
    prefix = os.environ[SNAPSHOT_ENV]
    tracemalloc.start(8)
    taken = 0

    def snapshot(*_) -> None:
        nonlocal taken
        gc.collect()
        taken += 1
        tracemalloc.take_snapshot().dump(f"{prefix}.{taken}")
        types = collections.Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())
        Path(f"{prefix}.{taken}.types").write_text(json.dumps(types))

    signal.signal(signal.SIGUSR1, snapshot)
    from django.core.management import execute_from_command_line

    execute_from_command_line(["django", *argv])


def measure(conns: int, top: int) -> None:
    from bench.client import find_client
    from bench.targets import REPO, SERVERS
    from django_ws.testing.server import WebSocketServer

    class TracedServer(WebSocketServer):
        def command(self) -> list[str]:
            command = super().command()  # [python, -m, django, run_wsserver, ...]
            return [command[0], str(Path(__file__).resolve()), "--serve", *command[3:]]

    client = find_client(None, None)
    workdir = tempfile.TemporaryDirectory(prefix="edge-memory-")
    prefix = f"{workdir.name}/snap"
    # A snapshot stalls the edge for seconds: the settings' longer heartbeat timeout for slow runs.
    env = {"PYTHONPATH": str(REPO), SNAPSHOT_ENV: prefix, "BENCH_UNDER_VALGRIND": "1"}
    server = TracedServer(settings="djws_project.settings", mode="threaded", workers=1, cwd=str(SERVERS),
                          ready_timeout=60, reload=None, env=env)
    server.start()
    pid = server.process.pid

    def take(n: int) -> None:
        os.kill(pid, signal.SIGUSR1)
        while not os.path.exists(f"{prefix}.{n}.types"):
            time.sleep(0.1)

    def fds() -> int:
        return len(os.listdir(f"/proc/{pid}/fd"))

    try:
        take(1)
        before = fds()
        hold = subprocess.Popen([*client.command, "hold", "--url", server.url("echo"), "--conns", str(conns),
                                 "--seconds", "600", "--batch", "200"], env=client.env, stdout=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            while fds() < before + conns:
                if hold.poll() is not None:
                    raise SystemExit(f"the load client exited ({hold.returncode}) before opening {conns}")
                time.sleep(0.2)
            time.sleep(10)  # the last handshakes' upgrades (slow under tracemalloc); the client is idle then
            take(2)
        finally:
            hold.kill()
            hold.wait()
    finally:
        server.stop(timeout=30)
    first, second = tracemalloc.Snapshot.load(f"{prefix}.1"), tracemalloc.Snapshot.load(f"{prefix}.2")
    stats = second.compare_to(first, "traceback")
    print(f"edge: {sum(s.size_diff for s in stats) / conns:.0f} B traced per idle connection ({conns:,} held)\n")
    for stat in stats[:top]:
        print(f"{stat.size_diff / conns:7.0f} B {stat.count_diff / conns:5.2f} blocks")
        for line in stat.traceback.format(limit=4):
            print("        " + line)
    types_before = json.loads(Path(f"{prefix}.1.types").read_text())
    types_after = json.loads(Path(f"{prefix}.2.types").read_text())
    grown = sorted(((n - types_before.get(t, 0)) / conns, t) for t, n in types_after.items())
    print("\nobjects per connection (gc-tracked):")
    for per, name in reversed(grown[-top:]):
        if per >= 0.05:
            print(f"  {per:5.2f} {name}")


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conns", type=int, default=1000, help="idle connections to open (default 1000)")
    parser.add_argument("--top", type=int, default=15, help="allocation sites and types to print (default 15)")
    parser.add_argument("--node-path", default=None, metavar="DIR", help="where Node finds the ws package")
    args = parser.parse_args()
    if args.node_path:
        os.environ["BENCH_NODE_PATH"] = args.node_path
    measure(args.conns, args.top)


if __name__ == "__main__":
    main()
