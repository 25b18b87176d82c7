"""Credentials that end, on real servers: an expired token, a deactivated user, a logout close their sockets.

docs/security.rst, "Credentials that end", is what these hold the server to.
"""

import json
import os
import subprocess
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import ROOT, django_script, node_client, start_server
from tests.e2e.test_cluster import cluster  # noqa: F401  (a fixture)

SETUP = """
import json
from importlib import import_module
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django_ws.tokens import make_token

def session(user):
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return store.session_key

found = {}
for name in ("cred-deactivated", "cred-password", "cred-logout", "cred-other"):
    user, _ = get_user_model().objects.get_or_create(username=name)
    user.is_active = True
    user.save()
    found[name] = {"pk": user.pk, "sessions": [session(user), session(user)], "token": make_token(user)}
print(json.dumps(found))
"""


def change(server_db, edges, name, statement):
    """In another Django process (as the admin would), with both edges in WS_EDGES: change the user ``name``."""
    django_script(server_db, f"""
from django.contrib.auth import get_user_model
from django.test import override_settings
with override_settings(WS_EDGES={edges!r}):
    user = get_user_model().objects.get(username={name!r})
    {statement}
print("done")
""")


def logout(server_db, edges, session_key):
    django_script(server_db, f"""
from importlib import import_module
from django.conf import settings
from django.contrib.auth import get_user, logout
from django.http import HttpRequest
from django.test import override_settings
request = HttpRequest()
request.session = import_module(settings.SESSION_ENGINE).SessionStore({session_key!r})
request.user = get_user(request)
assert request.user.is_authenticated
with override_settings(WS_EDGES={edges!r}):
    logout(request)
print("done")
""")


@pytest.fixture(scope="module")
def users(server_db):
    return json.loads(django_script(server_db, SETUP))


@pytest.fixture(scope="module")
def two_edges(server_db):
    """Two edges in static mode, each with its own worker; a sender reaches both (WS_EDGES)."""
    a, b = start_server(server_db), start_server(server_db)
    yield a, b
    assert a.stop() == 0 and b.stop() == 0


def with_session(server, key, route="private"):
    ws = connect(server.url(route), additional_headers={"Cookie": f"sessionid={key}"})
    ws.send("{}")
    assert json.loads(ws.recv(timeout=10))["user"] is not None
    return ws


def with_token(server, token):
    ws = connect(server.url("private"), subprotocols=["django-ws.token", f"django-ws.token.{token}"])
    ws.send("{}")
    assert json.loads(ws.recv(timeout=10))["user"] is not None
    return ws


def closed_with(ws, timeout=10.0) -> tuple[int, str]:
    try:
        while True:
            ws.recv(timeout=timeout)
    except ConnectionClosed as exc:
        return exc.rcvd.code, exc.rcvd.reason
    except TimeoutError:
        pytest.fail(f"the connection stayed open for {timeout}s")


def still_open(ws) -> bool:
    ws.send("{}")
    return json.loads(ws.recv(timeout=10))["user"] is not None


def test_a_token_that_expires_closes_its_connection_with_1008(two_edges, server_db):
    a, _ = two_edges
    token = django_script(server_db, """
from django.contrib.auth import get_user_model
from django_ws.tokens import make_token
user, _ = get_user_model().objects.get_or_create(username="cred-expiring")
print(make_token(user, max_age=3))
""")
    ws = with_token(a, token)
    assert closed_with(ws) == (1008, "token expired")


@pytest.mark.parametrize("fresh, reason", [("garbage", "invalid token"), ("other", "token for another user")])
def test_a_fresh_token_that_does_not_verify_closes_the_connection(two_edges, users, fresh, reason):
    a, _ = two_edges
    ws = with_token(a, users["cred-logout"]["token"])
    token = users["cred-other"]["token"] if fresh == "other" else fresh
    ws.send(json.dumps({"dws_token": token}))
    assert closed_with(ws) == (1008, reason)


@pytest.mark.parametrize("name, statement, reason", [
    ("cred-deactivated", "user.is_active = False; user.save()", "user deactivated"),
    ("cred-password", "user.set_password('second'); user.save()", "password changed"),
])
def test_a_user_who_loses_access_loses_every_socket_on_both_edges(two_edges, server_db, users, name, statement, reason):
    a, b = two_edges
    mine = [with_session(a, users[name]["sessions"][0]), with_token(b, users[name]["token"]),
            with_session(b, users[name]["sessions"][1])]
    kept = with_session(a, users[name]["sessions"][0], route="private-kept")
    other = with_session(b, users["cred-other"]["sessions"][0])
    change(server_db, [a.sub_socket, b.sub_socket], name, statement)
    for ws in mine:
        assert closed_with(ws) == (1008, reason)
    assert still_open(other), "another user's socket stays open"
    assert still_open(kept), "a handler with close_with_credentials = False keeps its socket"
    for ws in (kept, other):
        ws.close()


def test_logging_out_closes_the_sockets_of_that_session_only(two_edges, server_db, users):
    a, b = two_edges
    first, second = users["cred-logout"]["sessions"]
    on_a, on_b, elsewhere = with_session(a, first), with_session(b, first), with_session(b, second)
    logout(server_db, [a.sub_socket, b.sub_socket], first)
    assert closed_with(on_a) == (1008, "logged out")
    assert closed_with(on_b) == (1008, "logged out")
    assert still_open(elsewhere), "the user's other session stays logged in"
    elsewhere.close()


class _Mint(BaseHTTPRequestHandler):
    """GET /: a fresh token for the user ``pk`` that lasts 3 s (what a page's token view would return)."""

    pk = None
    minted = 0

    def do_GET(self):
        from django_ws.tokens import make_token

        type(self).minted += 1
        body = make_token(types.SimpleNamespace(pk=self.pk), max_age=3).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_django_ws_js_refreshes_its_token_and_the_connection_stays_open(two_edges, users):
    a, _ = two_edges
    client = node_client("django-ws.js")
    _Mint.pk = users["cred-other"]["pk"]
    mint = ThreadingHTTPServer(("127.0.0.1", 0), _Mint)
    threading.Thread(target=mint.serve_forever, daemon=True).start()
    try:
        result = subprocess.run(
            [client.node, os.path.join(ROOT, "tests", "fixtures", "js_token_refresh.js"), client.script,
             a.url("private"), f"http://127.0.0.1:{mint.server_address[1]}/", "10000"],
            env=dict(os.environ, NODE_PATH=client.node_path), capture_output=True, text=True, timeout=60,
            check=False)
    finally:
        mint.shutdown()
        mint.server_close()
    assert result.returncode == 0, result.stdout + result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["opens"] == 1 and outcome["closes"] == [], "one connection, never closed"
    assert outcome["user"] == "cred-other", "still answered after 10 s"
    assert outcome["tokens"] >= 4, "the first token and at least one fresh one every 2 s"


def test_in_cluster_mode_a_users_close_reaches_its_sockets_on_both_edges_through_redis(cluster, users):
    from django_ws import access, credentials
    from tests.e2e.test_cluster import subscribed
    from tests.e2e.test_hosts import served

    edges = [cluster.edge() for _ in range(2)]
    cluster.worker()
    for edge in edges:
        served(edge, 30)
    name = "cred-other"
    mine = [with_session(edges[0], users[name]["sessions"][0]), with_token(edges[1], users[name]["token"])]
    group = credentials.user_group(str(users[name]["pk"]))
    with cluster.settings():
        for ws in mine:
            subscribed(ws, group)  # the edge's SUBSCRIBE has reached Redis
        access._close(group, "user deactivated")  # what the post_save receiver sends after the commit
    for ws in mine:
        assert closed_with(ws) == (1008, "user deactivated")
