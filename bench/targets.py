"""The servers under test: what each target is, how it starts and stops, which processes it has."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from django_ws.testing.server import WebSocketServer, free_port

from .procs import Subprocess, kill_group, process_tree, wait_for_port

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SERVERS = BENCH / "servers"
#: The broadcast scenario's room.
ROOM = "bench"


class Server:
    """A server under test: start(), url(route), pids(), roles(), stop()."""

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
        """pid -> the role its figures are reported under (edge, worker, uvicorn, ...)."""
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

    def __init__(self, mode: str, workers: int, env: dict | None = None, root: Path = REPO):
        # The django_ws of ``root`` (this checkout, or another commit's for --compare) comes first.
        env = dict(env or {}, PYTHONPATH=os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p))
        # reload=None: no --noreload, which a commit from before autoreload does not know (the bench
        # project has DEBUG = False, so autoreload is off either way).
        self.inner = WebSocketServer(settings="djws_project.settings", mode=mode, workers=workers,
                                     cwd=str(SERVERS), ready_timeout=60, env=env, reload=None)
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
        if process is None:
            return
        try:
            self.inner.stop(timeout=30)
        except AssertionError as exc:  # it was SIGKILLed after the timeout
            print(f"  note: {str(exc).splitlines()[0]}", flush=True)
        finally:
            kill_group(process, timeout=1)


class ChannelsServer(Server):
    """The Channels app under uvicorn (one process), plus a private redis-server for layer="redis"."""

    def __init__(self, consumer: str, layer: str, env: dict | None = None):
        self.consumer, self.layer, self.env = consumer, layer, env or {}
        self.port = free_port()
        self.app: Subprocess | None = None
        self.redis: Subprocess | None = None

    def start(self) -> None:
        env = dict(os.environ, **self.env,
                   PYTHONPATH=os.pathsep.join([str(SERVERS), os.environ.get("PYTHONPATH", "")]),
                   DJANGO_SETTINGS_MODULE="channels_app.settings", BENCH_CHANNEL_LAYER=self.layer)
        if self.layer == "redis":
            redis_port = free_port()
            self.redis = Subprocess(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                                     "--save", "", "--appendonly", "no"], cwd=SERVERS)
            wait_for_port(redis_port, self.redis.process)
            env["BENCH_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        self.app = Subprocess([sys.executable, "-m", "uvicorn", "channels_app.asgi:application",
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
    """Plain Tornado (servers/tornado_echo.py), no relay: the ceiling; or ``script`` another one-file server."""

    def __init__(self, env: dict | None = None, script: str = "tornado_echo.py"):
        self.port = free_port()
        self.script = script
        self.proc: Subprocess | None = None

    def start(self) -> None:
        self.proc = Subprocess([sys.executable, str(SERVERS / self.script), "--port", str(self.port)])
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


class Target:
    """One server configuration under test."""

    def __init__(self, name: str, label: str, kind: str, **options):
        self.name, self.label, self.kind, self.options = name, label, kind, options

    def server(self, env: dict | None = None) -> Server:
        """A new server of this target (not started); ``env`` is added to its environment."""
        if self.kind == "djws":
            return DjwsServer(env=env, **self.options)
        if self.kind == "channels":
            return ChannelsServer(env=env, **self.options)
        return TornadoServer(env=env, **self.options)

    def routes(self) -> dict[str, str]:
        """Scenario route -> URL path. ``{room}`` in the chat's is the room's name."""
        if self.kind == "channels":
            flavour = self.options["consumer"]
            return {"echo": f"socket/{flavour}/echo", "room": f"socket/{flavour}/room/{ROOM}",
                    "chat": f"socket/{flavour}/chat/{{room}}"}
        routes = {"echo": "socket/echo", "room": f"socket/room/{ROOM}"}
        if self.kind == "djws":
            routes["chat"] = "socket/chat/{room}"
        return routes


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
    Target("raw", "RFC 6455 on uvloop's transports, no framework (what the client and kernel allow)", "tornado",
           script="raw_ceiling.py"),
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
        skipped["djws-gevent"] = "gevent is not installed (pip install gevent)"
    for module in ("channels", "uvicorn"):
        if importlib.util.find_spec(module) is None:
            for target in TARGETS:
                if target.kind == "channels":
                    skipped[target.name] = f"{module} is not installed (see bench/README.rst)"
    return skipped


def baseline_targets(targets: list[Target], commit: str) -> list[Target]:
    """``targets`` with, after each django-ws one, the same server running ``commit``'s django_ws.

    The commit's django_ws/ is exported to a temporary directory (git
    archive), so both run side by side in the same rounds: an A/B whose
    ratio is taken within each round like any other.
    """
    short = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", commit], capture_output=True, text=True,
                           check=False).stdout.strip()
    if not short:
        raise SystemExit(f"--compare: {commit!r} is not a commit of {REPO}")
    root = Path(tempfile.mkdtemp(prefix=f"django-ws-{short}."))
    archive = subprocess.run(["git", "-C", str(REPO), "archive", short, "django_ws"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    out = []
    for target in targets:
        out.append(target)
        if target.kind == "djws":
            out.append(Target(f"{target.name}@{short}", f"{target.label}, django_ws of {short}", "djws",
                              root=root, **target.options))
    return out


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
