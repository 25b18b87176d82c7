"""A new user's first five minutes: ``pip install`` the built package into a new virtualenv,
``django-admin startproject``, ``'django_ws'`` in INSTALLED_APPS, one route, ``run_wsserver``.

Run from the wheel and from the sdist, each in a virtualenv of its own where
nothing of this checkout is on the path.
"""

from __future__ import annotations

import subprocess

import pytest
from websockets.sync.client import connect

from django_ws.testing import WebSocketServer
from tests.conftest import clean_env, make_venv

WS_URLS = '''\
from django_ws import WebSocketHandler, ws_path


class EchoHandler(WebSocketHandler):
    def on_message(self, message):
        self.send(f"echo: {message}")


urlpatterns = [ws_path(r"^echo$", EchoHandler, name="echo")]
'''


@pytest.mark.parametrize("artifact", ["wheel", "sdist"])
def test_a_new_project_serves_a_websocket(dist, tmp_path, artifact):
    python = make_venv(tmp_path / "venv", str(getattr(dist, artifact)))
    subprocess.run([str(python.parent / "django-admin"), "startproject", "mysite"], cwd=tmp_path,
                   env=clean_env(), check=True)
    project = tmp_path / "mysite"
    settings = project / "mysite" / "settings.py"
    text = settings.read_text()
    assert "'django.contrib.staticfiles',\n" in text, "startproject wrote INSTALLED_APPS in an unexpected shape"
    settings.write_text(text.replace("'django.contrib.staticfiles',\n",
                                     "'django.contrib.staticfiles',\n    'django_ws',\n", 1))
    (project / "mysite" / "ws_urls.py").write_text(WS_URLS)

    server = WebSocketServer(settings="mysite.settings", cwd=str(project), python=str(python))
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
