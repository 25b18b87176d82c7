"""The admin's "Realtime" page in headless Chromium, against a real edge, workers and runserver.

A staff user watches the page count a connection the test opens and then
closes, closes another one from the page (the client gets the code and the
reason), and the close lands in the admin's LogEntry. Staff without the
permission get 403; a user who is not staff gets the admin's login.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest
from django.test import override_settings
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from django_ws.admin.live import gather
from django_ws.testing import WebSocketServer
from django_ws.testing.server import free_port
from tests.conftest import ROOT
from tests.e2e.test_cluster import cluster  # noqa: F401  (the fixture)
from tests.e2e.test_groups import join
from tests.e2e.test_hosts import served

SETTINGS = "tests.project.admin_settings"
TIMEOUT_MS = 20_000

USERS = """
import django
django.setup()
from django.contrib.auth.models import Permission, User
def perms(*names):
    return [Permission.objects.get(content_type__app_label="django_ws", codename=n) for n in names]
watcher = User.objects.create_user("watcher", password="pw", is_staff=True)
watcher.user_permissions.set(perms("view_realtime", "close_connection", "send_test_message"))
User.objects.create_user("clerk", password="pw", is_staff=True)
User.objects.create_user("visitor", password="pw")
"""

LOG = """
import django
django.setup()
from django.contrib.admin.models import LogEntry
print([(e.user.username, e.object_id, e.change_message) for e in LogEntry.objects.all()])
"""


class AdminSite:
    """run_wsserver and runserver of the test project with the admin, on one migrated sqlite file."""

    def __init__(self, directory: str):
        self.db = os.path.join(directory, "admin.sqlite3")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws = WebSocketServer(settings=SETTINGS, cwd=ROOT, env={"DJANGO_WS_TEST_DB": self.db},
                                  fail_on_warnings=True)
        self.env = dict(os.environ, DJANGO_SETTINGS_MODULE=SETTINGS, DJANGO_WS_TEST_DB=self.db, PYTHONPATH=ROOT,
                        DJANGO_WS_EDGES=self.ws.sub_socket, DJANGO_WS_BASE_URL=self.ws.url().rstrip("/"),
                        PYTHONUNBUFFERED="1")
        self.log = os.path.join(directory, "runserver.log")
        self.http: subprocess.Popen | None = None

    def python(self, script: str) -> str:
        done = subprocess.run([sys.executable, "-c", script], env=self.env, cwd=ROOT, capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def start(self) -> None:
        subprocess.run([sys.executable, "-m", "django", "migrate", "-v0"], env=self.env, cwd=ROOT, check=True)
        self.python(USERS)
        self.ws.start()
        with open(self.log, "w") as log:
            self.http = subprocess.Popen([sys.executable, "-m", "django", "runserver", f"127.0.0.1:{self.port}",
                                          "--noreload"], env=self.env, cwd=ROOT, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:  # runserver has no readiness signal but answering
            try:
                with urllib.request.urlopen(f"{self.url}/admin/login/", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if self.http.poll() is not None or time.monotonic() > deadline:
                with open(self.log) as log:
                    raise AssertionError(f"runserver did not answer:\n{log.read()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.http is not None:
            self.http.terminate()
            self.http.wait(10)
            with open(self.log) as log:
                print("--- runserver ---", log.read()[-3000:], sep="\n")
        assert self.ws.stop() == 0, "run_wsserver did not exit 0"


@pytest.fixture
def site():
    with tempfile.TemporaryDirectory(prefix="django-ws-admin-") as directory:
        running = AdminSite(directory)
        try:
            running.start()
            yield running
        finally:
            running.stop()


def log_in(context, site, username):
    page = context.new_page()
    page.goto(f"{site.url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    page.wait_for_url(f"{site.url}/admin/")
    return page


@pytest.mark.browser
def test_staff_watch_a_connection_come_and_go_and_close_one_from_the_admin(chromium, site, tmp_path):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    realtime = f"{site.url}/admin/django_ws/realtime/"
    contexts = [chromium.new_context() for _ in range(3)]
    try:
        # Not staff: the admin's login page.
        visitor = contexts[0].new_page()
        visitor.goto(realtime)
        assert "/admin/login/" in visitor.url
        # Staff without django_ws.view_realtime: 403, on the page and on its live socket.
        clerk = log_in(contexts[1], site, "clerk")
        assert clerk.goto(realtime).status == 403
        session = {c["name"]: c["value"] for c in contexts[1].cookies()}["sessionid"]
        with pytest.raises(InvalidStatus) as refused:
            connect(site.ws.url("django-ws/admin/realtime"), origin=site.url,
                    additional_headers={"Cookie": f"sessionid={session}"})
        assert refused.value.response.status_code == 403
        # Staff with it: the admin index lists the page under the app; the page goes live.
        page = log_in(contexts[2], site, "watcher")
        page.click("a[href='/admin/django_ws/realtime/']")
        expect(page.locator("#rt-status")).to_have_attribute("data-mode", "live")
        total = page.locator("#rt-total-connections")
        expect(total).to_have_text("1")  # the page's own socket
        expect(page.locator("#rt-routes")).to_contain_text("django_ws_realtime")

        # A connection the test opens appears, and disappears when it closes.
        with connect(site.ws.url("room/adminwatch")) as client:
            client.send("{}")  # the room joins on the first message
            client.recv(timeout=10)
            expect(total).to_have_text("2")
            expect(page.locator("#rt-groups")).to_contain_text("room.adminwatch")
        expect(total).to_have_text("1")

        # Another one is closed from the page, with a code and a reason.
        with connect(site.ws.url("room/adminclose")) as client:
            client.send("{}")
            conn_id = json.loads(client.recv(timeout=10))["id"]
            page.fill("#rt-group", "room.adminclose")
            page.press("#rt-group", "Enter")
            row = page.locator(f"#rt-members tr[data-connection='{conn_id}']")
            expect(row).to_have_count(1)
            # A test message to its group reaches it first.
            send = page.locator("form[action$='/send/']")
            send.locator("input[name=group]").fill("room.adminclose")
            send.locator("input[name=data]").fill('{"from": "staff"}')
            send.locator("button").click()
            expect(page.locator(".messagelist")).to_contain_text("Sent a test message to group room.adminclose: 1")
            assert json.loads(client.recv(timeout=10)) == {"from": "staff"}
            row.locator("input[name=reason]").fill("closed by the test")
            row.locator("button").click()
            expect(page.locator(".messagelist")).to_contain_text(f"Closed connection {conn_id} with 4000")
            with pytest.raises(Exception) as closed:
                client.recv(timeout=10)
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4000, "closed by the test")
        expect(page.locator("#rt-status")).to_have_attribute("data-mode", "live")
        expect(total).to_have_text("1")
        history = site.python(LOG)
        assert ("('watcher', 'room.adminclose', 'Sent a test message to group room.adminclose: 1 connection(s)')"
                in history)
        assert f"('watcher', '{conn_id}', 'Closed connection {conn_id} with 4000 (closed by the test)')" in history

        screenshot = tmp_path / "admin-realtime.png"
        page.screenshot(path=str(screenshot), full_page=True)
        print(f"screenshot: {screenshot}")
    finally:
        for context in contexts:
            context.close()


def test_the_live_view_shows_every_edge_and_names_one_that_does_not_answer(make_server):
    server = make_server()
    ws, conn_id = join(server, "gathered")
    dead = "ipc:///nonexistent/django-ws-admin-test/sub"
    try:
        with override_settings(WS_EDGES=[server.sub_socket, dead], WS_ADMIN_TIMEOUT=0.5):
            view = gather({"group": "room.gathered"})
        live, gone = view["edges"]
        assert gone == {"endpoint": dead, "error": "not connected within 0.5s"}
        assert live["connections"] == 1 and [w["mode"] for w in live["workers"]] == ["threaded"]
        assert live["delivery_latency"] is None or "count" in live["delivery_latency"]
        assert view["connections_by_route"] == {"room": 1}
        assert [(g["name"], g["size"]) for g in view["largest_groups"]] == [("room.gathered", 1)]
        assert [m["id"] for m in view["group"]["members"]] == [conn_id]
    finally:
        ws.close()


def test_in_cluster_mode_the_live_view_asks_the_edges_the_broker_knows(cluster):
    edges = [cluster.edge() for _ in range(2)]
    cluster.worker()
    for edge in edges:
        served(edge, 30)
    sockets = [join(edge, "spread")[0] for edge in edges]
    try:
        with cluster.settings(WS_EDGES=None):
            view = gather({"group": "room.spread"})
        assert view["error"] is None and view["totals"]["answering"] == 2, view["edges"]
        assert sorted(edge["edge_id"] for edge in view["edges"]) == sorted(
            member["edge_id"] for member in view["group"]["members"])
        assert view["largest_groups"][0] == {"name": "room.spread", "size": 2, "edges": 2, "history": None}
    finally:
        for ws in sockets:
            ws.close()
