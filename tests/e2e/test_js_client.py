"""django-ws.js under Node against a real server: when it reconnects and when it stops, request(), events.

Each test runs one scenario of tests/fixtures/js_client_rules.js (Node and the ws npm package, see node_client()).
"""

import json
import os
import subprocess

import pytest

from tests.conftest import ROOT, node_client, require, start_server


@pytest.fixture(scope="module")
def client_server(server_db):
    srv = start_server(server_db, mode="threaded")
    yield srv
    assert srv.stop() == 0


def run(server, scenario: str, *args: str) -> dict:
    client = node_client("django-ws.js")
    result = subprocess.run(
        [client.node, os.path.join(ROOT, "tests", "fixtures", "js_client_rules.js"), client.script, scenario, server.url(""), *args],
        env=dict(os.environ, NODE_PATH=client.node_path), capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_refused_with_403_the_client_tries_once_and_stops(client_server):
    outcome = run(client_server, "refused")
    assert outcome["attempts"] == 1, "a refused handshake is not retried"
    assert outcome["code"] == 1006  # what a browser, and ws, report for a refused handshake
    assert outcome["stopped"] is True and outcome["readyState"] == 3
    assert "stopped before the socket opened (refused)" in outcome["opened"]["error"]
    assert "403 GET /socket/private" in client_server.wait_for("/socket/private")


def test_should_reconnect_overrides_the_refusal_rule(client_server):
    outcome = run(client_server, "refusedRetried")
    assert outcome["attempts"] == 3
    assert outcome["refused"] == [True, True, True]
    assert outcome["stopped"] is True


def test_closes_that_stop_the_client_and_closes_it_comes_back_from(client_server):
    final, transient, overridden = ["1003", "1008", "1009", "4000", "4999"], ["1000", "1012", "1013", "3000"], ["4000:yes"]
    outcome = run(client_server, "codes", *final, *transient, *overridden)
    for code in final:
        assert outcome[code] == {"received": int(code), "stopped": True, "attempts": 1}, code
    for code in transient + overridden:
        assert outcome[code] == {"received": int(code.split(":")[0]), "stopped": False, "attempts": 2}, code


def test_request_resolves_with_what_the_on_type_method_returned(client_server):
    outcome = run(client_server, "request")
    assert outcome["early"] == {"value": 3}, "a request made before the open is queued and answered"
    assert outcome["several"] == [10, 12, 14]
    assert outcome["nothing"] == {"value": None}
    assert "no @on_type method for type 'nope'" in outcome["unknown"]["error"]
    assert "takes an object" in outcome["notAnObject"]["error"]
    assert outcome["json"] == [{"echo": {"plain": True}}], "replies are not messages of the application"
    assert "the connection closed (4001) before the reply came" in outcome["closedFirst"]["error"]
    assert "no reply to request 1 within 100 ms" in outcome["timeout"]["error"]
    assert "within 50 ms" in outcome["perCall"]["error"]


def test_add_event_listener_beside_the_on_properties_and_the_opened_promise(client_server):
    outcome = run(client_server, "events")
    assert outcome["seen"] == [["property", 1], ["listener", 1], ["once", 1], ["property", 2], ["listener", 2],
                               ["property", 3]]
    assert outcome["openType"] == "open"
    assert outcome["closeCode"] == 1000 and outcome["stopped"] is True
    assert outcome["openedAfterClose"]["error"].endswith("(closed by the page)")


def test_zero_is_a_value_for_the_options():
    outcome = run(type("NoServer", (), {"url": staticmethod(lambda path: "ws://127.0.0.1:9/")})(), "defaults")
    assert outcome["queueFull"] == "django-ws: send queue full (0)"
    assert outcome["zeroDelay"] == 0
    assert outcome["zero"] == [0, 0, 0]
    assert outcome["defaults"] == [500, 30000, 1000, 30000]
    assert outcome["stopped"] == [True, True]
    assert "has stopped" in outcome["afterStop"]


def test_a_typical_use_type_checks_against_the_declarations(tmp_path):
    """tsc --strict on tests/fixtures/js_typed_use.ts, with "django-ws-edge" resolved to the installed django-ws.d.ts."""
    import shutil

    client = node_client("django-ws.d.ts")
    tsc = os.path.join(client.node_path, ".bin", "tsc")
    if not os.access(tsc, os.X_OK):
        tsc = shutil.which("tsc")
    # .ci/run installs typescript beside ws: there a missing tsc fails the test.
    require(tsc is not None, f"no tsc in {client.node_path}/.bin or on PATH (npm install typescript there)")
    config = {
        "compilerOptions": {
            "strict": True, "noEmit": True, "target": "es2020", "module": "es2020", "moduleResolution": "node",
            "lib": ["es2020", "dom"], "types": [], "baseUrl": ".",
            "paths": {"django-ws-edge": [client.script]},
        },
        "files": [os.path.join(ROOT, "tests", "fixtures", "js_typed_use.ts")],
    }
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))
    result = subprocess.run([tsc, "-p", str(tmp_path / "tsconfig.json")], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
