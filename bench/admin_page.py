#!/usr/bin/env python3
"""How long the admin's Realtime page takes with many connections and groups on the edge.

    python bench/admin_page.py [--connections 10000] [--groups 1000] [--requests 20] [--rounds 3]

Starts run_wsserver with the test project and Django's admin
(``tests.project.admin_settings``), opens ``--connections`` clients spread
over ``--groups`` rooms (each joins its room), then asks Django's test
client, as a superuser, in interleaved rounds: the page as staff open it
(``/admin/django_ws/realtime/``: every edge asked, the largest groups, the
plots' samples) and the page with a group searched (its first page of
members). Each figure is the time to the full response, in this process,
from the request to the last byte; median and slowest over the rounds.
The clients are the ``websockets`` library (asyncio) in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.procs import raise_nofile  # noqa: E402
from django_ws.testing import WebSocketServer  # noqa: E402

SETTINGS = "tests.project.admin_settings"


async def open_clients(url: str, connections: int, groups: int) -> list:
    """``connections`` clients, client ``i`` in room ``g{i % groups}``, each joined (its room answered)."""
    from websockets.asyncio.client import connect

    async def one(i: int):
        ws = await connect(url.format(room=f"g{i % groups}"), max_queue=None, open_timeout=120)
        await ws.send("{}")  # the room joins on the first message and answers
        await ws.recv()
        return ws

    clients = []
    for start in range(0, connections, 250):
        clients += await asyncio.gather(*(one(i) for i in range(start, min(start + 250, connections))))
    return clients


async def close_all(clients: list) -> None:
    await asyncio.gather(*(ws.close() for ws in clients))


def timed(client, url: str) -> float:
    started = time.perf_counter()
    response = client.get(url)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise AssertionError(f"{url} answered {response.status_code}")
    return elapsed * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--groups", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    raise_nofile(args.connections + 1000)  # per process: this one holds the clients, the edge their peers
    directory = tempfile.mkdtemp(prefix="django-ws-bench-admin-")
    db = os.path.join(directory, "admin.sqlite3")
    server = WebSocketServer(settings=SETTINGS, cwd=str(ROOT), env={"DJANGO_WS_TEST_DB": db, "PYTHONPATH": str(ROOT)},
                             ready_timeout=60)
    os.environ.update(DJANGO_SETTINGS_MODULE=SETTINGS, DJANGO_WS_TEST_DB=db, DJANGO_WS_EDGES=server.sub_socket)
    subprocess.run([sys.executable, "-m", "django", "migrate", "-v0"], cwd=ROOT, check=True)
    server.start()
    loop = asyncio.new_event_loop()
    try:
        started = time.monotonic()
        clients = loop.run_until_complete(open_clients(server.url("room/{room}"), args.connections, args.groups))
        print(f"{len(clients):,} connections in {args.groups:,} groups open in {time.monotonic() - started:.1f} s",
              flush=True)
        import django

        django.setup()
        from django.contrib.auth.models import User
        from django.test import Client
        from django.test.utils import setup_test_environment

        setup_test_environment()
        client = Client()
        client.force_login(User.objects.create_superuser("bench", "bench@example.com", "bench"))
        pages = {"page": "/admin/django_ws/realtime/",
                 "page with a group searched": "/admin/django_ws/realtime/?group=g7"}
        for url in pages.values():
            timed(client, url)  # warm: sockets to the edge, templates
        figures: dict[str, list[float]] = {name: [] for name in pages}
        for round_ in range(args.rounds):
            for name, url in pages.items():
                figures[name] += [timed(client, url) for _ in range(args.requests)]
            print(f"round {round_ + 1}: " + ", ".join(
                f"{name} median {statistics.median(times[-args.requests:]):.1f} ms" for name, times in figures.items()),
                flush=True)
        print(f"\n{args.connections:,} connections, {args.groups:,} groups, one edge; "
              f"{args.rounds} rounds of {args.requests} requests each:")
        for name, times in figures.items():
            print(f"  {name}: median {statistics.median(times):.1f} ms, slowest {max(times):.1f} ms")
        print(f"load average: {Path('/proc/loadavg').read_text().split()[:3]}")
        loop.run_until_complete(close_all(clients))
    finally:
        loop.close()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
