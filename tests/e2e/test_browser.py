"""The example project's chat, end to end, in headless Chromium.

Everything runs for real: the example's Django pages under ``runserver``,
``run_wsserver`` with the example's settings, a migrated sqlite file, the
static ``django-ws.js`` client and ``{% reverse_ws %}``. Two pages chat, the
websocket server restarts on the same port under them, the client reconnects
by itself, and an ordinary Django view speaks into the room.

Chromium comes from the system (``DJANGO_WS_TEST_CHROMIUM``, default
/usr/bin/chromium; .ci/run installs Debian's); Playwright only drives it.
"""

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest

from django_ws.testing import WebSocketServer
from django_ws.testing.server import free_port
from tests.conftest import ROOT

EXAMPLE = os.path.join(ROOT, "example_project")
#: Playwright's timeout for every wait on the page. The client reconnects with
#: backoff (base 500 ms, doubling, jitter), so a restart takes it a few seconds.
TIMEOUT_MS = 20_000

# A seed line in the room's history: a page that shows it has joined the room
# (the room sends its recent lines to a page that has none), so what is said
# next reaches it exactly once, by broadcast.
SEED = "seed line from the database"

SETUP_DB = f"""
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from chat.models import Message
Message.objects.create(room="lobby", author="history", text={SEED!r})
"""

# The example's settings read EXAMPLE_DB and WS_BASE_URL from the environment
# but name no ZeroMQ endpoints, so its views would look for the edge at the
# default ipc:///tmp/ws_sub. This module points them at the test's own edge.
HTTP_SETTINGS = """
import os
from example_project.settings import *  # noqa: F401,F403

WS_PUSH_SOCKET = os.environ["BROWSER_TEST_PUSH_SOCKET"]
WS_SUB_SOCKET = os.environ["BROWSER_TEST_SUB_SOCKET"]
"""


class Example:
    """The example project: a migrated sqlite file, runserver, and run_wsserver (restartable)."""

    def __init__(self):
        # Short on purpose: ipc:// paths must fit in a sockaddr_un (about 100 bytes).
        self.dir = tempfile.mkdtemp(prefix="django-ws-example-")
        self.db = os.path.join(self.dir, "example.sqlite3")
        self.push_socket = f"ipc://{self.dir}/push"
        self.sub_socket = f"ipc://{self.dir}/sub"
        self.http_port = free_port()
        self.ws_port = free_port()
        self.http_url = f"http://127.0.0.1:{self.http_port}"
        self.env = {
            "EXAMPLE_DB": self.db,
            "WS_BASE_URL": f"ws://127.0.0.1:{self.ws_port}/socket",
            "BROWSER_TEST_PUSH_SOCKET": self.push_socket,
            "BROWSER_TEST_SUB_SOCKET": self.sub_socket,
        }
        self.http: subprocess.Popen | None = None
        self.http_log = os.path.join(self.dir, "runserver.log")
        self.ws: WebSocketServer | None = None
        self.ws_output: list[str] = []

    def _env(self, settings: str) -> dict:
        pythonpath = os.pathsep.join([self.dir, EXAMPLE, ROOT])
        return dict(os.environ, **self.env, DJANGO_SETTINGS_MODULE=settings, PYTHONPATH=pythonpath,
                    PYTHONUNBUFFERED="1")

    def setup_db(self) -> None:
        subprocess.run([sys.executable, "-c", SETUP_DB], env=self._env("example_project.settings"),
                       cwd=EXAMPLE, check=True, timeout=60)

    def start_http(self) -> None:
        with open(os.path.join(self.dir, "browser_test_settings.py"), "w") as f:
            f.write(HTTP_SETTINGS)
        with open(self.http_log, "w") as log:
            self.http = subprocess.Popen(
                [sys.executable, "manage.py", "runserver", f"127.0.0.1:{self.http_port}", "--noreload"],
                env=self._env("browser_test_settings"), cwd=EXAMPLE, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.http_url}/", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if self.http.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"runserver did not answer on {self.http_url}:\n{self.http_output()}")
            time.sleep(0.1)

    def http_output(self) -> str:
        with open(self.http_log) as f:
            return f.read()[-4000:]

    def start_ws(self) -> WebSocketServer:
        """Start run_wsserver, always on the same port and the same ZeroMQ endpoints."""
        self.ws = WebSocketServer(
            settings="example_project.settings", cwd=EXAMPLE, port=self.ws_port, env=self.env,
            push_socket=self.push_socket, sub_socket=self.sub_socket, fail_on_warnings=True,
        )
        try:
            return self.ws.start()
        except BaseException:
            self.stop_ws()
            raise

    def stop_ws(self) -> int:
        ws, self.ws = self.ws, None
        if ws is None:
            return 0
        try:
            return ws.stop()
        finally:
            self.ws_output += ws.lines

    def stop(self) -> None:
        try:
            self.stop_ws()
        finally:
            if self.http is not None and self.http.poll() is None:
                self.http.terminate()
                try:
                    self.http.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.http.pid, signal.SIGKILL)
                    self.http.wait()
            # Shown by pytest only when the test fails.
            print("--- run_wsserver output ---", *self.ws_output[-60:], sep="\n")
            if os.path.exists(self.http_log):
                print("--- runserver output ---", self.http_output(), sep="\n")
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def example():
    project = Example()
    try:
        project.setup_db()
        project.start_http()
        project.start_ws()
        yield project
    finally:
        project.stop()


def lines(page, text):
    """The chat lines of ``page`` that read exactly ``text`` ("author: text")."""
    return page.locator("#log .line").filter(has_text=re.compile(f"^{re.escape(text)}$"))


def say(page, author, text):
    page.fill("#author", author)
    page.fill("#text", text)
    page.click("#form button")



def open_pages(chromium, url: str, contexts: list, count: int = 2) -> list:
    """``count`` pages at ``url``, each in a browser context of its own (as two people), added to ``contexts``."""
    pages = []
    for _ in range(count):
        context = chromium.new_context()
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.goto(url)
        pages.append(page)
    return pages

@pytest.mark.browser
def test_example_chat_in_two_browsers_survives_a_websocket_server_restart(chromium, example, tmp_path):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    contexts = []
    try:
        pages = open_pages(chromium, f"{example.http_url}/room/lobby/", contexts)
        alice, bob = pages
        tag = secrets.token_hex(4)  # every line this test says is unique

        # Both pages connect, join and get the room's history.
        for page in pages:
            expect(page.locator("#status")).to_have_text("connected")
            expect(lines(page, f"history: {SEED}")).to_have_count(1)

        # Each says a line; each sees both, once.
        say(alice, "alice", f"hello from alice {tag}")
        say(bob, "bob", f"hello from bob {tag}")
        before = [f"alice: hello from alice {tag}", f"bob: hello from bob {tag}"]
        for page in pages:
            for text in before:
                expect(lines(page, text)).to_have_count(1)

        # A deploy (SIGHUP: new workers, the same edge). The pages get 1012 and
        # come back by themselves; a line announced meanwhile reaches them from
        # the room's history, the page has no replay code of its own.
        mark = len(example.ws.lines)
        for page in pages:
            page.evaluate("window.beforeDeploy = socket.ws")
        example.ws.process.send_signal(signal.SIGHUP)
        during = f"said during the deploy {tag}"
        assert announce(alice, example, during)["status"] == 200
        example.ws.wait_for("Restarted", timeout=30, start=mark)
        for page in pages:
            # The page's connection was replaced (its status line may have said
            # "reconnecting" for too short a time to be seen).
            page.wait_for_function("socket.ws !== window.beforeDeploy && socket.readyState === 1")
            for text in [f"history: {SEED}", *before, f"announcer: {during}"]:
                expect(lines(page, text)).to_have_count(1)
            assert page.evaluate("document.body.dataset.resynced") is None, "the gap was recovered, not reloaded"

        # Restart the websocket server on the same port: a new edge, whose
        # history is new (another epoch). The pages are told to resync, and
        # the room sends its saved lines again (announcements are not saved):
        # each shows once.
        assert example.stop_ws() == 0, "run_wsserver exited non-zero on SIGTERM"
        for page in pages:
            expect(page.locator("#status")).to_contain_text("reconnecting")
        example.start_ws()
        for page in pages:
            expect(page.locator("#status")).to_have_text("connected")
            expect(page.locator("body")).to_have_attribute("data-resynced", "chat.lobby")
            for text in [f"history: {SEED}", *before]:
                expect(lines(page, text)).to_have_count(1)

        # They chat again and see each other's new lines, once each.
        say(alice, "alice", f"back again, alice {tag}")
        say(bob, "bob", f"back again, bob {tag}")
        for page in pages:
            for text in [f"alice: back again, alice {tag}", f"bob: back again, bob {tag}"]:
                expect(lines(page, text)).to_have_count(1)

        # An ordinary Django view speaks into the room. CSRF is on: without a
        # token the POST is refused...
        announce_url = f"{example.http_url}/room/lobby/announce/"
        refused = alice.request.post(announce_url, form={"text": "no token"}, headers={"Origin": example.http_url})
        assert refused.status == 403, refused.text()
        # ... and with the csrftoken cookie echoed in X-CSRFToken, as Django's
        # docs have JavaScript do, it goes through. The example's pages never
        # call get_token(), so no csrftoken cookie is set by visiting them; the
        # page sets one itself (Django accepts any well-formed token it gets
        # in both the cookie and the header).
        text = f"announcement {tag}"
        reply = announce(alice, example, text)
        assert reply["status"] == 200, reply
        for page in pages:
            expect(lines(page, f"announcer: {text}")).to_have_count(1)

        screenshot = tmp_path / "chat-after-restart.png"
        alice.screenshot(path=str(screenshot), full_page=True)
        print(f"screenshot: {screenshot}")
    finally:
        for context in contexts:
            context.close()


def announce(page, example, text):
    """POST ``text`` to the room's announce view from ``page``, with a CSRF token as Django's docs have it."""
    return page.evaluate(
        """async ([url, text]) => {
            let token = (document.cookie.match(/(?:^|; )csrftoken=([^;]+)/) || [])[1];
            if (!token) {
                const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
                const bytes = crypto.getRandomValues(new Uint8Array(32));
                token = Array.from(bytes, b => chars[b % chars.length]).join("");
                document.cookie = "csrftoken=" + token + "; path=/; SameSite=Lax";
            }
            const response = await fetch(url, {
                method: "POST",
                headers: {"X-CSRFToken": token},
                body: new URLSearchParams({text: text}),
            });
            return {status: response.status, body: await response.text()};
        }""",
        [f"{example.http_url}/room/lobby/announce/", text],
    )


LOGIN = """
import django
django.setup()
from django.contrib.auth import get_user_model
from django.test import Client
for name in ("alice", "bob"):
    user = get_user_model().objects.create_user(name, password="not-used")
    client = Client()
    client.force_login(user)
    print(client.cookies["sessionid"].value)
"""


@pytest.mark.browser
def test_example_chat_shows_who_is_here_one_entry_per_person_with_a_count_of_tabs(chromium, example):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    found = subprocess.run([sys.executable, "-c", LOGIN], env=example._env("example_project.settings"), cwd=EXAMPLE,
                           check=True, timeout=60, capture_output=True, text=True)
    sessions = dict(zip(("alice", "bob"), found.stdout.split()))
    contexts = []
    try:
        pages = {}
        for name, tabs in (("alice", 2), ("bob", 1)):
            context = chromium.new_context()
            context.set_default_timeout(TIMEOUT_MS)
            context.add_cookies([{"name": "sessionid", "value": sessions[name], "url": example.http_url}])
            contexts.append(context)
            pages[name] = []
            for _ in range(tabs):
                page = context.new_page()
                page.goto(f"{example.http_url}/room/lobby/")
                pages[name].append(page)
        people = pages["bob"][0].locator("#people .person")
        expect(people).to_have_text(["alice (2 tabs)", "bob (1 tab)"])
        expect(pages["alice"][1].locator("#people .person")).to_have_text(["alice (2 tabs)", "bob (1 tab)"])
        pages["alice"][0].close()
        expect(people).to_have_text(["alice (1 tab)", "bob (1 tab)"])
        pages["alice"][1].close()
        expect(people).to_have_text(["bob (1 tab)"])
    finally:
        for context in contexts:
            context.close()
