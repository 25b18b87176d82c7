"""``WebSocketServer``: a real run_wsserver in a subprocess, for tests."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, get SIGTERM when the test process dies.

    A test run that is killed (Ctrl-C twice, a CI time-out) then leaves no
    servers behind, although each runs in its own session.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


#: The warnings that ``fail_on_warnings`` turns into errors (PYTHONWARNINGS syntax), and how they print.
STRICT_WARNINGS = "error::DeprecationWarning,error::PendingDeprecationWarning,error::ResourceWarning"
_WARNING_LINE = re.compile(r"\b(?:PendingDeprecation|Deprecation|Resource)Warning\b")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WebSocketServer:
    """Start ``manage.py run_wsserver`` with private endpoints and wait until it is ready.

    ::

        with WebSocketServer(settings="myproject.settings", workers=2) as server:
            url = server.url("chat/lobby")       # ws://127.0.0.1:PORT/socket/chat/lobby

    ``python`` is the interpreter that runs ``manage.py`` (this one by
    default), for instance a virtualenv's, to test a project as installed.

    Each server gets its own port and its own ipc endpoints in a private
    temporary directory, so servers started by parallel tests never meet.
    With ``project_endpoints=True`` it is given no endpoints and uses the
    project's own (its settings, or the default private to the project), as
    ``manage.py run_wsserver`` typed by hand would.
    ``lines`` collects everything the server printed; ``wait_for(text)``
    blocks until a line containing ``text`` appears. ``start()`` returns once
    the server has printed ``ready_text``.

    With ``fail_on_warnings=True`` the server (and every process it starts)
    runs with DeprecationWarning, PendingDeprecationWarning and
    ResourceWarning as errors, and ``stop()`` raises AssertionError if it
    printed one of them: a deprecation in your handlers, or in django-ws,
    fails the test that started the server, not next year's upgrade.

    ``reload`` is run_wsserver's autoreload: off by default (``--noreload``),
    so that a test's server never restarts its workers under it, even with
    ``DEBUG = True``; True passes ``--reload``; None passes neither, and the
    project's ``DEBUG`` decides, as a ``run_wsserver`` typed by hand.
    """

    ready_text = "Ready:"

    def __init__(self, *, settings: str | None = None, mode: str = "threaded", workers: int = 1,
                 websocket_url: str = "/socket", extra_args: tuple = (), env: dict | None = None,
                 cwd: str | None = None, ready_timeout: float = 30.0, edge_only: bool = False,
                 push_socket: str | None = None, sub_socket: str | None = None, port: int | None = None,
                 python: str | None = None, fail_on_warnings: bool = False, project_endpoints: bool = False,
                 reload: bool | None = False):
        self.python = python or sys.executable
        self.fail_on_warnings = fail_on_warnings
        self.settings = settings or os.environ.get("DJANGO_SETTINGS_MODULE")
        self.mode = mode
        self.workers = workers
        self.websocket_url = websocket_url
        self.extra_args = list(extra_args)
        self.env = env or {}
        self.cwd = cwd
        self.ready_timeout = ready_timeout
        self.edge_only = edge_only
        self.reload = reload
        self.port = port or free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="django-ws-")
        self.project_endpoints = project_endpoints
        self.push_socket = push_socket or f"ipc://{self._tmp.name}/push"
        self.sub_socket = sub_socket or f"ipc://{self._tmp.name}/sub"
        self.process: subprocess.Popen | None = None
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._eof = False

    @property
    def prefix(self) -> str:
        """The mount prefix of ``--websocket-url`` (``/socket``), as the edge parses it."""
        from django_ws.routing import Mount  # the edge's own parsing of --websocket-url

        return Mount(self.websocket_url).prefix

    def url(self, route: str = "") -> str:
        """The ws:// URL of ``route``, the path below the mount prefix."""
        return f"ws://127.0.0.1:{self.port}{self.prefix}/{route}"

    @property
    def http_url(self) -> str:
        """The server's http:// base, for ``/_django_ws/stats`` and the other endpoints on its port."""
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The ``run_wsserver`` command line this server runs."""
        cmd = [self.python, "-m", "django", "run_wsserver", f"127.0.0.1:{self.port}",
               f"--websocket-url={self.websocket_url}", f"--{self.mode}"]
        if not self.project_endpoints:
            cmd += ["--push-socket", self.push_socket, "--sub-socket", self.sub_socket]
        cmd += ["--edge-only"] if self.edge_only else ["--workers", str(self.workers)]
        if self.reload is not None and not self.edge_only:
            cmd.append("--reload" if self.reload else "--noreload")
        return cmd + self.extra_args

    def start(self) -> "WebSocketServer":
        """Start the server and wait until it prints ``Ready:`` (AssertionError if it exits or times out)."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        if self.fail_on_warnings:
            env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), STRICT_WARNINGS]))
        if self.settings:
            env["DJANGO_SETTINGS_MODULE"] = self.settings
        # The project directory, as manage.py would have it; this interpreter's own
        # path entries only when the server runs on this interpreter.
        inherited = sys.path[1:2] if self.python == sys.executable else []
        env["PYTHONPATH"] = os.pathsep.join(p for p in [self.cwd or os.getcwd(), *inherited, env.get("PYTHONPATH", "")] if p)
        self.process = subprocess.Popen(
            self.command(), env=env, cwd=self.cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1, start_new_session=True, preexec_fn=_die_with_parent,
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for(self.ready_text, timeout=self.ready_timeout)
        return self

    def _read(self) -> None:
        with self.process.stdout:  # closed at the end of the output: no ResourceWarning for the pipe
            for line in self.process.stdout:
                with self._changed:
                    self.lines.append(line.rstrip("\n"))
                    self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def wait_for(self, text: str, timeout: float = 10.0, start: int = 0) -> str:
        """Block until the server prints a line containing ``text``; return that line."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[start:]:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    output = "\n".join(self.lines[-40:])
                    why = "exited" if self._eof else f"did not print it within {timeout}s"
                    raise AssertionError(f"run_wsserver {why} before printing {text!r}; it printed:\n{output}")
                self._changed.wait(min(left, 0.5))

    @property
    def warnings(self) -> list[str]:
        """The lines the server printed that name a DeprecationWarning, PendingDeprecationWarning or ResourceWarning."""
        return [line for line in self.lines if _WARNING_LINE.search(line)]

    @property
    def worker_pids(self) -> list[int]:
        """The pids of the worker processes the server reported starting, oldest first."""
        return [int(line.split()[2]) for line in self.lines if line.startswith("Worker process ") and "started" in line]

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM the server and wait for it; returns its exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise AssertionError(f"run_wsserver did not stop within {timeout}s of SIGTERM")
        finally:
            self._tmp.cleanup()
        if self.fail_on_warnings and self.warnings:
            raise AssertionError("run_wsserver printed warnings:\n" + "\n".join(self.warnings))
        return code

    def __enter__(self) -> "WebSocketServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
