"""Tokens at the handshake (django_ws.tokens), on real servers: who may connect without a session.

docs/security.rst, "Tokens", is what these hold the server to.
"""

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from websockets.sync.client import connect

from django_ws.testing.server import free_port
from tests.conftest import ROOT, SETTINGS, Observer, django_script, node_client, start_server
from tests.e2e.test_security import refused_status

jwt = pytest.importorskip("jwt", reason="PyJWT is in the [jwt] and [test] extras")

MINT_SCRIPT = """
import json
from django.contrib.auth import get_user_model
from django.test import override_settings
from django_ws.tokens import make_token

User = get_user_model()


def user(name):
    found, _ = User.objects.get_or_create(username=name)
    found.is_active = True
    found.save()
    return found


alice, bob = user("tok-alice"), user("tok-bob")
tokens = {
    "alice": make_token(alice),
    "chat": make_token(alice, scope="chat"),
    "expired": make_token(alice, max_age=-1),
    "bob": make_token(bob),
}
with override_settings(SECRET_KEY="somebody-elses-key"):
    tokens["other_key"] = make_token(alice)
print(json.dumps(tokens))
"""

JWT_KEY = "a-shared-secret-long-enough-for-hs512-which-wants-64-bytes-or-more"
JWT_SETTINGS = {"algorithms": ["HS256"], "key": JWT_KEY, "issuer": "https://id.example",
                "audience": "django-ws-tests"}


@pytest.fixture(scope="module")
def tokens(server_db):
    return json.loads(django_script(server_db, MINT_SCRIPT))


@pytest.fixture(scope="module")
def token_server(server_db):
    """Two workers, JWT enabled, and every logger printing at DEBUG (for the log test)."""
    srv = start_server(server_db, workers=2, env={"DJANGO_WS_JWT": json.dumps(JWT_SETTINGS), "DJANGO_WS_LOG_ALL": "1"})
    yield srv
    assert srv.stop() == 0


def whoami(url: str, **kwargs) -> tuple[str | None, str | None]:
    """(the user the handler sees, the subprotocol the server selected)."""
    with connect(url, **kwargs) as ws:
        ws.send("{}")
        return json.loads(ws.recv(timeout=10))["user"], ws.subprotocol


def with_token(url: str, token: str) -> str:
    return f"{url}?access_token={token}"


def jwt_token(**overrides) -> str:
    claims = {"sub": "tok-alice", "iss": JWT_SETTINGS["issuer"], "aud": JWT_SETTINGS["audience"],
              "exp": int(time.time()) + 60}
    key, algorithm = overrides.pop("_key", JWT_KEY), overrides.pop("_alg", "HS256")
    claims.update(overrides)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm=algorithm)


# -- tokens of make_token() -----------------------------------------------------------------


def test_a_valid_token_makes_its_user_the_request_user_in_every_carrier(token_server, tokens):
    url = token_server.url("whoami")
    assert whoami(with_token(url, tokens["alice"])) == ("tok-alice", None)
    assert whoami(url, additional_headers={"Authorization": f"Bearer {tokens['alice']}"}) == ("tok-alice", None)
    # Browsers: the token as a subprotocol; the server selects the marker, so the browser accepts.
    offered = ["django-ws.token", f"django-ws.token.{tokens['alice']}"]
    assert whoami(url, subprotocols=offered) == ("tok-alice", "django-ws.token")
    assert whoami(url) == (None, None), "no token, no session: AnonymousUser"


def test_login_required_and_permission_required_work_with_a_token(token_server, tokens):
    assert refused_status(token_server.url("private")) == 403
    assert whoami(with_token(token_server.url("private"), tokens["alice"]))[0] == "tok-alice"
    assert refused_status(with_token(token_server.url("perm"), tokens["alice"])) == 403, "alice lacks the permission"


@pytest.mark.parametrize("case, status", [
    ("expired", 401),
    ("forged", 401),
    ("other_key", 401),
    ("garbage", 401),
])
def test_a_bad_token_is_refused_before_any_handler_runs(token_server, tokens, case, status):
    bad = {"forged": tokens["alice"][:-2] + ("AA" if not tokens["alice"].endswith("AA") else "BB"),
           "garbage": "not-a-token"}.get(case) or tokens[case]
    observer = Observer(token_server)
    try:
        assert refused_status(with_token(token_server.url(f"tokenlog/{case}"), bad)) == status
        with connect(with_token(token_server.url("tokenlog/after"), tokens["alice"])) as ws:
            ws.send("{}")
            ws.recv(timeout=10)
        report = observer.wait(event="connect")
        assert report["tag"] == "after" and report["user"] == "tok-alice", (
            f"the refused handshake ({case}) must not have reached on_connect; first report: {report}")
    finally:
        observer.close()


def test_scopes_must_match(token_server, tokens):
    scoped = token_server.url("scoped")
    assert whoami(with_token(scoped, tokens["chat"]))[0] == "tok-alice"
    assert refused_status(with_token(scoped, tokens["alice"])) == 403, "an unscoped token on a scoped handler"
    assert refused_status(with_token(token_server.url("whoami"), tokens["chat"])) == 403, (
        "a token minted for one scope is not good everywhere")


def test_a_deactivated_users_token_stops_working(token_server, tokens, server_db):
    url = with_token(token_server.url("whoami"), tokens["bob"])
    assert whoami(url)[0] == "tok-bob"
    django_script(server_db, "from django.contrib.auth import get_user_model\n"
                             "get_user_model().objects.filter(username='tok-bob').update(is_active=False)\nprint('ok')")
    try:
        assert refused_status(url) == 401
    finally:
        django_script(server_db, "from django.contrib.auth import get_user_model\n"
                                 "get_user_model().objects.filter(username='tok-bob').update(is_active=True)\nprint('ok')")


# -- JSON Web Tokens ---------------------------------------------------------------------------


def test_a_jwt_with_the_right_issuer_audience_and_key_gives_its_user(token_server, tokens):
    assert whoami(with_token(token_server.url("whoami"), jwt_token()))[0] == "tok-alice"
    assert whoami(with_token(token_server.url("scoped"), jwt_token(scope="read chat")))[0] == "tok-alice"
    assert whoami(with_token(token_server.url("scoped"), jwt_token(scope=["read", "chat"])))[0] == "tok-alice"


@pytest.mark.parametrize("case, claims, status", [
    ("wrong audience", {"aud": "another-service"}, 401),
    ("wrong issuer", {"iss": "https://evil.example"}, 401),
    ("expired", {"exp": int(time.time()) - 600}, 401),
    ("no expiry", {"exp": None}, 401),
    ("wrong key", {"_key": "another-secret-long-enough-for-hs512-which-wants-64-bytes-or-more!"}, 401),
    ("algorithm not allowed", {"_alg": "HS512"}, 401),
    ("alg none", {"_alg": "none", "_key": None}, 401),
    ("unknown user", {"sub": "nobody-here"}, 401),
    ("wrong scope", {"scope": "read"}, 403),
], ids=lambda v: v if isinstance(v, str) else None)
def test_a_bad_jwt_is_refused(token_server, tokens, case, claims, status):
    token = jwt_token(**claims)
    if case == "alg none":
        assert json.loads(jwt.utils.base64url_decode(token.split(".")[0]))["alg"] == "none"
    route = "scoped" if case == "wrong scope" else "whoami"
    assert refused_status(with_token(token_server.url(route), token)) == status, case


class _JWKS(BaseHTTPRequestHandler):
    body = b""
    hits = 0

    def do_GET(self):
        type(self).hits += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def test_a_jwt_signed_with_a_key_from_a_jwks_url(make_server, tokens):
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    _JWKS.body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()
    http = ThreadingHTTPServer(("127.0.0.1", free_port()), _JWKS)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        config = {**JWT_SETTINGS, "algorithms": ["RS256"], "key": None,
                  "jwks_url": f"http://127.0.0.1:{http.server_port}/jwks.json"}
        srv = make_server(env={"DJANGO_WS_JWT": json.dumps(config)})
        claims = {"sub": "tok-alice", "iss": config["issuer"], "aud": config["audience"], "exp": int(time.time()) + 60}
        good = jwt.encode(claims, private, algorithm="RS256", headers={"kid": "k1"})
        assert whoami(with_token(srv.url("whoami"), good))[0] == "tok-alice"
        assert whoami(with_token(srv.url("whoami"), good))[0] == "tok-alice"
        assert _JWKS.hits == 1, "the JWKS is fetched once, then cached"
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": "k1"})
        assert refused_status(with_token(srv.url("whoami"), forged)) == 401
        unknown_kid = jwt.encode(claims, private, algorithm="RS256", headers={"kid": "k2"})
        assert refused_status(with_token(srv.url("whoami"), unknown_kid)) == 401
        # An HS256 token where RS256 is expected.
        assert refused_status(with_token(srv.url("whoami"), jwt_token(_alg="HS256"))) == 401
    finally:
        http.shutdown()
        http.server_close()
    # The JWKS unreachable: the server's problem, so 503, not a verdict on the token.
    down = make_server(env={"DJANGO_WS_JWT": json.dumps(config)})
    assert refused_status(with_token(down.url("whoami"), good)) == 503
    assert "could not be fetched" in down.wait_for("the JWKS at")


def test_an_incomplete_ws_jwt_stops_the_server_with_the_fix(server_db):
    env = dict(os.environ, DJANGO_SETTINGS_MODULE=SETTINGS, DJANGO_WS_TEST_DB=server_db, PYTHONPATH=ROOT,
               DJANGO_WS_JWT=json.dumps({"algorithms": ["none"], "key": "k"}))
    result = subprocess.run([sys.executable, "-m", "django", "check"], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "django_ws.E006" in result.stderr
    assert '"none" is not an algorithm' in result.stderr and '"issuer" is required' in result.stderr, result.stderr


# -- logs ----------------------------------------------------------------------------------------


def test_a_token_appears_in_no_log_line(server_db, tokens):
    """Every logger of the edge and the workers at DEBUG, Tornado's access log included: no token."""
    srv = start_server(server_db, workers=2, env={"DJANGO_WS_JWT": json.dumps(JWT_SETTINGS), "DJANGO_WS_LOG_ALL": "1"})
    secrets = {"signed": tokens["alice"], "expired": tokens["expired"], "jwt": jwt_token(),
               "bad jwt": jwt_token(aud="nope")}
    try:
        assert whoami(with_token(srv.url("whoami"), secrets["signed"]))[0] == "tok-alice"
        assert whoami(f"{srv.url('whoami')}?a=1&access%5Ftoken={secrets['jwt']}")[0] == "tok-alice"
        assert refused_status(with_token(srv.url("whoami"), secrets["expired"])) == 401
        assert refused_status(with_token(srv.url("whoami"), secrets["bad jwt"])) == 401
        assert refused_status(with_token(srv.url("no/such/route"), secrets["signed"])) == 404
        assert refused_status(with_token(f"ws://127.0.0.1:{srv.port}/elsewhere", secrets["signed"])) == 404
        srv.wait_for("401 GET")  # the access log is on, at the level of a refusal too
    finally:
        assert srv.stop() == 0  # and the output is read to its end
    output = "\n".join(srv.lines)
    leaked = [name for name, secret in secrets.items() if secret in output]
    assert not leaked, f"tokens {leaked} appear in the server's output"
    # Not vacuous: the access log did log these handshakes, redacted.
    assert "101 GET /socket/whoami?access_token=[redacted]" in output, output[-3000:]
    assert "a=1&access%5Ftoken=[redacted]" in output, "an encoded name is the same parameter"


# -- the browser client --------------------------------------------------------------------------

@pytest.mark.parametrize("token_in", ["protocol", "query", "protocol-after-a-failed-fetch"])
def test_the_js_client_fetches_a_fresh_token_before_each_connect(token_server, tokens, token_in):
    client = node_client("django-ws.js")
    mode, failing = token_in.split("-")[0], token_in.endswith("failed-fetch")
    sequence = [tokens["alice"], "REJECT", tokens["bob"]] if failing else [tokens["alice"], tokens["bob"]]
    result = subprocess.run(
        [client.node, os.path.join(ROOT, "tests", "fixtures", "js_token_client.js"), client.script, token_server.url("whoami"),
         mode, *sequence],
        env=dict(os.environ, NODE_PATH=client.node_path), capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["calls"] == len(sequence), "the token function runs before the connect and each reconnect"
    assert outcome["errors"] == int(failing), "a failed fetch is reported to onerror, then retried"
    assert [s["user"] for s in outcome["seen"]] == ["tok-alice", "tok-bob"], "each connect used its fresh token"
    if mode == "protocol":
        assert {s["protocol"] for s in outcome["seen"]} == {"django-ws.token"}
        assert all(s["query"] == {} for s in outcome["seen"]), "the token stayed out of the URL"
    else:
        assert outcome["seen"][1]["query"] == {"access_token": tokens["bob"]}
