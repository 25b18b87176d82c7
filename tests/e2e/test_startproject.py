"""A new user's first five minutes: ``pip install`` the built package into a new virtualenv,
``django-admin startproject``, ``'django_ws'`` in INSTALLED_APPS, one route, ``run_wsserver``.

Run from the wheel and from the sdist, each in a virtualenv of its own where
nothing of this checkout is on the path.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from websockets.sync.client import connect

from django_ws.testing import WebSocketServer
from tests.conftest import clean_env, make_venv

WS_URLS = '''\
from django_ws import WebSocketHandler, ws_path


class EchoHandler(WebSocketHandler):
    def on_open(self, message):
        self.join("everyone")

    def on_message(self, message):
        self.send(f"echo: {message}")


urlpatterns = [ws_path(r"^echo$", EchoHandler, name="echo")]
'''


@pytest.mark.parametrize("artifact, mode", [("wheel", "multiprocess"), ("sdist", "threaded")])
def test_a_new_project_serves_a_websocket(dist, tmp_path, artifact, mode):
    """The server runs with deprecation and resource warnings as errors, and fails the test if it prints one."""
    python = make_venv(tmp_path / "venv", str(getattr(dist, artifact)))
    project = new_project(python, tmp_path)
    server = WebSocketServer(settings="mysite.settings", cwd=str(project), python=str(python), mode=mode,
                             fail_on_warnings=True)
    server.start()
    try:
        assert any("django-ws" in line for line in server.lines), f"no banner in {server.lines}"
        with connect(server.url("echo")) as ws:
            ws.send("hello")
            assert ws.recv(timeout=10) == "echo: hello"
            ws.send("again")
            assert ws.recv(timeout=10) == "echo: again"
    finally:
        assert server.stop() == 0, "run_wsserver did not exit with 0 on SIGTERM:\n" + "\n".join(server.lines[-30:])


def new_project(python, directory) -> Path:
    """``django-admin startproject mysite`` in ``directory``, with django_ws and the echo route; the project."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(python.parent / "django-admin"), "startproject", "mysite"], cwd=directory,
                   env=clean_env(), check=True)
    project = directory / "mysite"
    settings = project / "mysite" / "settings.py"
    text = settings.read_text()
    assert "'django.contrib.staticfiles',\n" in text, "startproject wrote INSTALLED_APPS in an unexpected shape"
    settings.write_text(text.replace("'django.contrib.staticfiles',\n",
                                     "'django.contrib.staticfiles',\n    'django_ws',\n", 1))
    (project / "mysite" / "ws_urls.py").write_text(WS_URLS)
    return project


def test_two_projects_on_one_machine_each_serve_with_no_endpoint_settings(dist, tmp_path):
    """Both named mysite, no endpoint settings: each edge, and each project's ws_send, is the project's own."""
    python = make_venv(tmp_path / "venv", str(dist.wheel))
    projects = [new_project(python, tmp_path / name) for name in ("one", "two")]
    servers = [WebSocketServer(settings="mysite.settings", cwd=str(project), python=str(python),
                               project_endpoints=True, fail_on_warnings=True) for project in projects]
    for server in servers:
        server.start()
    try:
        clients = [connect(server.url("echo")) for server in servers]
        for n, ws in enumerate(clients):
            ws.send(f"join {n}")
            assert ws.recv(timeout=10) == f"echo: join {n}"
        # Each project's ws_send reaches its own edge only: one's message never reaches two's client.
        for project, text in zip(projects, ("to one", "to two")):
            sent = subprocess.run([str(python), "manage.py", "ws_send", "--group", "everyone", text],
                                  cwd=project, env=clean_env(), capture_output=True, text=True, timeout=60)
            assert sent.returncode == 0, sent.stderr
        assert clients[0].recv(timeout=10) == "to one"
        assert clients[1].recv(timeout=10) == "to two"
        for ws in clients:
            ws.close()

        # A second server of the same project says once, and clearly, why it cannot start.
        again = subprocess.run([str(python), "manage.py", "run_wsserver", "127.0.0.1:0", "--edge-only"],
                               cwd=projects[0], env=clean_env(), capture_output=True, text=True, timeout=60)
        assert again.returncode == 1, again
        assert again.stderr.count("in use by another running server") == 1, again.stderr
        assert "CommandError: ipc://" in again.stderr and "Error: Error" not in again.stderr, again.stderr
        assert "--push-socket" in again.stderr, f"the error does not say how to run a second one:\n{again.stderr}"
    finally:
        for server in servers:
            assert server.stop() == 0, "run_wsserver did not exit with 0 on SIGTERM:\n" + "\n".join(server.lines[-30:])
