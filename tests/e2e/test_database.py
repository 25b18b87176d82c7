"""Handlers use the ORM freely; database connections neither leak nor go stale.

Runs against a real PostgreSQL server (.ci/run starts one and sets
DJANGO_WS_POSTGRES="name=...;user=...;host=...;port=...").
"""

import asyncio
import os
import subprocess
import sys
import threading

import pytest

from tests.conftest import ROOT, SETTINGS, require


@pytest.fixture(scope="module")
def postgres():
    dsn = os.environ.get("DJANGO_WS_POSTGRES")
    require(bool(dsn), "DJANGO_WS_POSTGRES is not set: no PostgreSQL server to test against")
    params = dict(part.split("=", 1) for part in dsn.split(";"))
    env = dict(os.environ, DJANGO_SETTINGS_MODULE=SETTINGS, DJANGO_WS_TEST_POSTGRES=dsn, PYTHONPATH=ROOT)
    subprocess.run([sys.executable, "-m", "django", "migrate", "-v0"], env=env, cwd=ROOT, check=True)
    return dsn, params


def backends(params) -> int:
    import psycopg

    with psycopg.connect(host=params["host"], port=params["port"], user=params["user"],
                         dbname=params["name"], autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (params["name"],),
        ).fetchone()[0]


@pytest.mark.parametrize("mode", ["threaded", "gevent", "multiprocess"])
def test_500_connections_that_used_the_orm_leave_no_backends_behind(make_server, postgres, mode):
    from websockets.asyncio.client import connect

    dsn, params = postgres
    import psycopg

    tag = f"pg-{mode}"
    with psycopg.connect(host=params["host"], port=params["port"], user=params["user"],
                         dbname=params["name"], autocommit=True) as conn:
        conn.execute("DELETE FROM project_visit WHERE tag = %s", (tag,))
    extra = ("--max-processes=60",) if mode == "multiprocess" else ()
    srv = make_server(mode=mode, env={"DJANGO_WS_TEST_POSTGRES": dsn}, extra_args=extra)
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], backends(params))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()

    async def visit():
        async with connect(srv.url(f"db/{tag}")) as ws:
            await ws.send("visit")
            return int(await asyncio.wait_for(ws.recv(), 30))

    async def main():
        counts = []
        for _ in range(10):  # 10 waves of 50 concurrent connections
            counts += await asyncio.gather(*(visit() for _ in range(50)))
        return counts

    try:
        counts = asyncio.run(main())
    finally:
        stop.set()
        sampler.join()
    assert sorted(counts)[-1] == 500, "every connection wrote its row through the ORM"
    from tests.e2e.test_modes import wait_until

    wait_until(lambda: backends(params) == 0, 10, "the worker holds no database connection once clients left")
    print(f"{mode}: peak PostgreSQL backends during 500 connections (50 at a time): {peak[0]}")
    assert peak[0] <= 55, f"backends peaked at {peak[0]} with 50 concurrent connections"
