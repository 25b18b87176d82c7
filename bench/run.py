#!/usr/bin/env python3
"""Benchmark django-ws against Django Channels 4 and plain Tornado, in one run.

    python bench/run.py                       # everything (several minutes)
    python bench/run.py --quick               # a short smoke run
    python bench/run.py --only djws,channels-async --scenarios echo,hold

Every server runs on this machine, on 127.0.0.1, driven by the same client
(the wsload client: Node.js and the ``ws`` library; see bench/README.rst for
where it is looked for). Each (scenario, server) pair gets a freshly started
server, so no scenario inherits another's memory or warm caches. The runner
prints one table per scenario, each figure with its ratio to Channels'
figure for the same scenario, checks the project's targets, and writes every
raw figure to bench/results/<timestamp>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SERVERS = BENCH / "servers"
RESULTS = BENCH / "results"
DEFAULT_CLIENT = REPO.parent / "shared" / "tools" / "wsload" / "wsload"
ROOM = "bench"

sys.path.insert(0, str(REPO))
from django_ws.testing.server import WebSocketServer, free_port

# -- what runs -------------------------------------------------------------------

SCENARIOS = ("echo", "broadcast", "hold")

#: Scenario parameters: the full run and --quick.
PARAMS = {
    "full": {
        "echo": {"conns": 50, "size": 64, "seconds": 10, "warmup": 1},
        "broadcast": {"receivers": 1000, "messages": 100, "window": 4, "size": 64, "timeout": 150},
        "hold": {"conns": 10000, "seconds": 8, "batch": 200},
    },
    "quick": {
        "echo": {"conns": 20, "size": 64, "seconds": 3, "warmup": 1},
        "broadcast": {"receivers": 200, "messages": 20, "window": 4, "size": 64, "timeout": 30},
        "hold": {"conns": 1000, "seconds": 3, "batch": 200},
    },
}


class Target:
    """One server configuration under test."""

    def __init__(self, name: str, label: str, kind: str, **options):
        self.name, self.label, self.kind, self.options = name, label, kind, options

    def server(self) -> Server:
        if self.kind == "djws":
            return DjwsServer(**self.options)
        if self.kind == "channels":
            return ChannelsServer(**self.options)
        return TornadoServer()

    def routes(self) -> dict:
        if self.kind == "channels":
            flavour = self.options["consumer"]
            return {"echo": f"socket/{flavour}/echo", "room": f"socket/{flavour}/room/{ROOM}"}
        return {"echo": "socket/echo", "room": f"socket/room/{ROOM}"}


TARGETS = [
    Target("djws-threaded", "django-ws threaded, 1 worker", "djws", mode="threaded", workers=1),
    Target("djws-gevent", "django-ws gevent, 1 worker", "djws", mode="gevent", workers=1),
    Target("djws-threaded-2w", "django-ws threaded, 2 workers", "djws", mode="threaded", workers=2),
    Target("channels-sync", "Channels WebsocketConsumer (in-memory layer)", "channels", consumer="sync", layer="memory"),
    Target("channels-async", "Channels AsyncWebsocketConsumer (in-memory layer)", "channels", consumer="async",
           layer="memory"),
    Target("channels-async-redis", "Channels AsyncWebsocketConsumer (channels_redis)", "channels", consumer="async",
           layer="redis"),
    Target("tornado", "plain Tornado, no relay (ceiling)", "tornado"),
]
#: The figures every ratio is taken against: the main reference, then the other.
REFERENCE, SECOND_REFERENCE = "channels-async", "channels-sync"


def skipped_targets() -> dict[str, str]:
    """Targets this machine cannot run, and why."""
    skipped = {}
    if shutil.which("redis-server") is None:
        skipped["channels-async-redis"] = "redis-server is not on PATH (apt-get install redis-server)"
    elif importlib.util.find_spec("channels_redis") is None:
        skipped["channels-async-redis"] = "channels_redis is not installed (pip install channels-redis)"
    if importlib.util.find_spec("gevent") is None:
        skipped["djws-gevent"] = "gevent is not installed (pip install -e '.[gevent]')"
    for module, extra in (("channels", "channels"), ("uvicorn", "uvicorn")):
        if importlib.util.find_spec(module) is None:
            for target in TARGETS:
                if target.kind == "channels":
                    skipped[target.name] = f"{extra} is not installed (pip install -e '.[bench]')"
    return skipped


# -- processes ---------------------------------------------------------------------


def children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    return children


def process_tree(roots: list[int]) -> list[int]:
    """``roots`` and all their descendants (processes, not threads)."""
    children = children_map()
    pids, i = list(roots), 0
    while i < len(pids):
        pids.extend(children.get(pids[i], ()))
        i += 1
    return pids


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def listen_overflows() -> int | None:
    """The kernel's count of connections dropped because a listen queue was full (all sockets)."""
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:]))
            return int(table["ListenOverflows"]) if "ListenOverflows" in table else None
    return None


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"server did not listen on 127.0.0.1:{port} within {timeout}s")


def kill_group(process: subprocess.Popen | None, timeout: float = 15.0) -> None:
    """SIGTERM a process group started with start_new_session, then SIGKILL what is left."""
    if process is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


class Server:
    """A server under test: start(), url(route), pids(), stop()."""

    port: int

    def start(self) -> None:
        raise NotImplementedError

    def url(self, route: str) -> str:
        return f"ws://127.0.0.1:{self.port}/{route}"

    def roots(self) -> list[int]:
        raise NotImplementedError

    def pids(self) -> list[int]:
        return process_tree(self.roots())

    def roles(self) -> dict[int, str]:
        return {pid: "server" for pid in self.pids()}

    def stop(self) -> None:
        raise NotImplementedError

    def output(self) -> list[str]:
        """What the server printed so far."""
        return []

    def notable_output(self, limit: int = 30) -> list[str]:
        """The last warnings and errors the server printed (for the JSON)."""
        words = ("warning", "error", "lost", "silent", "traceback", "exception", "killed", "exited")
        return [line for line in self.output() if any(w in line.lower() for w in words)][-limit:]


class DjwsServer(Server):
    """``manage.py run_wsserver`` on the bench project, through WebSocketServer."""

    def __init__(self, mode: str, workers: int):
        self.inner = WebSocketServer(settings="djws_project.settings", mode=mode, workers=workers,
                                     cwd=str(SERVERS), ready_timeout=60)
        self.port = self.inner.port

    def start(self) -> None:
        self.inner.start()

    def roots(self) -> list[int]:
        return [self.inner.process.pid]

    def output(self) -> list[str]:
        return list(self.inner.lines)

    def roles(self) -> dict[int, str]:
        edge = self.inner.process.pid
        return {pid: "edge" if pid == edge else "worker" for pid in self.pids()}

    def stop(self) -> None:
        process = self.inner.process
        try:
            self.inner.stop(timeout=30)
        except AssertionError as exc:  # it was SIGKILLed after the timeout
            print(f"  note: {str(exc).splitlines()[0]}", flush=True)
        finally:
            kill_group(process, timeout=1)


class _Subprocess:
    """A helper process in its own session, with its output in a temporary file."""

    def __init__(self, command: list[str], env: dict | None = None, cwd: Path | None = None):
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed by stop()/finish()
        self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)

    def output(self, lines: int = 30) -> str:
        self.log.seek(0)
        return "".join(self.log.readlines()[-lines:])

    def stop(self) -> None:
        try:
            kill_group(self.process)
        finally:
            self.log.close()


class ChannelsServer(Server):
    """The Channels app under uvicorn (one process), plus a private redis-server for layer="redis"."""

    def __init__(self, consumer: str, layer: str):
        self.consumer, self.layer = consumer, layer
        self.port = free_port()
        self.app: _Subprocess | None = None
        self.redis: _Subprocess | None = None

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SERVERS), os.environ.get("PYTHONPATH", "")]),
                   DJANGO_SETTINGS_MODULE="channels_app.settings", BENCH_CHANNEL_LAYER=self.layer)
        if self.layer == "redis":
            redis_port = free_port()
            self.redis = _Subprocess(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"], cwd=SERVERS)
            wait_for_port(redis_port, self.redis.process)
            env["BENCH_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        self.app = _Subprocess([sys.executable, "-m", "uvicorn", "channels_app.asgi:application",
                                "--host", "127.0.0.1", "--port", str(self.port), "--lifespan", "off",
                                "--log-level", "warning", "--no-access-log"], env=env, cwd=SERVERS)
        try:
            wait_for_port(self.port, self.app.process)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; uvicorn printed:\n{self.app.output()}") from None

    def roots(self) -> list[int]:
        return [p.process.pid for p in (self.app, self.redis) if p is not None]

    def output(self) -> list[str]:
        return self.app.output(200).splitlines() if self.app else []

    def roles(self) -> dict[int, str]:
        redis = {self.redis.process.pid} if self.redis else set()
        return {pid: "redis" if pid in redis else "uvicorn" for pid in self.pids()}

    def stop(self) -> None:
        try:
            if self.app:
                self.app.stop()
        finally:
            if self.redis:
                self.redis.stop()


class TornadoServer(Server):
    def __init__(self):
        self.port = free_port()
        self.proc: _Subprocess | None = None

    def start(self) -> None:
        self.proc = _Subprocess([sys.executable, str(SERVERS / "tornado_echo.py"), "--port", str(self.port)])
        try:
            wait_for_port(self.port, self.proc.process)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; it printed:\n{self.proc.output()}") from None

    def roots(self) -> list[int]:
        return [self.proc.process.pid]

    def output(self) -> list[str]:
        return self.proc.output(200).splitlines() if self.proc else []

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()


def tree_rss(server: Server) -> int:
    return sum(rss_bytes(pid) for pid in server.pids())


def rss_by_role(server: Server) -> dict[str, int]:
    roles: dict[str, int] = {}
    for pid, role in server.roles().items():
        roles[role] = roles.get(role, 0) + rss_bytes(pid)
    return roles


def tree_cpu(server: Server) -> float:
    return sum(cpu_seconds(pid) for pid in server.pids())


def tree_fds(server: Server) -> int:
    return sum(fd_count(pid) for pid in server.pids())


# -- the client ----------------------------------------------------------------------


class ClientRun:
    """One wsload run in its own process group; ``finish()`` returns its JSON."""

    def __init__(self, client: str, scenario: str, url: str, params: dict, timeout: float):
        args = [client, scenario, "--url", url]
        for key, value in params.items():
            args += [f"--{key}", str(value)]
        self.command = args
        self.timeout = timeout
        self.out = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed by stop()/finish()
        self.err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed by stop()/finish()
        self.started = time.monotonic()
        self.process = subprocess.Popen(args, stdout=self.out, stderr=self.err, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        self.rusage = None
        self.returncode = None

    def running(self) -> bool:
        if self.returncode is not None:
            return False
        pid, status, rusage = os.wait4(self.process.pid, os.WNOHANG)
        if pid == 0:
            return True
        self.returncode, self.rusage = os.waitstatus_to_exitcode(status), rusage
        self.process.returncode = self.returncode
        return False

    def finish(self) -> dict:
        try:
            while self.running():
                if time.monotonic() - self.started > self.timeout:
                    kill_group(self.process, timeout=2)
                    raise RuntimeError(f"the client did not finish within {self.timeout:.0f}s")
                time.sleep(0.05)
            wall = time.monotonic() - self.started
            self.out.seek(0)
            self.err.seek(0)
            stdout, stderr = self.out.read(), self.err.read()
            lines = [line for line in stdout.splitlines() if line.strip()]
            if self.returncode != 0 or not lines:
                raise RuntimeError(f"the client failed (exit {self.returncode}): {stderr.strip()[-500:]}")
            result = json.loads(lines[-1])
            result["client_cpu_s"] = round(self.rusage.ru_utime + self.rusage.ru_stime, 2)
            result["client_wall_s"] = round(wall, 2)
            return result
        finally:
            if self.returncode is None:
                kill_group(self.process, timeout=2)
            self.out.close()
            self.err.close()


# -- scenarios ------------------------------------------------------------------------


def role_cpu(server: Server) -> dict[str, float]:
    """CPU seconds so far by role (edge, worker, uvicorn, ...), summed over its processes."""
    by_role: dict[str, float] = {}
    for pid, role in server.roles().items():
        by_role[role] = by_role.get(role, 0.0) + cpu_seconds(pid)
    return by_role


def run_echo(server: Server, target: Target, client: str, params: dict, profile_dir: Path | None) -> dict:
    roles0 = role_cpu(server)
    cpu0, t0 = tree_cpu(server), time.monotonic()
    run = ClientRun(client, "echo", server.url(target.routes()["echo"]), params,
                    timeout=params["seconds"] + params["warmup"] + 60)
    profiles = []
    if profile_dir is not None and target.kind == "djws":
        time.sleep(params["warmup"] + 0.5)
        duration = max(1, int(params["seconds"]) - 2)
        profiles = [start_profile(pid, role, target.name, duration, profile_dir)
                    for pid, role in server.roles().items()]
    result = run.finish()
    result["server_cpu_s"] = round(tree_cpu(server) - cpu0, 2)
    result["server_wall_s"] = round(time.monotonic() - t0, 2)
    if result.get("round_trips"):
        # Where the server's CPU goes, per round trip (warm-up included, so a slight overestimate).
        result["cpu_us_per_round_trip"] = {
            role: round((seconds - roles0.get(role, 0.0)) * 1e6 / result["round_trips"], 1)
            for role, seconds in role_cpu(server).items()}
    if profiles:
        result["profile"] = [finish_profile(p) for p in profiles]
    return result


def run_broadcast(server: Server, target: Target, client: str, params: dict, profile_dir) -> dict:
    cpu0 = tree_cpu(server)
    run = ClientRun(client, "broadcast", server.url(target.routes()["room"]), params,
                    timeout=params["timeout"] + params["receivers"] / 20 + 60)
    result = run.finish()
    result["server_cpu_s"] = round(tree_cpu(server) - cpu0, 2)
    return result


def run_hold(server: Server, target: Target, client: str, params: dict, profile_dir) -> dict:
    """Open ``conns`` connections, sum the server's RSS before and after, then a round trip on each.

    The client holds the connections ``seconds`` after the last one opened.
    Opening is seen from here as the server's file descriptors growing by
    ``conns``; memory is sampled a little after that, before the round trips.
    """
    conns = params["conns"]
    time.sleep(1.0)
    rss_before, fds_before, pids_before = tree_rss(server), tree_fds(server), len(server.pids())
    roles_before, roles_after = rss_by_role(server), {}
    run = ClientRun(client, "hold", server.url(target.routes()["echo"]), params,
                    timeout=conns / 20 + params["seconds"] + 120)
    grown, last_growth = 0, time.monotonic()
    while run.running():
        grown_now = tree_fds(server) - fds_before
        if grown_now > grown:
            grown, last_growth = grown_now, time.monotonic()
        if grown >= conns or (grown > 0 and time.monotonic() - last_growth > 3.0):
            break
        time.sleep(0.25)
    rss_after = None
    if run.running():
        time.sleep(min(2.0, params["seconds"] / 3))  # let the last handlers settle
        rss_after, roles_after = tree_rss(server), rss_by_role(server)
    result = run.finish()
    opened = result.get("opened") or 0
    result["server_processes"] = pids_before
    result["server_fds_grown"] = grown
    result["rss_before_bytes"] = rss_before
    result["rss_after_bytes"] = rss_after
    if rss_after is not None and opened:
        result["rss_per_conn_kb"] = round((rss_after - rss_before) / opened / 1024, 2)
        result["rss_per_conn_kb_by_role"] = {
            role: round((roles_after.get(role, 0) - roles_before.get(role, 0)) / opened / 1024, 2)
            for role in roles_after}
    return result


RUNNERS = {"echo": run_echo, "broadcast": run_broadcast, "hold": run_hold}


# -- profiling (--profile) ------------------------------------------------------------------


def start_profile(pid: int, role: str, target: str, duration: int, directory: Path) -> dict:
    out = directory / f"{target}-{role}-{pid}.txt"
    command = ["py-spy", "record", "--pid", str(pid), "--duration", str(duration), "--rate", "200",
               "--nonblocking", "--gil", "--format", "raw", "--output", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    return {"pid": pid, "role": role, "file": out, "process": process, "duration": duration}


def finish_profile(p: dict) -> dict:
    process = p["process"]
    try:
        _, err = process.communicate(timeout=p["duration"] + 30)
    except subprocess.TimeoutExpired:
        kill_group(process, timeout=1)
        err = "py-spy did not finish"
    summary = {"pid": p["pid"], "role": p["role"], "file": str(p["file"].relative_to(REPO))}
    if not p["file"].exists():
        summary["error"] = (err or "no output").strip()[-300:]
        return summary
    summary.update(summarize_collapsed(p["file"].read_text()))
    return summary


def _frame_name(frame: str) -> str:
    """'send_multipart (zmq/sugar/socket.py:701)' -> 'send_multipart (zmq/sugar/socket.py)'."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    parts = where.split("/")
    for anchor in ("site-packages", "lib"):
        if anchor in parts:
            parts = parts[len(parts) - parts[::-1].index(anchor):]
            break
    return f"{name} ({'/'.join(parts[-3:])})"


def summarize_collapsed(text: str, top: int = 15) -> dict:
    """Own-time and total-time shares of the functions in py-spy's raw (collapsed) output."""
    own, total, samples = Counter(), Counter(), 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame_name(f) for f in stack.split(";") if " (" in f]
        if not frames:
            continue
        samples += n
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n

    def share(counter):
        return [[name, round(100.0 * n / samples, 1)] for name, n in counter.most_common(top)]

    return {"samples": samples, "own_pct": share(own) if samples else [], "total_pct": share(total) if samples else []}


# -- the machine -----------------------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _command_output(command: list[str]) -> str | None:
    try:
        return subprocess.run(command, check=False, capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def machine_info(client: str) -> dict:
    cpu_model = None
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_kb = None
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
                break
    ws_version = None
    ws_package = Path(client).resolve().parent / "node_modules" / "ws" / "package.json"
    with contextlib.suppress(OSError, ValueError):
        ws_version = json.loads(ws_package.read_text())["version"]
    import zmq

    versions = {name: _version(dist) for name, dist in (
        ("django", "Django"), ("django-ws", "django-ws"), ("tornado", "tornado"), ("pyzmq", "pyzmq"),
        ("gevent", "gevent"), ("channels", "channels"), ("channels_redis", "channels-redis"),
        ("asgiref", "asgiref"), ("uvicorn", "uvicorn"), ("uvloop", "uvloop"), ("httptools", "httptools"),
        ("websockets", "websockets"), ("daphne", "daphne"))}
    versions["libzmq"] = zmq.zmq_version()
    versions["python"] = platform.python_version()
    versions["node"] = _command_output(["node", "--version"])
    versions["ws (client)"] = ws_version
    if shutil.which("redis-server"):
        versions["redis-server"] = _command_output(["redis-server", "--version"])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1) if mem_kb else None,
        "kernel": platform.release(),
        "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "versions": versions,
    }


def source_state() -> dict:
    """Which django-ws is measured: the commit, files changed since, and a digest of django_ws/."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((REPO / "django_ws").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    state = {"django_ws_sha256": digest.hexdigest()[:16]}
    head = _command_output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    if head:
        state["commit"] = head
        changed = _command_output(["git", "-C", str(REPO), "status", "--porcelain", "--", "django_ws"])
        state["django_ws_uncommitted"] = [line.split(maxsplit=1)[-1] for line in (changed or "").splitlines()]
    return state


def raise_nofile(needed: int) -> int:
    """Raise this process's (and so its children's) open-file limit as far as allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if want > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < needed:
        print(f"warning: open-file limit is {soft}, below the {needed} the hold scenario needs; "
              "raise the hard limit (ulimit -Hn) or use --quick", flush=True)
    return soft


# -- the table ------------------------------------------------------------------------------------

#: Per scenario: (column title, result key, format). Ratios are figure / reference figure.
COLUMNS = {
    "echo": [("round trips/s", "rate_per_s", "{:,.0f}"), ("p50 ms", "p50_ms", "{:.2f}"),
             ("p99 ms", "p99_ms", "{:.2f}")],
    "broadcast": [("deliveries/s", "deliveries_per_s", "{:,.0f}"), ("p50 ms", "p50_ms", "{:.0f}"),
                  ("p99 ms", "p99_ms", "{:.0f}")],
    "hold": [("open s", "open_seconds", "{:.2f}"), ("KB/conn", "rss_per_conn_kb", "{:.1f}"),
             ("rt p99 ms", "p99_ms", "{:.0f}")],
}
#: Extra columns without ratios.
NOTES = {
    "echo": [("srv CPU", lambda r: f"{r['server_cpu_s'] / r['server_wall_s']:.0%}" if r.get("server_wall_s") else "-"),
             ("cli CPU", lambda r: f"{r['client_cpu_s'] / r['client_wall_s']:.0%}" if r.get("client_wall_s") else "-"),
             ("CPU us/rt", lambda r: " + ".join(f"{role} {us:.0f}" for role, us in
                                                  r.get("cpu_us_per_round_trip", {}).items()) or "-")],
    "broadcast": [("lost", lambda r: f"{r.get('lost', 0):,}"),
                  ("sent", lambda r: f"{r.get('sent', '-')}/{r.get('messages', '-')}")],
    "hold": [("opened", lambda r: f"{r.get('opened', 0)}/{r.get('conns', '-')}"),
             ("answered", lambda r: f"{r.get('answered', 0)}"),
             ("SYN drops", lambda r: f"{r.get('listen_overflows', '-')}")],
}


def ratio(value, ref) -> str:
    if value is None or ref in (None, 0):
        return "-"
    return f"{value / ref:.2f}x"


def render_tables(results: dict, targets: list[Target], scenarios: list[str], params: dict) -> str:
    out = []
    for scenario in scenarios:
        p = params[scenario]
        if scenario == "echo":
            header = f"echo: {p['conns']} connections, closed loop, {p['size']}-byte frames, {p['seconds']} s"
        elif scenario == "broadcast":
            header = (f"broadcast: {p['receivers']} receivers in one group, {p['messages']} messages "
                      f"(window {p['window']})")
        else:
            header = f"hold: {p['conns']:,} idle connections, then one round trip on each"
        ref = results.get(REFERENCE, {}).get(scenario, {})
        ref2 = results.get(SECOND_REFERENCE, {}).get(scenario, {})
        titles = ["target"]
        for title, _, _ in COLUMNS[scenario]:
            titles += [title, "/async", "/sync"]
        titles += [title for title, _ in NOTES[scenario]]
        rows = []
        for target in targets:
            r = results.get(target.name, {}).get(scenario)
            if r is None:
                continue
            row = [target.name]
            if "error" in r:
                rows.append(row + ["ERROR: " + r["error"].splitlines()[0][:90]])
                continue
            for _, key, fmt in COLUMNS[scenario]:
                value = r.get(key)
                row += [fmt.format(value) if value is not None else "-", ratio(value, ref.get(key)),
                        ratio(value, ref2.get(key))]
            row += [fn(r) for _, fn in NOTES[scenario]]
            rows.append(row)
        widths = [max(len(str(x[i])) for x in [titles] + [r for r in rows if len(r) == len(titles)])
                  for i in range(len(titles))]
        out.append(header)
        out.append("  ".join(t.rjust(w) if i else t.ljust(w) for i, (t, w) in enumerate(zip(titles, widths))))
        out.append("  ".join("-" * w for w in widths))
        for row in rows:
            if len(row) != len(titles):
                out.append(f"{row[0].ljust(widths[0])}  {row[1]}")
            else:
                out.append("  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                                     for i, (c, w) in enumerate(zip(row, widths))))
        out.append("")
    out.append("Ratios are this figure / the same figure of channels-async (/async) or channels-sync (/sync):")
    out.append("above 1 is better for rates, below 1 is better for times (ms, s) and memory (KB/conn).")
    return "\n".join(out)


def check_targets(results: dict) -> list[dict]:
    """The project's goals, each judged against this run's figures."""
    checks = []

    def get(name, scenario, key):
        return results.get(name, {}).get(scenario, {}).get(key)

    def add(target, goal, value, ref, ok):
        checks.append({"target": target, "goal": goal, "value": value, "reference": ref,
                       "met": None if ok is None else bool(ok)})

    djws = [n for n in results if n.startswith("djws-")]
    for name in djws:
        rate, p99 = get(name, "echo", "rate_per_s"), get(name, "echo", "p99_ms")
        sync_rate, async_rate = get(SECOND_REFERENCE, "echo", "rate_per_s"), get(REFERENCE, "echo", "rate_per_s")
        async_p99 = get(REFERENCE, "echo", "p99_ms")
        if rate is not None:
            add(name, "echo round trips/s >= 2x channels-sync", rate, sync_rate,
                None if not sync_rate else rate >= 2 * sync_rate)
            add(name, "echo round trips/s >= 1.0x channels-async", rate, async_rate,
                None if not async_rate else rate >= async_rate)
            add(name, "echo p99 <= channels-async p99", p99, async_p99,
                None if async_p99 is None or p99 is None else p99 <= async_p99)
        rate, lost = get(name, "broadcast", "deliveries_per_s"), get(name, "broadcast", "lost")
        ref = get(REFERENCE, "broadcast", "deliveries_per_s")
        if rate is not None:
            add(name, "broadcast deliveries/s >= 5x channels-async (in-memory group_send)", rate, ref,
                None if not ref else rate >= 5 * ref)
            add(name, "broadcast: no loss", lost, 0, lost == 0)
        opened_s, ref_s = get(name, "hold", "open_seconds"), get(REFERENCE, "hold", "open_seconds")
        if opened_s is not None:
            add(name, "hold: opening all >= 5x faster than channels-async", opened_s, ref_s,
                None if not ref_s else opened_s * 5 <= ref_s)
            kb = get(name, "hold", "rss_per_conn_kb")
            limit = 25 if "gevent" in name else 40
            add(name, f"hold: <= {limit} KB per connection", kb, limit, None if kb is None else kb <= limit)
            answered, opened = get(name, "hold", "answered"), get(name, "hold", "conns")
            add(name, "hold: every connection answered its round trip", answered, opened, answered == opened)
    return checks


def render_checks(checks: list[dict]) -> str:
    lines = ["Targets:"]
    for c in checks:
        mark = {True: "met", False: "MISSED", None: "n/a"}[c["met"]]
        value = c["value"] if not isinstance(c["value"], float) else round(c["value"], 2)
        ref = c["reference"] if not isinstance(c["reference"], float) else round(c["reference"], 2)
        lines.append(f"  [{mark:>6}] {c['target']}: {c['goal']} ({value} vs {ref})")
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------------


def select_targets(only: str | None, skipped: dict) -> list[Target]:
    if not only:
        return [t for t in TARGETS if t.name not in skipped]
    wanted = [name.strip() for name in only.split(",") if name.strip()]
    chosen = []
    for name in wanted:
        matches = [t for t in TARGETS if t.name == name] or [t for t in TARGETS if t.name.startswith(name + "-")]
        if not matches:
            raise SystemExit(f"--only: unknown target {name!r}; known: {', '.join(t.name for t in TARGETS)}")
        chosen += [t for t in matches if t not in chosen]
    return [t for t in TARGETS if t in chosen and t.name not in skipped]


def find_client(path: str | None) -> str:
    client = path or os.environ.get("WSLOAD") or str(DEFAULT_CLIENT)
    if not (os.path.isfile(client) and os.access(client, os.X_OK)):
        raise SystemExit(
            f"wsload client not found at {client}.\n"
            "Point the benchmark at it with --client PATH or the WSLOAD environment variable "
            "(see bench/README.rst).")
    if shutil.which("node") is None:
        raise SystemExit("the wsload client needs Node.js (node) on PATH")
    return client


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short smoke run: fewer connections and seconds")
    parser.add_argument("--only", metavar="NAME[,NAME]",
                        help="targets to run (a prefix such as 'djws' or 'channels' selects a family): "
                             + ", ".join(t.name for t in TARGETS))
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), metavar="echo,broadcast,hold",
                        help="scenarios to run (default: all three)")
    parser.add_argument("--client", default=None, metavar="PATH",
                        help=f"the wsload client (default: $WSLOAD, else {os.path.relpath(DEFAULT_CLIENT, REPO)} "
                             "relative to the repository root)")
    parser.add_argument("--profile", action="store_true",
                        help="sample the django-ws processes with py-spy during echo (figures are then perturbed)")
    parser.add_argument("--output", default=None, metavar="FILE",
                        help="where to write the JSON (default bench/results/<timestamp>.json)")
    args = parser.parse_args(argv)

    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise SystemExit(f"--scenarios: unknown {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    scenarios = [s for s in SCENARIOS if s in scenarios]
    client = find_client(args.client)
    params = PARAMS["quick" if args.quick else "full"]
    skipped = skipped_targets()
    targets = select_targets(args.only, skipped)
    if args.profile and shutil.which("py-spy") is None:
        raise SystemExit("--profile needs py-spy on PATH (pip install py-spy)")
    nofile = raise_nofile(params["hold"]["conns"] + 1024 if "hold" in scenarios else 1024)

    signal.signal(signal.SIGTERM, _on_sigterm)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    output = Path(args.output) if args.output else RESULTS / f"{stamp}.json"
    profile_dir = None
    if args.profile:
        profile_dir = RESULTS / f"{stamp}-profiles"
        profile_dir.mkdir(parents=True, exist_ok=True)

    machine = machine_info(client)
    print(f"django-ws benchmark ({'quick' if args.quick else 'full'} run), {machine['nproc']} x "
          f"{machine['cpu_model']}, {machine['memory_gib']} GiB, open-file limit {nofile}", flush=True)
    print(f"client: {client}", flush=True)
    source = source_state()
    print(f"django-ws: commit {source.get('commit', '?')}, django_ws/ digest {source['django_ws_sha256']}"
          + (f", {len(source['django_ws_uncommitted'])} files changed since" if source.get("django_ws_uncommitted")
             else ""), flush=True)
    for name, why in skipped.items():
        if not args.only or name in [t.name for t in select_targets(args.only, {})]:
            print(f"skipped {name}: {why}", flush=True)
    print(f"targets: {', '.join(t.name for t in targets)}; scenarios: {', '.join(scenarios)}", flush=True)

    report = {
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([os.path.relpath(sys.argv[0], REPO) if argv is None else "bench/run.py",
                             *(sys.argv[1:] if argv is None else argv)]),
        "quick": args.quick,
        "machine": machine,
        "source": source_state(),
        "params": {s: params[s] for s in scenarios},
        "targets": {t.name: t.label for t in targets},
        "skipped": skipped,
        "results": {},
    }
    results = report["results"]
    interrupted = False
    try:
        for scenario in scenarios:
            for target in targets:
                started = time.monotonic()
                print(f"[{scenario}] {target.name} ...", end=" ", flush=True)
                server = target.server()
                notable = []
                try:
                    server.start()
                    overflows = listen_overflows()
                    result = RUNNERS[scenario](server, target, client, params[scenario], profile_dir)
                    if overflows is not None:
                        # SYNs the kernel dropped because the server's accept queue was full;
                        # each costs the client a retransmission a second later.
                        result["listen_overflows"] = listen_overflows() - overflows
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # noqa: BLE001 - one failure must not cost the other figures
                    result = {"error": f"{type(exc).__name__}: {exc}"}
                finally:
                    with contextlib.suppress(Exception):
                        notable = server.notable_output()
                    server.stop()
                if notable:
                    result["server_log"] = notable
                results.setdefault(target.name, {})[scenario] = result
                print(f"{summary_line(scenario, result)} ({time.monotonic() - started:.0f} s)", flush=True)
                time.sleep(1.0)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted; servers stopped", flush=True)
    report["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    if source_state()["django_ws_sha256"] != report["source"]["django_ws_sha256"]:
        report["source"]["changed_during_run"] = True
        print("warning: django_ws/ changed while the benchmark ran; its figures may mix versions", flush=True)
    report["interrupted"] = interrupted
    table = render_tables(results, targets, [s for s in scenarios if any(s in r for r in results.values())], params)
    checks = check_targets(results)
    report["table"] = table
    report["checks"] = checks
    print()
    print(table)
    if checks:
        print()
        print(render_checks(checks))
    if args.profile:
        print()
        print(render_profiles(results))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwrote {os.path.relpath(output, Path.cwd())}")
    return 130 if interrupted else 0


def summary_line(scenario: str, r: dict) -> str:
    if "error" in r:
        return "ERROR " + r["error"].splitlines()[0]
    if scenario == "echo":
        return f"{r['rate_per_s']:,} rt/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, mismatches {r['mismatches']}"
    if scenario == "broadcast":
        return (f"{r['deliveries_per_s']:,} deliveries/s, p99 {r['p99_ms']} ms, lost {r['lost']:,}, "
                f"sent {r['sent']}/{r['messages']}")
    kb = r.get("rss_per_conn_kb")
    return (f"opened {r['opened']}/{r['conns']} in {r['open_seconds']:.2f} s, "
            f"{'-' if kb is None else kb} KB/conn, answered {r['answered']}")


def render_profiles(results: dict) -> str:
    lines = ["Profiles (py-spy, echo scenario; share of samples):"]
    for name, by_scenario in results.items():
        for prof in by_scenario.get("echo", {}).get("profile", []):
            lines.append(f"  {name} {prof['role']} pid {prof['pid']} ({prof.get('samples', 0)} samples, "
                         f"{prof['file']})")
            if "error" in prof:
                lines.append(f"    error: {prof['error']}")
                continue
            lines.append("    own time:")
            lines += [f"      {pct:5.1f}%  {fn}" for fn, pct in prof["own_pct"][:10]]
            lines.append("    total time:")
            lines += [f"      {pct:5.1f}%  {fn}" for fn, pct in prof["total_pct"][:10]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
