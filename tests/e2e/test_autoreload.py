"""run_wsserver's autoreload: editing a handler serves the new code to the next connection; the edge stays.

Each test writes a small project of its own to tmp_path (settings with
DEBUG = True, ws_urls.py, handlers.py) and edits its handlers.py while the
server runs.
"""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from django_ws.testing import WebSocketServer

SETTINGS = """
SECRET_KEY = "tests-only"
DEBUG = {debug}
ALLOWED_HOSTS = ["127.0.0.1"]
INSTALLED_APPS = ["django_ws", "reloadproj"]
DATABASES = {{}}
WS_URLCONF = "reloadproj.ws_urls"
USE_TZ = True
"""

WS_URLS = """
from django_ws import ws_path

urlpatterns = [
    ws_path(r"^version$", "reloadproj.handlers.VersionHandler", name="version"),
]
"""

HANDLERS = """
from django_ws import WebSocketHandler


class VersionHandler(WebSocketHandler):
    def on_open(self, message):
        self.send("{version}")
"""


def write_project(root: Path, *, debug: bool = True, version: str = "v1") -> Path:
    package = root / "reloadproj"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(textwrap.dedent(SETTINGS.format(debug=debug)))
    (package / "ws_urls.py").write_text(textwrap.dedent(WS_URLS))
    handlers = package / "handlers.py"
    handlers.write_text(textwrap.dedent(HANDLERS.format(version=version)))
    return handlers


def edit(handlers: Path, version: str) -> None:
    handlers.write_text(textwrap.dedent(HANDLERS.format(version=version)))
    # StatReloader compares modification times: make this one later than the last look, whatever
    # the file system's clock granularity (the edit must be seen, not the test's timing).
    later = time.time() + 2
    os.utime(handlers, (later, later))


def reply(server: WebSocketServer) -> str:
    with connect(server.url("version"), open_timeout=10) as ws:
        ws.send("hello")
        return ws.recv(timeout=10)


def wait_for_reply(server: WebSocketServer, expected: str, timeout: float) -> None:
    """Connect again and again until a new connection gets ``expected``, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        try:
            got = reply(server)
        except (ConnectionClosed, OSError, TimeoutError) as exc:  # the old worker going away (1012)
            got = repr(exc)
        if got == expected:
            return
        time.sleep(0.1)
    raise AssertionError(f"a new connection got {got!r}, not {expected!r}, {timeout}s after the workers restarted")


def start(root: Path, **kwargs) -> WebSocketServer:
    return WebSocketServer(settings="reloadproj.settings", cwd=str(root), fail_on_warnings=True,
                           ready_timeout=60, **kwargs).start()


@pytest.fixture
def servers():
    started: list[WebSocketServer] = []
    yield started
    for server in started:
        assert server.stop() == 0, "run_wsserver did not exit with 0 on SIGTERM:\n" + "\n".join(server.lines[-30:])


def test_with_debug_an_edited_handler_serves_the_next_connection_and_the_edge_stays(tmp_path, servers):
    handlers = write_project(tmp_path)
    server = start(tmp_path, reload=None)  # no flag: DEBUG = True turns it on, as with runserver
    servers.append(server)
    assert "Autoreload: on (DEBUG = True)" in "\n".join(server.lines)
    server.wait_for("Autoreload: watching for file changes with", timeout=30)
    kept = connect(server.url("version"), open_timeout=10)
    kept.send("hello")
    assert kept.recv(timeout=10) == "v1"
    first_workers = list(server.worker_pids)

    mark = len(server.lines)
    edit(handlers, "v2")
    line = server.wait_for("Autoreload:", timeout=30, start=mark)
    assert "handlers.py" in line and "restarting the workers" in line, line
    server.wait_for("Restarted 1 worker(s)", timeout=30, start=mark)
    wait_for_reply(server, "v2", timeout=5)

    with pytest.raises(ConnectionClosed) as closed:
        kept.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012, "the old worker's client: 1012"
    assert server.process.poll() is None and "WebSocket server at" in server.lines[1], "the same edge serves on"
    assert set(server.worker_pids) - set(first_workers), "new worker processes run the new code"


def test_noreload_keeps_the_workers_while_a_reloading_server_of_the_same_files_restarts(tmp_path, servers):
    handlers = write_project(tmp_path)
    quiet = start(tmp_path, reload=False)
    servers.append(quiet)
    assert "Autoreload: off (--noreload)" in "\n".join(quiet.lines)
    reloading = start(tmp_path, reload=True)
    servers.append(reloading)
    reloading.wait_for("Autoreload: watching for file changes with", timeout=30)
    assert reply(quiet) == reply(reloading) == "v1"

    mark, quiet_mark = len(reloading.lines), len(quiet.lines)
    edit(handlers, "v2")
    # The reloading server saw the edit: from then on the other one could have too.
    reloading.wait_for("Restarted 1 worker(s)", timeout=30, start=mark)
    wait_for_reply(reloading, "v2", timeout=5)
    assert reply(quiet) == "v1", "--noreload: the workers keep the code they started with"
    assert not [line for line in quiet.lines[quiet_mark:] if "restart" in line.lower()], quiet.lines[quiet_mark:]


def test_debug_false_has_no_autoreload_and_reload_with_edge_only_is_refused(tmp_path):
    write_project(tmp_path, debug=False)
    server = start(tmp_path, reload=None)
    try:
        assert "Autoreload: off (DEBUG = False; --reload turns it on)" in "\n".join(server.lines)
    finally:
        assert server.stop() == 0
    refused = WebSocketServer(settings="reloadproj.settings", cwd=str(tmp_path), edge_only=True,
                              extra_args=("--reload",))
    with pytest.raises(AssertionError, match="exited"):
        refused.start()
    try:
        assert any("--reload restarts this server's workers" in line for line in refused.lines), refused.lines
    finally:
        refused.stop()
