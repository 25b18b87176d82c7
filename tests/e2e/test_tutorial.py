"""docs/tutorial.rst, run as written: every command and every file of it.

The tutorial is read top to bottom and its code blocks are carried out
mechanically, in a fresh directory, as a reader would:

* ``.. code-block:: console`` blocks hold only ``$ `` command lines, run in
  order, in a new virtualenv: ``python`` is its interpreter,
  ``django-admin`` its ``django-admin``, ``cd`` changes directory. The line
  that installs django-ws-edge runs for real and exactly as printed, with
  ``PIP_FIND_LINKS`` naming the built wheel's directory as the tutorial tells
  readers to set it (the distribution is not on PyPI yet), so the tutorial
  uses what a reader installs and nothing of this checkout.
  ``manage.py run_wsserver`` and
  ``manage.py runserver`` run until stopped, so they are recorded instead and
  started by the fixtures below, on free ports with private ZeroMQ endpoints.
* Every other code block has a ``:caption:`` naming a file relative to the
  current directory: it is written as that file, or appended to it when the
  caption ends with ``(add at the end)``.
* Any other block, or a literal block (``::``), fails the test: no code on
  the page goes unrun.

Then the project's servers run and are used as a person would: two WebSocket
clients chat through run_wsserver (one with a browser's Origin header), the
page comes from runserver with the {% reverse_ws %} URL and the client script
in it, the tutorial's own ``manage.py test`` passes, and, when Chromium is
there, two browser pages chat.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect

from django_ws.testing import WebSocketServer
from django_ws.testing.server import free_port
from tests.conftest import ROOT, clean_env

TUTORIAL = Path(ROOT) / "docs" / "tutorial.rst"
#: Commands that run until stopped: the fixtures start them.
LONG_RUNNING = ("run_wsserver", "runserver")
APPEND = " (add at the end)"


@dataclasses.dataclass
class Block:
    lineno: int
    language: str
    caption: str | None
    text: str


def code_blocks(source: str) -> list[Block]:
    """The ``.. code-block::`` directives of ``source``; AssertionError for code the test could not run."""
    lines = source.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        line = lines[i]
        directive = re.match(r"\.\. code-block::\s*(\S+)\s*$", line)
        if directive is None:
            if re.match(r"\s*\.\. (code|code-block|sourcecode|literalinclude|highlight)::", line):
                raise AssertionError(f"tutorial.rst:{i + 1}: {line.strip()!r}: only top-level "
                                     ".. code-block:: directives are run by this test")
            if line.rstrip().endswith("::") and not line.lstrip().startswith(".."):
                raise AssertionError(f"tutorial.rst:{i + 1}: a literal block ('::') that this test cannot run; "
                                     "use a code-block with a :caption: or a console block")
            i += 1
            continue
        start, options = i + 1, {}
        i += 1
        while i < len(lines) and (option := re.match(r"\s+:([\w-]+):\s*(.*)$", lines[i])):
            options[option[1]] = option[2].strip()
            i += 1
        body = []
        while i < len(lines) and (not lines[i].strip() or lines[i][:1].isspace()):
            body.append(lines[i])
            i += 1
        text = textwrap.dedent("\n".join(body)).strip("\n") + "\n"
        blocks.append(Block(start, directive[1], options.get("caption"), text))
    return blocks


class Tutorial:
    """Carries out the tutorial's blocks in ``root``; records what ran."""

    def __init__(self, root: Path, python: Path, wheel: Path):
        self.root = root
        self.cwd = root
        self.python = python
        self.wheel = wheel
        self.project: Path | None = None
        # What the tutorial's Install section tells readers to do until the first release on PyPI.
        find_links = " ".join(filter(None, [str(wheel.parent), os.environ.get("PIP_FIND_LINKS")]))
        self.env = clean_env(PYTHONUNBUFFERED="1", PIP_FIND_LINKS=find_links)
        self.commands: dict[str, subprocess.CompletedProcess] = {}
        self.installed: list[str] = []
        self.long_running: dict[str, tuple[Path, list[str]]] = {}
        self.files: dict[str, str] = {}

    def run(self, blocks: list[Block]) -> None:
        for block in blocks:
            if block.language == "console":
                for n, line in enumerate(block.text.splitlines()):
                    assert line.startswith("$ "), (
                        f"tutorial.rst:{block.lineno + n}: console blocks hold only '$ ' commands, not {line!r}")
                    self.command(line[2:], block.lineno)
            elif block.caption:
                self.write(block)
            else:
                raise AssertionError(f"tutorial.rst:{block.lineno}: a {block.language} block with no :caption: "
                                     "naming its file; this test would not run it")

    def command(self, line: str, lineno: int) -> None:
        argv = shlex.split(line)
        if argv[0] == "cd":
            self.cwd = (self.cwd / argv[1]).resolve()
            assert self.cwd.is_dir(), f"tutorial.rst:{lineno}: cd {argv[1]}: no such directory"
            return
        if argv[:2] == ["python", "manage.py"] and len(argv) > 2 and argv[2] in LONG_RUNNING:
            self.long_running[argv[2]] = (self.cwd, argv[3:])
            self.project = self.cwd
            return
        if argv[:4] == ["python", "-m", "pip", "install"]:
            self.installed.append(line)
        if argv[0] == "python":
            argv = [str(self.python), *argv[1:]]
        elif argv[0] == "django-admin":
            argv = [str(self.python.parent / "django-admin"), *argv[1:]]
        else:
            raise AssertionError(f"tutorial.rst:{lineno}: this test does not know how to run {line!r}")
        env = self.env
        if argv[1:3] == ["-m", "pip"]:
            env = {k: v for k, v in env.items() if k != "PYTHONWARNINGS"}  # pip's own warnings are not ours
        result = subprocess.run(argv, cwd=self.cwd, env=env, capture_output=True, text=True, timeout=300,
                                check=False)
        assert result.returncode == 0, (
            f"tutorial.rst:{lineno}: `{line}` exited with {result.returncode}:\n{result.stdout}\n{result.stderr}")
        self.commands[line] = result

    def write(self, block: Block) -> None:
        name, append = block.caption, block.caption.endswith(APPEND)
        if append:
            name = name[: -len(APPEND)]
        assert re.fullmatch(r"[\w./-]+", name) and not name.startswith("/") and ".." not in name, (
            f"tutorial.rst:{block.lineno}: caption {block.caption!r} is not a relative file name")
        path = self.cwd / name
        if append:
            assert path.exists(), f"tutorial.rst:{block.lineno}: {name} should exist before lines are added to it"
            path.write_text(path.read_text() + "\n\n" + block.text)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.text)
        self.files[name] = path.read_text()


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory, dist) -> Tutorial:
    started = time.monotonic()
    blocks = code_blocks(TUTORIAL.read_text(encoding="utf-8"))
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = Tutorial(tmp_path_factory.mktemp("tutorial"), venv / "bin" / "python", dist.wheel)
    done.run(blocks)
    print(f"tutorial: {len(blocks)} blocks, {len(done.commands)} commands run in {time.monotonic() - started:.1f}s; "
          f"installed with {done.installed}")
    return done


@pytest.fixture(scope="module")
def ws_server(tutorial):
    cwd, args = tutorial.long_running["run_wsserver"]
    # The test picks the port: an address:port argument would name another one.
    args = [arg for arg in args if arg.startswith("-")]
    server = WebSocketServer(settings="mysite.settings", cwd=str(cwd), python=str(tutorial.python),
                             extra_args=tuple(args), fail_on_warnings=True)
    server.start()
    try:
        yield server
    finally:
        code = server.stop()
        print("--- run_wsserver output ---", *server.lines[-40:], sep="\n")
        assert code == 0, "run_wsserver did not exit with 0 on SIGTERM"


HTTP_SETTINGS = """\
from mysite.settings import *  # noqa: F401,F403

# The one change: point {{% reverse_ws %}} at the run_wsserver this test started.
WS_BASE_URL = {base_url!r}
"""


@pytest.fixture(scope="module")
def http_server(tutorial, ws_server, tmp_path_factory):
    """The tutorial's runserver, its WS_BASE_URL pointed at the test's run_wsserver."""
    cwd, args = tutorial.long_running["runserver"]
    assert not [arg for arg in args if not arg.startswith("-")], "the test picks runserver's address itself"
    settings_dir = tmp_path_factory.mktemp("settings")
    base_url = f"ws://127.0.0.1:{ws_server.port}{ws_server.prefix}"
    (settings_dir / "tutorial_http_settings.py").write_text(HTTP_SETTINGS.format(base_url=base_url))
    port = free_port()
    log = settings_dir / "runserver.log"
    env = dict(tutorial.env, DJANGO_SETTINGS_MODULE="tutorial_http_settings", PYTHONPATH=str(settings_dir))
    with open(log, "w") as out:
        process = subprocess.Popen([str(tutorial.python), "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", *args],
                                   cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:  # runserver prints its banner before it binds: poll until it answers
            try:
                urllib.request.urlopen(f"{url}/chat/lobby/", timeout=5).close()
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"runserver did not answer on {url}:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)
        yield url, base_url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        print("--- runserver output ---", log.read_text()[-3000:], sep="\n")


def test_every_block_of_the_tutorial_is_run(tutorial):
    files = set(tutorial.files)
    assert {"mysite/settings.py", "chat/models.py", "chat/handlers.py", "mysite/ws_urls.py", "chat/views.py",
            "chat/urls.py", "mysite/urls.py", "chat/templates/chat/room.html", "chat/tests.py"} <= files, files
    assert set(tutorial.long_running) == set(LONG_RUNNING)
    assert tutorial.installed == ["python -m pip install django-ws-edge"], tutorial.installed
    (site,) = (tutorial.python.parent.parent / "lib").glob("python3*/site-packages")
    assert (site / "django_ws" / "edge" / "__init__.py").is_file(), "the tutorial's pip line did not install the wheel"
    version = tutorial.wheel.name.split("-")[1]
    assert (site / f"django_ws_edge-{version}.dist-info").is_dir(), f"the pip line installed another django-ws-edge than {tutorial.wheel.name}"
    ran = " | ".join(tutorial.commands)
    for command in ("startproject mysite", "startapp chat", "makemigrations chat", "migrate", "manage.py test"):
        assert command in ran, f"the tutorial no longer runs {command!r}: {ran}"


def test_the_tutorials_own_tests_pass(tutorial):
    (result,) = [r for line, r in tutorial.commands.items() if line.startswith("python manage.py test")]
    ran = re.search(r"^Ran (\d+) tests? ", result.stderr, re.MULTILINE)
    assert ran and int(ran[1]) >= 3, result.stderr
    assert re.search(r"^OK$", result.stderr, re.MULTILINE), result.stderr


def enter(url: str, **kwargs):
    """Connect as the tutorial's page does: sending nothing, the room's history comes first."""
    ws = connect(url, **kwargs)
    reply = json.loads(ws.recv(timeout=10))
    assert reply["type"] == "history", reply
    return ws, reply["messages"]


def test_two_clients_chat_through_run_wsserver(tutorial, ws_server):
    assert ws_server.wait_for("Routes:").startswith("Routes: 1 from mysite.ws_urls"), "the default WS_URLCONF"
    # One client as a browser on the tutorial's runserver would connect: with its Origin.
    alice, history = enter(ws_server.url("chat/lobby"), origin="http://localhost:8000")
    bob, _ = enter(ws_server.url("chat/lobby"))
    try:
        said = ["hello, bob", "how are you?"]
        for text in said:
            alice.send(json.dumps({"type": "say", "author": "alice", "text": text}))
        for ws in (alice, bob):  # each line once, in order, to both
            messages = [json.loads(ws.recv(timeout=10)) for _ in said]
            assert [(m["type"], m["author"], m["text"]) for m in messages] == [("message", "alice", t) for t in said]
            assert re.match(r"\d{4}-\d\d-\d\dT", messages[0]["created"]), "DjangoJSONEncoder wrote the date"
    finally:
        alice.close()
        bob.close()
    # The line is in the project's database, and a newcomer reads it in the history.
    with sqlite3.connect(tutorial.project / "db.sqlite3") as db:
        rows = db.execute("SELECT author, text FROM chat_message WHERE room = 'lobby' ORDER BY id").fetchall()
    assert rows[-2:] == [("alice", "hello, bob"), ("alice", "how are you?")]
    carol, history = enter(ws_server.url("chat/lobby"))
    carol.close()
    assert [(m["author"], m["text"]) for m in history][-2:] == rows[-2:]


def test_a_path_with_no_route_is_refused_with_404(ws_server):
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:
        connect(ws_server.url("chat/no/such/room"))
    assert refused.value.response.status_code == 404


def test_the_page_has_the_reverse_ws_url_and_the_client_script(http_server):
    url, base_url = http_server
    with urllib.request.urlopen(f"{url}/chat/lobby/", timeout=10) as response:
        page = response.read().decode()
    assert f'new DjangoWebSocket("{base_url}/chat/lobby")' in page, page
    (script,) = re.findall(r'<script src="([^"]+)"', page)
    assert script.endswith("django_ws/django-ws.js")
    with urllib.request.urlopen(url + script, timeout=10) as response:
        assert "DjangoWebSocket" in response.read().decode()


@pytest.mark.browser
def test_two_browser_pages_chat(chromium, ws_server, http_server, tmp_path):
    from playwright.sync_api import expect

    url, _ = http_server
    expect.set_options(timeout=20_000)
    # A line in the room's history: a page that shows it has joined the room.
    seeder, _ = enter(ws_server.url("chat/garden"))
    seeder.send(json.dumps({"type": "say", "author": "gardener", "text": "the roses are out"}))
    seeder.recv(timeout=10)
    seeder.close()
    context = chromium.new_context()
    try:
        pages = [context.new_page() for _ in range(2)]
        for page in pages:
            page.goto(f"{url}/chat/garden/")
            expect(page.locator("#log li")).to_have_text(["gardener: the roses are out"])
        first = pages[0]
        first.fill("#author", "alice")
        first.fill("#text", "hello from a browser")
        first.click("#say button")
        for page in pages:
            expect(page.locator("#log li")).to_have_text(["gardener: the roses are out", "alice: hello from a browser"])
        expect(first.locator("#text")).to_have_value("")
        first.screenshot(path=str(tmp_path / "tutorial-chat.png"), full_page=True)
    finally:
        context.close()


def test_the_reference_pages_name_every_setting_and_every_option():
    """docs/settings.rst and docs/commands.rst keep up with conf.py and the commands' parsers."""
    from django.core.management import load_command_class

    from django_ws.conf import DEFAULTS

    docs = Path(ROOT) / "docs"
    settings_page = (docs / "settings.rst").read_text(encoding="utf-8")
    missing = [name for name in DEFAULTS if not re.search(rf"^``{name}``$", settings_page, re.MULTILINE)]
    assert not missing, f"docs/settings.rst does not document {missing}"
    commands_page = (docs / "commands.rst").read_text(encoding="utf-8")
    for name in ("run_wsserver", "run_wsworker", "ws_send", "ws_keygen"):
        parser = load_command_class("django_ws", name).create_parser("manage.py", name)
        own = [option for action in parser._actions for option in action.option_strings
               if option.startswith("--") and option not in
               ("--help", "--version", "--verbosity", "--settings", "--pythonpath", "--traceback",
                "--no-color", "--force-color", "--skip-checks")]
        undocumented = [option for option in own if f"``{option}" not in commands_page]
        assert not undocumented, f"docs/commands.rst does not document {name} {undocumented}"
