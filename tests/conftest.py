import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from websockets.sync.client import connect

from django_ws.testing import WebSocketServer
from django_ws.testing.server import STRICT_WARNINGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = "tests.project.settings"

# Every process the tests start (servers, workers, manage.py commands) treats
# these warnings as errors, as pytest does here (pyproject.toml). pip, which
# the packaging tests run, gets an environment without it (tool_env()).
os.environ["PYTHONWARNINGS"] = STRICT_WARNINGS


@pytest.fixture(scope="session")
def server_db():
    """A migrated sqlite file for the servers the tests start (not pytest-django's)."""
    directory = tempfile.mkdtemp(prefix="django-ws-db-")
    path = os.path.join(directory, "server.sqlite3")
    env = dict(os.environ, DJANGO_SETTINGS_MODULE=SETTINGS, DJANGO_WS_TEST_DB=path, PYTHONPATH=ROOT)
    if not os.environ.get("DJANGO_WS_TEST_POSTGRES"):
        subprocess.run([sys.executable, "-m", "django", "migrate", "-v0"], env=env, cwd=ROOT, check=True)
    return path


def django_script(server_db, script: str) -> str:
    """Run ``script`` in ``manage.py shell`` against the servers' database (not pytest-django's); its last line."""
    env = dict(os.environ, DJANGO_SETTINGS_MODULE=SETTINGS, DJANGO_WS_TEST_DB=server_db, PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-m", "django", "shell", "-c", script], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def start_server(server_db, **kwargs) -> WebSocketServer:
    env = dict(kwargs.pop("env", {}))
    env.setdefault("DJANGO_WS_TEST_DB", server_db)
    kwargs.setdefault("fail_on_warnings", True)
    return WebSocketServer(settings=SETTINGS, cwd=ROOT, env=env, **kwargs).start()


@pytest.fixture
def make_server(server_db):
    """Start run_wsserver with the given options; each is stopped (and must exit 0) at teardown."""
    started = []

    def make(**kwargs):
        srv = start_server(server_db, **kwargs)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        expected = getattr(srv, "expected_returncode", 0)  # a test that kills a server says so
        assert srv.stop() == expected, f"run_wsserver did not exit with {expected} on SIGTERM"


#: Every way of running handlers; the behaviour suite runs against each one.
SERVER_CONFIGS = {
    "threaded": {"mode": "threaded"},
    "gevent": {"mode": "gevent"},
    "multiprocess": {"mode": "multiprocess", "extra_args": ("--max-processes=150",)},
    "threaded-3-workers": {"mode": "threaded", "workers": 3},
    # The other configurations run the edge on uvloop (WS_EVENT_LOOP "auto", installed with [test]).
    "threaded-asyncio-loop": {"mode": "threaded", "env": {"DJANGO_WS_EVENT_LOOP": "asyncio"}},
}


@pytest.fixture(scope="module", params=list(SERVER_CONFIGS))
def server(request, server_db):
    srv = start_server(server_db, **SERVER_CONFIGS[request.param])
    yield srv
    assert srv.stop() == 0


def require(condition: bool, why: str) -> None:
    """Skip a test whose optional part is missing, or fail under DJANGO_WS_REQUIRE_ALL (CI)."""
    if condition:
        return
    if os.environ.get("DJANGO_WS_REQUIRE_ALL"):
        pytest.fail(f"{why} (DJANGO_WS_REQUIRE_ALL is set, so this is a failure, not a skip)")
    pytest.skip(why)


class Observer:
    """A client of ObserverHandler: receives what handlers report (on_close ran, ...)."""

    def __init__(self, server):
        self.ws = connect(server.url("observe"))
        self.ws.send("hello")
        assert self.ws.recv(timeout=10) == "observing"
        self.seen = []

    def wait(self, timeout=10.0, **match):
        """Wait for a report whose fields equal ``match``; return it."""
        for report in self.seen:
            if all(report.get(k) == v for k, v in match.items()):
                self.seen.remove(report)
                return report
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no report matching {match} within {timeout}s; saw {self.seen}")
            try:
                report = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                continue
            if all(report.get(k) == v for k, v in match.items()):
                return report
            self.seen.append(report)

    def count(self, timeout=10.0, n=1, **match):
        return [self.wait(timeout, **match) for _ in range(n)]

    def close(self):
        self.ws.close()


@pytest.fixture
def observer(server):
    obs = Observer(server)
    yield obs
    obs.close()


@dataclasses.dataclass(frozen=True)
class Dist:
    """The built sdist and wheel that the packaging, tutorial and startproject tests install."""

    wheel: Path
    sdist: Path


@pytest.fixture(scope="session")
def dist(tmp_path_factory) -> Dist:
    """``$DJANGO_WS_DIST`` (tests/run.sh builds it), or a build of this checkout made for the run."""
    directory = os.environ.get("DJANGO_WS_DIST")
    if directory is None:
        require(os.path.isdir(os.path.join(ROOT, "django_ws")), "no DJANGO_WS_DIST and no package source to build")
        directory = str(tmp_path_factory.mktemp("dist"))
        build = subprocess.run([sys.executable, "-m", "build", "--outdir", directory, ROOT],
                               capture_output=True, text=True, check=False, env=tool_env())
        assert build.returncode == 0, f"python -m build failed:\n{build.stdout}\n{build.stderr}"
    wheels = sorted(Path(directory).glob("django_ws_edge-*-py3-none-any.whl"))
    sdists = sorted(Path(directory).glob("django_ws_edge-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, f"expected one wheel and one sdist in {directory}: {wheels + sdists}"
    return Dist(wheel=wheels[0].resolve(), sdist=sdists[0].resolve())


def make_venv(path: Path, *requirements: str) -> Path:
    """A new virtualenv at ``path`` with ``requirements`` pip-installed; returns its python.

    Nothing of this checkout is on its path: what it imports is what pip installed.
    """
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    python = path / "bin" / "python"
    result = subprocess.run([str(python), "-m", "pip", "install", "-q", *requirements],
                            capture_output=True, text=True, check=False, env=tool_env())
    assert result.returncode == 0, f"pip install {' '.join(requirements)} failed:\n{result.stdout}\n{result.stderr}"
    return python


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without what would put the checkout or the tests' settings on a path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")}
    env.update(extra)
    return env


def tool_env(**extra: str) -> dict[str, str]:
    """clean_env() for the tools the tests run (pip), whose own warnings are not this project's to fix."""
    env = clean_env(**extra)
    env.pop("PYTHONWARNINGS", None)
    return env


@dataclasses.dataclass(frozen=True)
class NodeClient:
    """What a test needs to run the installed django-ws client under Node."""

    node: str
    node_path: str  # a node_modules holding the ws package
    script: str  # the client file, as installed


def node_client(filename: str = "django-ws.js") -> NodeClient:
    """Node, the ws package (DJANGO_WS_TEST_NODE_PATH or NODE_PATH) and the installed client ``filename``."""
    import shutil

    import django_ws

    node = shutil.which("node")
    require(node is not None, "node is not installed")
    # A node_modules directory holding the ws package (npm install ws), as Node has no WebSocket client before 22.
    node_path = os.environ.get("DJANGO_WS_TEST_NODE_PATH") or os.environ.get("NODE_PATH", "")
    require(bool(node_path) and os.path.isdir(os.path.join(node_path, "ws")),
            f"no ws npm package in DJANGO_WS_TEST_NODE_PATH ({node_path or 'unset'}): npm install ws, and point it there")
    # The client as installed: the package's own static file, wherever the package is.
    script = os.path.join(os.path.dirname(django_ws.__file__), "static", "django_ws", filename)
    return NodeClient(node, node_path, script)


CHROMIUM = os.environ.get("DJANGO_WS_TEST_CHROMIUM", "/usr/bin/chromium")
#: As root, with no network: no sandbox, and none of Chromium's background calls home.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture
def chromium():
    """Debian's headless Chromium driven by Playwright (never a browser Playwright downloads)."""
    require(os.access(CHROMIUM, os.X_OK), f"no Chromium at {CHROMIUM} (set DJANGO_WS_TEST_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright is not installed (pip install playwright; never `playwright install`)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class RedisServer:
    """A private redis-server for a test: a free port, a temporary directory, no persistence.

    ``kill()`` is kill -9; ``start()`` again brings it back on the same port,
    empty, as a Redis restarted without persistence comes back. ``prefix``
    runs it elsewhere (``ip netns exec NAME``), ``bind`` is its address.
    """

    def __init__(self, directory: Path, *, port: int | None = None, bind: str = "127.0.0.1",
                 password: str | None = None, prefix: tuple[str, ...] = (), args: tuple[str, ...] = ()):
        from django_ws.testing.server import free_port

        self.binary = shutil.which("redis-server")
        self.directory, self.bind, self.password = directory, bind, password
        self.port = port or free_port()
        self.prefix, self.args = list(prefix), list(args)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.bind}:{self.port}/0"

    def command(self) -> list[str]:
        cmd = [*self.prefix, self.binary, "--port", str(self.port), "--bind", self.bind, "--save", "",
               "--appendonly", "no", "--dir", str(self.directory), "--protected-mode", "no"]
        if self.password:
            cmd += ["--requirepass", self.password]
        return cmd + self.args

    def start(self, timeout: float = 10.0) -> "RedisServer":
        with open(self.directory / f"redis-{self.port}.log", "ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"redis-server did not answer on {self.bind}:{self.port}; see {log.name}")
            time.sleep(0.05)
        return self

    def answers(self) -> bool:
        """Whether it answers a PING (or asks for the password, which is as good)."""
        import socket

        try:
            with socket.create_connection((self.bind, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def require_redis() -> None:
    require(shutil.which("redis-server") is not None, "redis-server is not installed (apt-get install redis-server)")
    try:
        import redis  # noqa: F401
    except ImportError:
        require(False, "redis-py is not installed (pip install 'django-ws-edge[redis]')")


@pytest.fixture
def redis_server(tmp_path):
    """A private redis-server, stopped at teardown."""
    require_redis()
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()
