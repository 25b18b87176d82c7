#!/usr/bin/env python3
"""A soak: the real processes under churn for a long time; does anything grow, is anything lost?

    python bench/soak.py [--minutes 30] [--broker] [--churn 200] [--members 100] [--rooms 10]
                         [--sends 20] [--hup-every 180] [--sample 5] [--json]

Starts ``run_wsserver`` (bench/servers/djws_project, ``soak_settings``: the
``room/<name>`` route joins ``room.<name>`` in ``on_connect`` and sends every
frame it receives to that group; every ``room.*`` keeps history) with
``--workers`` threaded workers; with ``--broker``, cluster mode on a private
``redis-server``, so the groups, the presence and the history live in Redis.
Then, for ``--minutes``:

* **churn**: ``--churn`` new connections a second, each to one of 50 rooms
  of its own (``room/c<k>``); every other one sends one message and waits
  for it to come back through its group, then each closes. Hundreds of
  connects, joins, leaves and disconnects a second. The 25 rooms whose
  churners send keep one member throughout (see Soak.anchor);
* **members**: ``--members`` connections spread over ``--rooms`` rooms
  (``room/m<k>``), asking for positions (``dws=1``). Each leaves after 10 to
  30 s, stays away 0.2 to 2 s, and comes back presenting its last position
  (``dws_since``), so the edge must replay what it missed; a server's close
  (1012 when the workers restart) brings it back the same way;
* **sends**: ``--sends`` messages a second, each from a random connected
  member to its room;
* **restarts**: a SIGHUP to ``run_wsserver`` every ``--hup-every`` seconds:
  new workers start, the old ones stop, and their clients get 1012 and come
  back with their positions.

Every ``--sample`` seconds it reads the resident memory (RSS) and open file
descriptors of the edge and of its workers (summed over the workers alive
then), the core's record counts from ``/_django_ws/stats`` (``records``: one
figure per table of the edge's core), the history it keeps, and Redis's key
count and memory. The report gives, for each, the first and last sample and
the **slope**: the least-squares line over the second half of the run, per
minute (the first half is warm-up: caches, allocator arenas, the first
worker restarts).

And it counts what was lost, which must be nothing:

* a member's own message that never came back to it, although its
  connection stayed open or it came back with its position;
* a gap in the offsets a member saw in its room, across its reconnects (a
  message the room got that the member neither received nor had replayed),
  and a resync (a position that could not be recovered);
* a churner's message that did not come back within 30 s on an open
  connection.

A message whose connection the server closed (1012) before it came back is
*cut*, not lost: the reliability promise is that a frame is delivered or its
connection is closed with a code. At the end the clients leave, and the
edge's tables must be back to their empty state (no record outlives its
connection).

The client is the ``websockets`` library (asyncio) in this process. Exit
status 1 if anything was lost or a table did not empty; ``--json`` prints
the whole report as one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import random
import signal
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.cluster import RedisServer  # noqa: E402
from bench.procs import fd_count, load_average, process_tree, rss_bytes  # noqa: E402
from django_ws.testing import WebSocketServer  # noqa: E402

SERVERS = HERE / "servers"
SETTINGS = "djws_project.soak_settings"
#: The rooms the churners spread over (room/c0 ... room/c49).
CHURN_ROOMS = 50
#: How long a message may take to come back before it counts as lost.
RECEIPT_TIMEOUT = 30.0
#: Tables of the core that hold records only while there are connections: empty when all have left.
EMPTY_AT_REST = ("connections", "groups", "group_members", "watched_groups", "worker_connections",
                 "worker_backlog", "catching_up", "recovered_meanwhile")


class Tally:
    """What the clients did and saw; read by the sampler thread, written by the event loop only."""

    def __init__(self):
        self.connects = 0
        self.refused: collections.Counter = collections.Counter()
        self.closed_by_server: collections.Counter = collections.Counter()
        self.sends = 0
        self.receipts = 0
        self.cut = 0
        self.lost = 0
        #: Of ``lost``: members' own messages (never back, not even replayed), churners' (not back in time).
        self.lost_by_members = 0
        self.lost_by_churners = 0
        self.gaps = 0
        self.duplicates = 0
        self.resyncs = 0
        self.recoveries = 0
        self.replayed = 0
        self.churn_skipped = 0
        self.hups = 0
        self.anomalies: list[dict] = []

    def anomaly(self, member: Member, kind: str, last: int, offset: int, payload: str) -> None:
        """Keep the first few offsets out of sequence, with what the member had presented: the clues."""
        if len(self.anomalies) < 20:
            self.anomalies.append({"kind": kind, "member": member.id, "group": member.group, "last": last,
                                   "offset": offset, "payload": payload[:80], "presented": member.presented,
                                   "frame_on_connection": member.frames, "connection": member.generation})

    def figures(self) -> dict:
        out = dict(vars(self))
        out["refused"] = {str(k): v for k, v in self.refused.items()}
        out["closed_by_server"] = {str(k): v for k, v in self.closed_by_server.items()}
        return out


def close_code(exc: BaseException) -> int | str:
    from websockets.exceptions import ConnectionClosed

    if isinstance(exc, ConnectionClosed):
        return exc.rcvd.code if exc.rcvd else 1006
    return type(exc).__name__


class Member:
    """One client of a room with history: leaves, comes back with its position, checks every offset."""

    def __init__(self, number: int, url: str, tally: Tally):
        self.id = number
        self.url = url
        self.group = "room." + url.rsplit("/", 1)[1]
        self.tally = tally
        self.position: tuple[str, int] | None = None
        self.ws = None
        self.sent = 0
        #: Own messages not back yet: n -> True while their connection is the one they were sent on.
        self.pending: dict[int, int] = {}
        #: Own messages cut by a server's close: counted back as receipts if a replay brings them.
        self.cut: set[int] = set()
        self.generation = 0
        #: The position presented on the current connection, and the group frames received on it since.
        self.presented: tuple[str, int] | None = None
        self.frames = 0
        #: How the last comeback for own messages after the end went (for the report of a loss).
        self.last_visit = "none needed"

    def address(self) -> str:
        query = {"dws": "1"}
        if self.position is not None:
            query["dws_since"] = json.dumps({self.group: list(self.position)}, separators=(",", ":"))
        return f"{self.url}?{urllib.parse.urlencode(query)}"

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.visit(stop)
            if not stop.is_set():
                await asyncio.sleep(random.uniform(0.2, 2.0))
        # It left with its own messages in flight and the run ended before it came back: come back
        # for them, as a client would (the replay must bring them), again if refused (503 under load).
        deadline = time.monotonic() + 2 * RECEIPT_TIMEOUT
        while self.pending and time.monotonic() < deadline:
            self.last_visit = "refused or closed"
            await self.visit(None)
            if self.pending:
                await asyncio.sleep(1.0)

    async def visit(self, stop: asyncio.Event | None) -> None:
        """One connection: until it is time to leave (10 to 30 s), or, the last one (no ``stop``),
        until its own messages are back or RECEIPT_TIMEOUT has passed."""
        from websockets.asyncio.client import connect

        presented = self.position is not None
        try:
            async with connect(self.address(), open_timeout=60, close_timeout=10) as ws:
                self.tally.connects += 1
                self.ws, self.generation = ws, self.generation + 1
                self.presented, self.frames = self.position, 0
                if presented:
                    self.tally.recoveries += 1
                if stop is None:
                    self.last_visit = "open"
                leave_at = time.monotonic() + (random.uniform(10, 30) if stop else RECEIPT_TIMEOUT)
                while not (stop.is_set() if stop else not self.pending):
                    left = leave_at - time.monotonic()
                    if left <= 0:
                        break
                    with contextlib.suppress(TimeoutError):
                        self.receive(await asyncio.wait_for(ws.recv(), min(left, 1.0)))
                self.ws = None
                # Leaving with own messages in flight is fine: they reached the handler before
                # the close (the promise), so the comeback's replay must bring them.
        except Exception as exc:  # noqa: BLE001 - every failure is counted, and the member comes back
            self.ws = None
            self.server_closed(exc)
            return
        if ws.close_code not in (1000, None):
            # The server's close crossed ours (a SIGHUP's 1012 as this member left): what was in
            # flight may have gone with the old worker, as for any close by the server.
            self.server_closed(ws.close_exc)

    def server_closed(self, exc: BaseException) -> None:
        from websockets.exceptions import ConnectionClosed, InvalidStatus

        if isinstance(exc, InvalidStatus):
            self.tally.refused[exc.response.status_code] += 1
            return
        if isinstance(exc, ConnectionClosed | OSError | TimeoutError):
            self.tally.closed_by_server[close_code(exc)] += 1
            # What was sent on this connection and not back may have died with its worker: cut,
            # unless the comeback's replay brings it (then receive() counts it after all).
            self.tally.cut += len(self.pending)
            self.cut.update(self.pending)
            self.pending.clear()
            return
        raise exc

    def receive(self, frame: str | bytes) -> None:
        text = frame if isinstance(frame, str) else frame.decode()
        header, _, payload = text.partition("\n")
        meta = json.loads(header) if header else {}
        if "resync" in meta:
            self.tally.resyncs += 1
            self.position = (meta["e"], meta["o"])
            return
        if "g" in meta:
            epoch, offset = meta["e"], meta["o"]
            self.frames += 1
            if self.position is not None and self.position[0] == epoch:
                last = self.position[1]
                if offset != last + 1:
                    self.tally.anomaly(self, "duplicate" if offset <= last else "gap", last, offset, payload)
                if offset <= last:
                    self.tally.duplicates += 1
                    return
                self.tally.gaps += offset - last - 1
            self.position = (epoch, offset)
        prefix = f"m:{self.id}:"
        if payload.startswith(prefix):
            n = int(payload[len(prefix):])
            if self.pending.pop(n, None) is not None:
                self.tally.receipts += 1
            elif n in self.cut:
                self.cut.discard(n)
                self.tally.cut -= 1
                self.tally.receipts += 1

    async def send(self) -> bool:
        if self.ws is None:
            return False
        self.sent += 1
        self.pending[self.sent] = self.generation
        self.tally.sends += 1
        try:
            await self.ws.send(f"m:{self.id}:{self.sent}")
        except Exception:  # noqa: BLE001 - the connection is ending; run() counts how
            pass
        return True

    def settle(self) -> None:
        """At the end: what is still pending was lost."""
        for n, generation in self.pending.items():
            self.tally.anomaly(self, "lost", n, n, f"sent on connection {generation}, last visit {self.last_visit}")
        self.tally.lost += len(self.pending)
        self.tally.lost_by_members += len(self.pending)
        self.pending.clear()


async def churner(number: int, url: str, tally: Tally) -> None:
    """Connect, maybe send one message and wait for it through the group, close."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    sends = number % 2 == 0
    waiting = False
    try:
        async with connect(url, open_timeout=60, close_timeout=10) as ws:
            tally.connects += 1
            if sends:
                tag = f"c:{number}"
                tally.sends += 1
                waiting = True
                await ws.send(tag)
                deadline = time.monotonic() + RECEIPT_TIMEOUT
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        tally.lost += 1
                        tally.lost_by_churners += 1
                        break
                    try:
                        frame = await asyncio.wait_for(ws.recv(), left)
                    except TimeoutError:
                        continue
                    if frame == tag:
                        tally.receipts += 1
                        break
                waiting = False
    except InvalidStatus as exc:
        tally.refused[exc.response.status_code] += 1
    except Exception as exc:  # noqa: BLE001 - counted by its close code
        tally.closed_by_server[close_code(exc)] += 1
        if waiting:
            tally.cut += 1


class Sampler(threading.Thread):
    """Every ``interval`` seconds: the servers' memory, descriptors, records, and Redis's keys and memory."""

    def __init__(self, server: WebSocketServer, redis: RedisServer | None, tally: Tally, interval: float):
        super().__init__(daemon=True)
        self.server, self.redis, self.tally, self.interval = server, redis, tally, interval
        self.samples: list[dict] = []
        self.errors: list[str] = []
        self.started = time.monotonic()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0 if not self.samples else self.interval):
            try:
                self.samples.append(self.sample())
            except Exception as exc:  # noqa: BLE001 - a stats request that timed out under load: say so, go on
                self.errors.append(f"{time.monotonic() - self.started:.0f}s: {type(exc).__name__}: {exc}")

    def sample(self) -> dict:
        edge = self.server.process.pid
        workers = [pid for pid in process_tree([edge]) if pid != edge]
        stats = fetch_stats(self.server)
        out = {
            "t_min": round((time.monotonic() - self.started) / 60, 4),
            "edge_rss_kb": rss_bytes(edge) // 1024,
            "edge_fds": fd_count(edge),
            "workers": len(workers),
            "workers_rss_kb": sum(rss_bytes(pid) for pid in workers) // 1024,
            # Old and new workers overlap during a restart: per worker is the figure to compare.
            "rss_per_worker_kb": sum(rss_bytes(pid) for pid in workers) // 1024 // max(1, len(workers)),
            "workers_fds": sum(fd_count(pid) for pid in workers),
            "open_connections": stats["connections"],
            "history_groups": stats["history"]["groups"],
            "history_messages": stats["history"]["messages"],
            **{f"records_{name}": value for name, value in stats["records"].items()},
            "connects": self.tally.connects,
            "load": load_average(),
        }
        if "broker" in stats:
            out["broker_channels"] = stats["broker"]["channels"]
            out["broker_sessions"] = stats["broker"]["sessions"]
        if self.redis is not None:
            figures = self.redis.figures()
            out["redis_keys"] = figures["keys"]
            out["redis_used_memory_kb"] = figures["used_memory"] // 1024
            out["redis_pubsub_channels"] = figures["pubsub_channels"]
        return out


def fetch_stats(server: WebSocketServer) -> dict:
    with urllib.request.urlopen(f"{server.http_url}/_django_ws/stats", timeout=10) as response:
        return json.loads(response.read())


def slope(points: list[tuple[float, float]]) -> float:
    """Least squares: the change per minute of the line through ``points`` (minutes, value)."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var if var else 0.0


def slopes(samples: list[dict], minutes: float) -> dict:
    """For each numeric series: first, last, and the slope per minute over the second half of the load.

    Only the samples taken while the load ran count (``minutes``): the drain
    at the end would tilt every line down.
    """
    samples = [s for s in samples if s["t_min"] <= minutes]
    if not samples:
        return {}
    second = [s for s in samples if s["t_min"] >= minutes / 2]
    out = {}
    for name, value in samples[0].items():
        if name in ("t_min", "load", "connects") or not isinstance(value, int | float):
            continue
        out[name] = {"first": value, "last": samples[-1].get(name),
                     "max": max(s.get(name, 0) for s in samples),
                     "slope_per_min": round(slope([(s["t_min"], s[name]) for s in second if name in s]), 2)}
    return out


class Soak:
    """The server (and Redis), the clients, the sampler and the signals of one run."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.tally = Tally()
        self.redis: RedisServer | None = None
        self.server: WebSocketServer | None = None
        self.members: list[Member] = []

    def start(self) -> None:
        env = {"PYTHONPATH": str(HERE.parent)}  # the server imports this checkout's django_ws
        if self.args.broker:
            self.redis = RedisServer()
            env["DJWS_BENCH_BROKER"] = self.redis.url
        self.server = WebSocketServer(settings=SETTINGS, cwd=str(SERVERS), env=env, workers=self.args.workers,
                                      ready_timeout=120).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(timeout=60)
        if self.redis is not None:
            self.redis.stop()

    async def churn(self, stop: asyncio.Event) -> None:
        """``--churn`` churners a second, at most ``--churn-inflight`` at once (beyond: skipped, counted)."""
        inflight: set[asyncio.Task] = set()
        number, started = 0, time.monotonic()
        while not stop.is_set():
            due = int((time.monotonic() - started) * self.args.churn)
            while number < due:
                number += 1
                if len(inflight) >= self.args.churn_inflight:
                    self.tally.churn_skipped += 1
                    continue
                url = self.server.url(f"room/c{number % CHURN_ROOMS}")
                task = asyncio.ensure_future(churner(number, url, self.tally))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
            await asyncio.sleep(0.01)
        await asyncio.gather(*inflight)

    async def anchor(self, room: int, stop: asyncio.Event) -> None:
        """One member that stays in a room whose churners send: the edge stays subscribed to it.

        A message published before an edge's subscription to a group new to it reaches Redis
        misses that first member (docs/cluster.rst); a churner is often that first member. The
        rooms whose churners only connect and leave have no anchor: their subscriptions churn.
        """
        from websockets.asyncio.client import connect

        while not stop.is_set():
            with contextlib.suppress(Exception):
                async with connect(self.server.url(f"room/c{room}"), open_timeout=60) as ws:
                    while not stop.is_set():
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(ws.recv(), 1.0)
            await asyncio.sleep(0.5)

    async def send(self, stop: asyncio.Event) -> None:
        interval = 1 / self.args.sends
        while not stop.is_set():
            await asyncio.sleep(interval)
            await random.choice(self.members).send()

    async def hup(self, stop: asyncio.Event) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.args.hup_every)
            if stop.is_set():
                return
            self.server.process.send_signal(signal.SIGHUP)
            self.tally.hups += 1

    async def drive(self) -> None:
        stop = asyncio.Event()
        self.members = [Member(i, self.server.url(f"room/m{i % self.args.rooms}"), self.tally)
                        for i in range(self.args.members)]
        members = [asyncio.ensure_future(m.run(stop)) for m in self.members]
        members += [asyncio.ensure_future(self.anchor(room, stop)) for room in range(0, CHURN_ROOMS, 2)]
        await asyncio.sleep(1)  # the anchors in before the first churner
        tasks = [asyncio.ensure_future(job(stop)) for job in (self.churn, self.send, self.hup)]
        await asyncio.sleep(self.args.minutes * 60)
        # Stop sending first, and let what is in flight come back (or not) before the members leave.
        tasks[1].cancel()
        await asyncio.sleep(5)
        stop.set()  # each member with own messages still in flight waits for them (Member.run)
        await asyncio.gather(*members, tasks[0], tasks[2])
        with contextlib.suppress(asyncio.CancelledError):
            await tasks[1]
        for member in self.members:
            member.settle()

    def at_rest(self, timeout: float = 60.0) -> dict:
        """The core's records once every client has left: what did not empty is a leak."""
        deadline = time.monotonic() + timeout
        while True:
            records = fetch_stats(self.server)["records"]
            if all(records[name] == 0 for name in EMPTY_AT_REST) or time.monotonic() > deadline:
                return records
            time.sleep(0.5)

    def run(self) -> dict:
        self.start()
        try:
            sampler = Sampler(self.server, self.redis, self.tally, self.args.sample)
            baseline = {"edge_fds": fd_count(self.server.process.pid),
                        "edge_rss_kb": rss_bytes(self.server.process.pid) // 1024}
            load_before = load_average()
            sampler.start()
            started = time.monotonic()
            asyncio.run(self.drive())
            elapsed = time.monotonic() - started
            rest = self.at_rest()
            sampler.done.set()
            sampler.join()
            final = sampler.sample()
            stats = fetch_stats(self.server)
            report = {
                "minutes": self.args.minutes, "broker": self.args.broker, "workers": self.args.workers,
                "churn_per_s": self.args.churn, "members": self.args.members, "rooms": self.args.rooms,
                "sends_per_s": self.args.sends, "hup_every_s": self.args.hup_every,
                "elapsed_s": round(elapsed, 1),
                "connects_per_s": round(self.tally.connects / elapsed, 1),
                "load_average": {"before": load_before, "after": load_average()},
                "tally": self.tally.figures(),
                "series": slopes(sampler.samples, self.args.minutes),
                "baseline": baseline,
                "at_rest": {"records": rest, "edge_fds": final["edge_fds"], "edge_rss_kb": final["edge_rss_kb"],
                            "redis_keys": final.get("redis_keys"), "closed_by_code": stats["closed_by_code"]},
                "not_empty": sorted(name for name in EMPTY_AT_REST if rest[name]),
                "sample_errors": sampler.errors,
                "samples_taken": sampler.samples,
            }
            report["ok"] = (self.tally.lost == 0 and self.tally.gaps == 0 and self.tally.duplicates == 0
                            and self.tally.resyncs == 0 and not report["not_empty"])
            return report
        finally:
            self.stop()


def print_report(report: dict) -> None:
    t = report["tally"]
    print(f"soak: {report['elapsed_s'] / 60:.1f} min, {'cluster mode (Redis)' if report['broker'] else 'one edge'}, "
          f"{report['workers']} workers; load average {report['load_average']['before']} -> "
          f"{report['load_average']['after']}")
    print(f"  connects {t['connects']} ({report['connects_per_s']}/s; churners skipped at the in-flight bound: "
          f"{t['churn_skipped']}), SIGHUPs {t['hups']}, member comebacks with a position {t['recoveries']}")
    print(f"  sends {t['sends']}, receipts {t['receipts']}, cut by a server close {t['cut']}, LOST {t['lost']} "
          f"(members {t['lost_by_members']}, churners {t['lost_by_churners']}); "
          f"offset gaps {t['gaps']}, duplicates {t['duplicates']}, resyncs {t['resyncs']}")
    print(f"  closed by the server {t['closed_by_server']}, refused {t['refused']}")
    for anomaly in t["anomalies"]:
        print(f"  out of sequence: {anomaly}")
    print(f"  {'series':34} {'first':>10} {'max':>10} {'last':>10} {'slope/min (2nd half)':>22}")
    for name, s in report["series"].items():
        print(f"  {name:34} {s['first']:>10} {s['max']:>10} {s['last']:>10} {s['slope_per_min']:>22}")
    print(f"  at rest: {report['at_rest']}")
    if report["sample_errors"]:
        print(f"  samples missed: {len(report['sample_errors'])}, the first: {report['sample_errors'][0]}")
    print("  OK: nothing lost, every table emptied" if report["ok"]
          else f"  FAILED: lost or gaps, or tables not empty: {report['not_empty']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--broker", action="store_true", help="cluster mode on a private redis-server")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--churn", type=float, default=200.0, help="new connections a second")
    parser.add_argument("--churn-inflight", type=int, default=400, help="most churners at once")
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--sends", type=float, default=20.0, help="members' messages a second, in all")
    parser.add_argument("--hup-every", type=float, default=180.0, help="seconds between SIGHUPs")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--json", action="store_true", help="the report as JSON on the last line")
    parser.add_argument("--out", type=Path, help="write the report, with every sample, to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = Soak(args).run()
    print_report(report)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k != "samples_taken"}))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
