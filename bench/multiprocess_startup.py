"""What a connection's own process costs in ``--multiprocess``: connect to first echo, in interleaved rounds.

    python bench/multiprocess_startup.py                       # this checkout
    python bench/multiprocess_startup.py . /path/to/other/checkout --rounds 5

Each checkout (a directory holding django_ws/ and tests/) gets a
``run_wsserver --multiprocess`` of the tests' project, started from that
checkout; each round opens ``--connections`` connections one after another
on each server in turn and times each from the TCP connect to the echo of
its first message: the handshake (on_connect runs in the new process), the
process's start and one round trip. Prints the median and the 90th
percentile per round, and per round the ratio of each checkout's median to
the first one's, then the median of those ratios with their range.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkouts", nargs="*", default=[ROOT])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=200)
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    from websockets.sync.client import connect

    from django_ws.testing import WebSocketServer

    servers = []
    for checkout in args.checkouts:
        checkout = os.path.abspath(checkout)
        env = {"PYTHONPATH": checkout, "DJANGO_WS_TEST_DB": os.path.join(checkout, "bench-startup.sqlite3")}
        server = WebSocketServer(settings="tests.project.settings", cwd=checkout, mode="multiprocess", env=env,
                                 extra_args=("--max-processes=64",))
        servers.append((checkout, server.start()))
    try:
        ratios: dict[str, list[float]] = {c: [] for c, _ in servers}
        for n in range(args.rounds):
            medians = {}
            for checkout, server in servers:
                times = []
                for i in range(args.connections):
                    start = time.perf_counter()
                    with connect(server.url("echo")) as ws:
                        ws.send(f"hello {i}")
                        assert ws.recv(timeout=10) == f"hello {i}"
                        times.append(time.perf_counter() - start)
                times.sort()
                medians[checkout] = statistics.median(times)
                print(f"round {n + 1} {checkout}: median {medians[checkout] * 1000:.2f} ms, "
                      f"p90 {times[int(len(times) * 0.9)] * 1000:.2f} ms")
            for checkout in medians:
                ratios[checkout].append(medians[checkout] / medians[servers[0][0]])
        for checkout, values in ratios.items():
            print(f"{checkout}: median time / first checkout's = {statistics.median(values):.2f} "
                  f"[{min(values):.2f}-{max(values):.2f}] over {len(values)} rounds")
    finally:
        for _, server in servers:
            server.stop()


if __name__ == "__main__":
    main()
