"""django_ws.edge.publish: keys, rate limits and bodies of the HTTP publish API, without a server."""

import base64
import json

import pytest
from django.test import override_settings

from django_ws import wire
from django_ws.edge.publish import BadRequest, Publisher


def publisher(**settings) -> Publisher:
    with override_settings(**{"WS_API_KEYS": {"a": "key-a", "b": "key-b"}, "WS_MAX_MESSAGE_SIZE": 16, **settings}):
        return Publisher("ipc:///nowhere/sub")


def test_a_bearer_key_names_its_key_and_nothing_else_does():
    p = publisher()
    assert p.enabled
    assert p.authorize("Bearer key-a") == "a" and p.authorize("bearer key-b") == "b"
    for header in (None, "", "key-a", "Basic key-a", "Bearer key-", "Bearer key-aa", "Bearer \udcff"):
        assert p.authorize(header) is None, header
    assert not publisher(WS_API_KEYS=[]).enabled
    assert publisher(WS_API_KEYS=["k0", "k1"]).authorize("Bearer k1") == "1"


def test_each_key_has_its_own_token_bucket():
    p = publisher(WS_API_RATE=2)
    assert p.admit("a", 0.0) is None and p.admit("a", 0.0) is None
    assert p.admit("a", 0.0) == pytest.approx(0.5), "two at once, then one per half second"
    assert p.admit("b", 0.0) is None
    assert p.admit("a", 0.5) is None
    off = publisher(WS_API_RATE=0)
    assert all(off.admit("a", 0.0) is None for _ in range(1000))


def parsed(p, body):
    make, key = p.parse(json.dumps(body).encode())
    return make("ref"), key


def test_a_body_becomes_the_message_send_to_group_or_send_to_connection_would_send():
    p = publisher()
    assert parsed(p, {"group": "g", "data": "hé", "exclude": "e.1", "key": "k"}) == (
        wire.GroupSend("g", "e.1", False, "hé".encode(), "ref"), "k")
    assert parsed(p, {"connection": "e.2", "data": base64.b64encode(b"\x00\x01").decode(), "binary": True}) == (
        wire.SendTo("e.2", True, b"\x00\x01", "ref"), None)


@pytest.mark.parametrize("body, status", [
    ({"group": "g", "data": "x" * 17}, 413),
    ({"group": "g", "data": base64.b64encode(b"x" * 17).decode(), "binary": True}, 413),
    ({"group": "g", "data": "\ud800"}, 400),
    ({"group": 3, "data": "x"}, 400),
    ({"group": "g", "data": "x", "exclude": 4}, 400),
    ({"group": "g", "data": "x", "key": "k" * 201}, 400),
])
def test_a_bad_body_is_refused_with_its_status(body, status):
    with pytest.raises(BadRequest) as bad:
        publisher().parse(json.dumps(body).encode())
    assert bad.value.status == status
