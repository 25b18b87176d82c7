#!/usr/bin/env python3
"""One group message to every connection of a cluster of edges: how long it takes, and what it costs.

    python bench/cluster.py [--edges 6] [--connections 100000] [--sends 5] [--broker]

Starts ``--edges`` edges (``run_wsserver`` of bench/servers/djws_project,
each with ``--workers-per-edge`` workers of its own), opens
``--connections`` WebSocket connections spread evenly over them from
several client processes (bench/cluster_client.js, at most
``--per-client`` connections each, each from a loopback source address of
its own, 127.0.0.10 and up, so that ephemeral ports never run short), all in
one group (``room.cluster``: the route ``room/<name>`` joins it in
``on_connect``). Then this process calls ``send_to_group`` ``--sends``
times, one message at a time, and reports:

* the time from the call to the last connection having the message
  (median and range over the sends), and the time the call itself took;
* memory per connection across the edges and their workers (the RSS they
  gained while the connections opened, divided by the connections);
* with ``--broker``: Redis's own memory, CPU and traffic (INFO) for the
  connections (presence) and per message, and the keys it holds.

Two ways to build the cluster: without ``--broker`` the static
configuration (this process lists every edge's sub endpoint in
``WS_EDGES`` and a group message is sent once per edge); with ``--broker``
cluster mode on a private ``redis-server`` (``WS_BROKER``: edges announce
themselves, the message is one publish). Every connection must get every
message exactly once, or the run fails (exit status 1).

``--json`` prints the figures as one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.client import find_client
from bench.procs import Subprocess, cpu_seconds, kill_group, load_average, process_tree, raise_nofile, rss_bytes
from django_ws.testing import WebSocketServer
from django_ws.testing.server import free_port

CLIENT = HERE / "cluster_client.js"
SERVERS = HERE / "servers"
GROUP_ROUTE, GROUP = "room/cluster", "room.cluster"
SETTINGS = "djws_project.cluster_settings"


class RedisServer:
    """A private redis-server on a free loopback port, its data in a temporary directory."""

    def __init__(self):
        if shutil.which("redis-server") is None:
            raise SystemExit("--broker needs redis-server on PATH (Debian: apt-get install redis-server)")
        self.dir = tempfile.TemporaryDirectory(prefix="bench-redis-")
        self.port = free_port()
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir.name,
             "--save", "", "--appendonly", "no", "--maxclients", "1000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        import redis

        self.client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)
        # What reading the figures itself costs (INFO's reply is kilobytes): taken off every delta.
        first = self.figures()
        self.overhead = {name: value - first[name] for name, value in self.figures().items()}

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def figures(self) -> dict:
        """INFO's memory, CPU and traffic counters, and the number of keys."""
        info = self.client.info()
        return {
            "used_memory": info["used_memory"],
            "cpu_s": info["used_cpu_sys"] + info["used_cpu_user"],
            "commands": info["total_commands_processed"],
            "net_in": info["total_net_input_bytes"],
            "net_out": info["total_net_output_bytes"],
            "keys": self.client.dbsize(),
            "pubsub_channels": info.get("pubsub_channels", 0),
            "connected_clients": info["connected_clients"],
            "expired_keys": info["expired_keys"],  # an edge's lease that lapsed is one
        }

    def delta(self, before: dict, after: dict) -> dict:
        """What Redis did between two readings of figures(): commands, bytes in and out, CPU, memory."""
        out = {name: after[name] - before[name] - self.overhead[name] for name in ("commands", "net_in", "net_out")}
        out["cpu_ms"] = round((after["cpu_s"] - before["cpu_s"]) * 1000, 1)
        out["used_memory"] = after["used_memory"] - before["used_memory"]
        return out

    def keys(self, biggest: int = 8) -> dict:
        """What the database holds: key count and bytes (MEMORY USAGE) by type, and the biggest keys."""
        by_type: dict[str, list[int]] = {}
        sizes = []
        for key in self.client.scan_iter(count=1000):
            kind = self.client.type(key).decode()
            size = self.client.memory_usage(key, samples=0) or 0
            by_type.setdefault(kind, [0, 0])
            by_type[kind][0] += 1
            by_type[kind][1] += size
            sizes.append((size, key.decode(errors="replace"), kind))
        sizes.sort(reverse=True)
        return {"by_type": {k: {"keys": n, "bytes": b} for k, (n, b) in by_type.items()},
                "biggest": [{"key": k, "type": t, "bytes": s} for s, k, t in sizes[:biggest]]}

    def stop(self) -> None:
        self.client.close()
        kill_group(self.process)
        self.dir.cleanup()


class ClientProcess:
    """One cluster_client.js: its connections, and its JSON events on a queue."""

    def __init__(self, command: list[str], env: dict, urls: list[str], conns: int, local_address: str,
                 batch: int, events: queue.Queue):
        self.process = subprocess.Popen(
            [*command, "--urls", ",".join(urls), "--conns", str(conns), "--local-address", local_address,
             "--batch", str(batch)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
            env=env, start_new_session=True)
        self.stderr: list[str] = []
        threading.Thread(target=self._read, args=(events,), daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.process.stderr), daemon=True).start()

    def _read(self, events: queue.Queue) -> None:
        for line in self.process.stdout:
            with contextlib.suppress(ValueError):
                events.put((self, json.loads(line)))
        events.put((self, {"event": "exit", "code": self.process.wait()}))

    def command(self, line: str) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        kill_group(self.process, timeout=5)


class Run:
    """The edges, the clients, and the figures of one run."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.events: queue.Queue = queue.Queue()
        self.redis: RedisServer | None = None
        self.edges: list[WebSocketServer] = []
        self.clients: list[ClientProcess] = []
        self.workers: list[Subprocess] = []

    # -- the cluster ---------------------------------------------------------

    def start_edges(self) -> None:
        env = self.server_env()
        followers = self.args.workers > 0
        # One after the other, from this thread: the servers die with the thread that started them
        # (PR_SET_PDEATHSIG), so a pool's threads would take them along when they end.
        for _ in range(self.args.edges):
            self.edges.append(WebSocketServer(settings=SETTINGS, cwd=str(SERVERS), env=env, edge_only=followers,
                                              workers=self.args.workers_per_edge, ready_timeout=120).start())
        if followers:
            command = [sys.executable, "-m", "django", "run_wsworker", "--threaded"]
            self.workers = [Subprocess(command, env={**os.environ, **env, "DJANGO_SETTINGS_MODULE": SETTINGS,
                                                     "PYTHONPATH": f"{SERVERS}{os.pathsep}{env['PYTHONPATH']}"},
                                       cwd=SERVERS) for _ in range(self.args.workers)]
            self.wait_workers()

    def server_env(self) -> dict:
        env = {"PYTHONPATH": str(HERE.parent)}  # the servers import this checkout's django_ws
        if self.redis:
            env["DJWS_BENCH_BROKER"] = self.redis.url
            if self.args.lease:
                env["DJWS_BENCH_LEASE"] = str(self.args.lease)
        return env

    def wait_workers(self) -> None:
        """Until every edge lists every following worker: they found the edges in Redis."""
        deadline = time.monotonic() + 60
        while True:
            counts = [len(s["workers"]) for s in self.stats()]
            if all(count == self.args.workers for count in counts):
                return
            for worker in self.workers:
                if worker.process.poll() is not None:
                    raise RuntimeError(f"run_wsworker exited with code {worker.process.returncode}:\n"
                                       f"{worker.output()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the edges list {counts} workers after 60 s, not {self.args.workers} each")
            time.sleep(0.2)

    def server_pids(self) -> list[int]:
        return process_tree([edge.process.pid for edge in self.edges]
                            + [worker.process.pid for worker in self.workers])

    def server_rss(self) -> int:
        return sum(rss_bytes(pid) for pid in self.server_pids())

    def server_cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.server_pids())

    def stats(self) -> list[dict]:
        out = []
        for edge in self.edges:
            with urllib.request.urlopen(f"{edge.http_url}/_django_ws/stats", timeout=10) as response:
                out.append(json.loads(response.read()))
        return out

    def open_connections(self) -> tuple[int, float]:
        """Start the client processes; return how many connections opened, and how long it took."""
        client = find_client(None, self.args.node_path)
        command = ["node", str(CLIENT)]
        count = max(1, math.ceil(self.args.connections / self.args.per_client))
        if count > 240:
            raise SystemExit(f"{count} client processes would need more loopback addresses than 127.0.0.10-250")
        urls = [edge.url(GROUP_ROUTE) for edge in self.edges]
        started = time.monotonic()
        for i in range(count):
            conns = self.args.connections // count + (1 if i < self.args.connections % count else 0)
            # Each process starts its round-robin at another edge, so the edges get even shares.
            rotated = urls[i % len(urls):] + urls[:i % len(urls)]
            self.clients.append(ClientProcess(command, client.env, rotated, conns, f"127.0.0.{10 + i}",
                                              self.args.batch, self.events))
        opened = failed = 0
        error = None
        for event in self.wait_events("open", len(self.clients), self.args.timeout):
            opened += event["opened"]
            failed += event["failed"]
            error = error or event["error"]
        if failed:
            raise RuntimeError(f"{failed} of {self.args.connections} connections failed to open; first error: {error}")
        return opened, time.monotonic() - started

    def wait_events(self, kind: str, count: int, timeout: float, k: int | None = None) -> list[dict]:
        """The next ``count`` events of ``kind`` (for message ``k``) from the clients, one per client."""
        got: dict[ClientProcess, dict] = {}
        deadline = time.monotonic() + timeout
        while len(got) < count:
            try:
                client, event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"{len(got)} of {count} client processes reported {kind!r} "
                                   f"within {timeout:.0f}s") from None
            if event["event"] == "exit":
                raise RuntimeError(f"a client process exited (code {event['code']}): "
                                   f"{''.join(client.stderr).strip()[-500:]}")
            if event["event"] == kind and (k is None or event.get("k") == k):
                got[client] = event
        return list(got.values())

    def wait_joined(self, expected: int) -> None:
        """Until every edge's group holds its connections: joins travel through the workers' on_connect."""
        deadline = time.monotonic() + self.args.timeout
        while True:
            stats = self.stats()
            members = sum(s["group_members"] for s in stats)
            if members == expected:
                return
            closed = [(edge, s["closed_by_code"]) for edge, s in zip(self.edges, stats) if s["closed_by_code"]]
            if closed:
                said = "\n".join(line for edge, _ in closed for line in edge.lines[-3:])
                raise RuntimeError(f"the edges closed connections while they opened (by close code: "
                                   f"{[codes for _, codes in closed]}); the last they said:\n{said}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the group has {members} members after {self.args.timeout:.0f}s, not {expected}")
            time.sleep(0.2)

    # -- the sends -----------------------------------------------------------

    def send(self, k: int, expected: int) -> dict:
        """One send_to_group; when the last connection got it, and how many got it (each exactly once)."""
        from django_ws import send_to_group

        redis_before = self.redis.figures() if self.redis else None
        cpu_before = self.server_cpu()
        sent_at = time.time()
        written = send_to_group(GROUP, f"k:{k}", timeout=self.args.timeout).delivered
        returned_at = time.time()
        try:
            reports = self.wait_events("done", len(self.clients), self.args.timeout, k)
            complete = True
        except TimeoutError:
            complete = False
            for client in self.clients:
                client.command(f"report {k}")
            reports = self.wait_events("report", len(self.clients), 30, k)
        result = {
            "k": k,
            "complete": complete,
            "delivered": sum(r["count"] for r in reports),
            "duplicates": sum(r["duplicates"] for r in reports),
            "malformed": max(r["malformed"] for r in reports),
            "written": written,
            "call_ms": round((returned_at - sent_at) * 1000, 1),
            "first_ms": round(min(r["first_ms"] for r in reports if r["first_ms"]) - sent_at * 1000, 1)
            if any(r["first_ms"] for r in reports) else None,
            "last_ms": round(max(r["last_ms"] for r in reports if r["last_ms"]) - sent_at * 1000, 1)
            if any(r["last_ms"] for r in reports) else None,
            "servers_cpu_s": round(self.server_cpu() - cpu_before, 2),
        }
        if self.redis:
            after = self.redis.figures()
            result["redis"] = self.redis.delta(redis_before, after)
        result["ok"] = complete and result["delivered"] == expected and not result["duplicates"]
        return result

    def what_servers_said(self, lines: int = 12) -> str:
        """The last lines of every edge's and worker's output: why a send did not reach everyone."""
        def notable(line: str) -> bool:  # not the start-up banner nor the workers joining
            return not line.startswith(("Worker ", "\tHINT", "chat.Message", "System check", "WARNINGS", "Routes"))

        parts = [f"edge {edge.url()}:\n" + "\n".join([line for line in edge.lines if notable(line)][-lines:])
                 for edge in self.edges]
        parts += [f"worker {worker.process.pid}:\n{worker.output(lines)}" for worker in self.workers]
        return "\n".join(parts)

    def stop(self) -> dict:
        # The edges' own count of the connections they closed, by close code (before they stop and close the rest).
        closed: dict[str, int] = {}
        with contextlib.suppress(OSError, ValueError):
            for stats in self.stats():
                for code, count in stats["closed_by_code"].items():
                    closed[code] = closed.get(code, 0) + count
        for client in self.clients:
            client.command("quit")
        for client in self.clients:
            client.stop()
        for worker in self.workers:
            worker.stop()
        for edge in self.edges:
            with contextlib.suppress(AssertionError):
                edge.stop(timeout=60)
        if self.redis:
            self.redis.stop()
        return {"closed_by_server": sum(closed.values()), "closed_by_code": closed}


def use_cluster(run: Run) -> None:
    """Make this process a Django process of the cluster: the sender of the messages."""
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    if run.redis:
        os.environ["DJWS_BENCH_BROKER"] = run.redis.url
    else:
        os.environ["DJWS_BENCH_EDGES"] = json.dumps([edge.sub_socket for edge in run.edges])
    sys.path.insert(0, str(SERVERS))
    import django

    django.setup()


def check_broker_support() -> None:
    from django_ws.conf import DEFAULTS

    if "WS_BROKER" not in DEFAULTS:
        raise SystemExit("--broker: this checkout of django-ws has no cluster mode (no WS_BROKER setting)")
    try:
        import redis  # noqa: F401
    except ImportError:
        raise SystemExit("--broker needs redis-py: pip install 'django-ws-edge[redis]'") from None


def spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 1), "min": round(min(values), 1),
            "max": round(max(values), 1)}


def measure(args: argparse.Namespace) -> dict:
    raise_nofile(20000)
    run = Run(args)
    result: dict = {"edges": args.edges, "connections": args.connections, "mode": "broker" if args.broker else "static",
                    "lease": args.lease,
                    "workers": args.workers or f"{args.workers_per_edge} per edge"}
    try:
        if args.broker:
            run.redis = RedisServer()
        run.start_edges()
        time.sleep(1)  # workers settle (imports, first allocations) before the baseline
        rss_before = run.server_rss()
        redis_before = run.redis.figures() if run.redis else None
        opened, open_s = run.open_connections()
        result.update(opened=opened, client_processes=len(run.clients), open_s=round(open_s, 1))
        run.wait_joined(opened)
        rss_after = run.server_rss()
        result["server_processes"] = len(run.server_pids())
        result["server_rss_mb"] = round(rss_after / 2**20, 1)
        result["rss_per_connection_kb"] = round((rss_after - rss_before) / opened / 1024, 2)
        stats = run.stats()
        result["per_edge"] = [s["connections"] for s in stats]
        if run.redis:
            after = run.redis.figures()
            result["redis_connect"] = {
                "used_memory_mb": round(after["used_memory"] / 2**20, 2),
                "bytes_per_connection": round((after["used_memory"] - redis_before["used_memory"]) / opened, 1),
                **run.redis.delta(redis_before, after),
                "keys": after["keys"], "pubsub_channels": after["pubsub_channels"],
                "connected_clients": after["connected_clients"],
            }
            result["redis_keys"] = run.redis.keys()
            # What the cluster asks of Redis when nothing is sent: lease renewals, workers reading the registry.
            # Over one lease (10 s unless --lease), in which each of them happens three times.
            window = args.lease or 10.0
            before = run.redis.figures()
            time.sleep(window)
            idle = run.redis.delta(before, run.redis.figures())
            result["redis_idle_per_s"] = {name: round(value / window, 1) for name, value in idle.items()
                                          if name != "used_memory"}
        use_cluster(run)
        sends = []
        for k in range(args.sends):
            sends.append(run.send(k, opened))
            print(f"send {k}: {json.dumps(sends[-1])}", flush=True)
            if not sends[-1]["ok"]:
                print(f"send {k} did not reach every connection once; the servers said:\n{run.what_servers_said()}",
                      file=sys.stderr, flush=True)
                break  # the connections it missed are gone or cut off: the next sends would wait in vain
        result["sends"] = sends
        result["ok"] = all(s["ok"] for s in sends)
        done = [s for s in sends if s["last_ms"] is not None]
        if done:
            result["last_delivery_ms"] = spread([s["last_ms"] for s in done])
            result["first_delivery_ms"] = spread([s["first_ms"] for s in done])
            result["call_ms"] = spread([s["call_ms"] for s in sends])
        if run.redis:
            result["redis_per_send"] = {name: statistics.median(s["redis"][name] for s in sends)
                                        for name in sends[0]["redis"]}
            result["redis_after"] = run.redis.figures()
            # More than one session on an edge: it lost Redis during the run.
            result["broker_sessions"] = [s.get("broker", {}).get("sessions") for s in run.stats()]
    finally:
        result.update(run.stop())
    result["load_average"] = load_average()
    return result


def report(result: dict) -> None:
    print(f"\n{result['connections']:,} connections on {result['edges']} edges ({result['mode']}), "
          f"{result['client_processes']} client processes; opened in {result['open_s']} s; per edge {result['per_edge']}")
    last, call = result.get("last_delivery_ms"), result.get("call_ms")
    if last:
        print(f"send_to_group to the last delivery, ms: median {last['median']} ({last['min']} to {last['max']}) "
              f"over {len(result['sends'])} sends; the call returned in {call['median']} ms (median)")
    print(f"servers: {result['server_processes']} processes, {result['server_rss_mb']} MB RSS, "
          f"{result['rss_per_connection_kb']} KB per connection")
    if "redis_connect" in result:
        print(f"redis for the connections: {json.dumps(result['redis_connect'])}")
        print(f"redis keys: {json.dumps(result['redis_keys'])}")
        print(f"redis per send (median): {json.dumps(result['redis_per_send'])}; "
              f"idle, per second: {json.dumps(result['redis_idle_per_s'])}")
        print(f"edges' sessions with Redis: {result.get('broker_sessions')}; "
              f"keys expired in Redis (lapsed leases): {result.get('redis_after', {}).get('expired_keys')}")
    print(f"every connection got every message once: {'yes' if result['ok'] else 'NO'}; "
          f"closed by the edges meanwhile: {result['closed_by_server']} {result['closed_by_code'] or ''}; "
          f"load average {result['load_average']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edges", type=int, default=6)
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--sends", type=int, default=5, help="group messages, one at a time (default 5)")
    parser.add_argument("--workers-per-edge", type=int, default=1,
                        help="workers each edge starts for itself (run_wsserver --workers; default 1)")
    parser.add_argument("--workers", type=int, default=0,
                        help="with --broker: edges start none (--edge-only) and this many run_wsworker "
                             "processes, told of no edge, serve every edge they find in Redis")
    parser.add_argument("--per-client", type=int, default=12500,
                        help="most connections per client process (default 12500; each costs a descriptor)")
    parser.add_argument("--batch", type=int, default=100,
                        help="handshakes in flight per client process (default 100)")
    parser.add_argument("--broker", action="store_true", help="cluster mode on a private redis-server")
    parser.add_argument("--lease", type=float, help="with --broker: WS_BROKER_LEASE, seconds (default: the setting's)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds for each phase (default 300)")
    parser.add_argument("--node-path", help="node_modules holding ws (default DJANGO_WS_TEST_NODE_PATH)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON on the last line")
    args = parser.parse_args()
    if args.edges < 1 or args.connections < 1 or args.sends < 1 or args.per_client < 1 or args.batch < 1:
        parser.error("--edges, --connections, --sends, --per-client and --batch must be at least 1")
    if (args.workers or args.lease) and not args.broker:
        parser.error("--workers and --lease are for cluster mode: add --broker")
    if args.per_client > 19000:
        parser.error("--per-client: a process here has at most 20,000 descriptors")
    if args.broker:
        check_broker_support()
    # SIGTERM stops the run as Control-C does: edges, clients and Redis are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = measure(args)
    report(result)
    if args.json:
        print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
