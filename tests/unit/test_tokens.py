"""django_ws.tokens in process: the handshake through HandlerCommunicator, and the edge's log redaction.

The same behaviour on real servers, logs included, is in tests/e2e/test_tokens.py.
"""

import time

import pytest
from django.contrib.auth.models import User
from django.test import TestCase, override_settings

from django_ws.edge.logs import redact_uri
from django_ws.testing import HandlerCommunicator
from django_ws.tokens import SUBPROTOCOL, make_token, strip_token_subprotocols, token_from_request, verify_token


class TokenHandshakeTests(TestCase):
    def setUp(self):
        self.alice = User.objects.create_user("alice", password="pw")

    def connect(self, route: str, **kwargs) -> HandlerCommunicator:
        communicator = HandlerCommunicator(route, **kwargs)
        communicator.connect()
        self.addCleanup(communicator.close)
        return communicator

    def whoami(self, route: str = "whoami", **kwargs) -> str | None:
        communicator = self.connect(route, **kwargs)
        assert communicator.accepted, f"expected the handshake to be accepted, got {communicator.deny_status}"
        communicator.send_json({})
        return communicator.receive_json()["user"]

    def test_each_carrier(self):
        token = make_token(self.alice)
        assert self.whoami(query=f"access_token={token}") == "alice"
        assert self.whoami(headers={"Authorization": f"Bearer {token}"}) == "alice"
        assert self.whoami(subprotocols=(SUBPROTOCOL, f"{SUBPROTOCOL}.{token}")) == "alice"

    def test_the_handlers_own_subprotocol_choice_stands(self):
        offered = ("a", "b", SUBPROTOCOL, f"{SUBPROTOCOL}.{make_token(self.alice)}")
        assert self.connect("subprotocol", subprotocols=offered).subprotocol == "b"
        assert self.connect("subprotocol", query="pick=none", subprotocols=offered).subprotocol == SUBPROTOCOL, (
            "when the handler picks none, the marker, so that a browser accepts the upgrade")

    def test_login_required_is_satisfied_by_a_token(self):
        assert self.connect("private").deny_status == 403
        assert self.whoami("private", query=f"access_token={make_token(self.alice)}") == "alice"

    def test_refusals(self):
        cases = {
            "expired": (make_token(self.alice, max_age=-1), 401),
            "tampered": (make_token(self.alice)[:-1] + "x", 401),
            "wrong scope": (make_token(self.alice, scope="admin"), 403),
        }
        for case, (token, status) in cases.items():
            assert self.connect("whoami", query=f"access_token={token}").deny_status == status, case
        self.alice.is_active = False
        self.alice.save()
        assert self.connect("whoami", query=f"access_token={make_token(self.alice)}").deny_status == 401
        self.alice.delete()
        assert self.connect("whoami", query=f"access_token={make_token(User(pk=4242))}").deny_status == 401

    def test_a_scoped_handler_wants_its_scope(self):
        assert self.whoami("scoped", query=f"access_token={make_token(self.alice, scope='chat')}") == "alice"
        assert self.connect("scoped", query=f"access_token={make_token(self.alice)}").deny_status == 403

    def test_max_age_defaults_to_the_setting(self):
        with override_settings(WS_TOKEN_MAX_AGE=60):
            _, claims = verify_token(make_token(self.alice))
        assert 55 <= claims["e"] - time.time() <= 60

    def test_the_query_parameter_is_a_setting(self):
        token = make_token(self.alice)
        with override_settings(WS_TOKEN_QUERY_PARAM="ticket"):
            assert self.whoami(query=f"ticket={token}") == "alice"
            assert self.whoami(query=f"access_token={token}") is None, "no longer read from there"
        with override_settings(WS_TOKEN_QUERY_PARAM=None):
            assert token_from_request({"query": f"access_token={token}"}) is None


def test_the_handler_chooses_from_the_other_subprotocols():
    offered = ["chat.v2", SUBPROTOCOL, f"{SUBPROTOCOL}.abc~def"]
    assert strip_token_subprotocols(offered) == (["chat.v2"], True)
    assert strip_token_subprotocols(["chat.v2"]) == (["chat.v2"], False)


def test_tokens_are_valid_subprotocol_names():
    """RFC 6455 subprotocols are RFC 7230 tokens: a browser refuses anything else."""
    import re

    tchar = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
    for scope in (None, "chat", "a scope with spaces"):
        token = make_token(User(pk=7), scope=scope)
        assert tchar.match(f"{SUBPROTOCOL}.{token}"), token


def test_the_header_wins_over_the_subprotocol_and_the_query():
    meta = {"headers": [["Authorization", "Bearer from-header"]], "subprotocols": [f"{SUBPROTOCOL}.from-proto"],
            "query": "access_token=from-query"}
    assert token_from_request(meta) == "from-header"
    assert token_from_request({**meta, "headers": []}) == "from-proto"
    assert token_from_request({**meta, "headers": [], "subprotocols": []}) == "from-query"
    assert token_from_request({"headers": [["Authorization", "Basic abc"]]}) is None


@pytest.mark.parametrize("uri, logged", [
    ("/socket/chat?access_token=secret", "/socket/chat?access_token=[redacted]"),
    ("/socket/chat?a=1&access_token=secret&b=2", "/socket/chat?a=1&access_token=[redacted]&b=2"),
    ("/socket/chat?access%5Ftoken=secret", "/socket/chat?access%5Ftoken=[redacted]"),
    ("/socket/chat?access_token=one&access_token=two", "/socket/chat?access_token=[redacted]&access_token=[redacted]"),
    ("/socket/chat?my_access_token=kept", "/socket/chat?my_access_token=kept"),
    ("/socket/chat", "/socket/chat"),
])
def test_the_edge_redacts_the_token_parameter(uri, logged):
    assert redact_uri(uri) == logged
