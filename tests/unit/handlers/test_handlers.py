"""Public names, close codes and WebSocketRequest (the handshake as an HttpRequest)."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.test import Client, override_settings

import django_ws
import django_ws.base
from django_ws import CloseCode
from django_ws.handlers.request import WebSocketRequest

META = {
    "path": "/socket/echo",
    "query": "a=1&a=2&b=x",
    "headers": [["Cookie", "sessionid=abc; other=1"], ["User-Agent", "UA"], ["X-Forwarded-For", "1.2.3.4"]],
    "remote_addr": "127.0.0.1",
    "server_name": "localhost",
    "server_port": "8888",
    "secure": False,
}


def request_with(**changes):
    return WebSocketRequest({**META, **changes})


# -- public names ------------------------------------------------------------------


def test_original_import_path_gives_the_same_classes():
    assert django_ws.base.WebSocketHandler is django_ws.WebSocketHandler
    assert django_ws.base.JsonWebSocketHandler is django_ws.JsonWebSocketHandler
    assert django_ws.base.CloseCode is django_ws.CloseCode
    assert issubclass(django_ws.JsonWebSocketHandler, django_ws.WebSocketHandler)


@pytest.mark.parametrize("name", django_ws.__all__)
def test_every_public_name_resolves(name):
    assert getattr(django_ws, name) is not None


def test_star_import_binds_every_public_name():
    namespace = {}
    exec("from django_ws import *", namespace)
    assert set(django_ws.__all__) <= set(namespace)
    assert namespace["WebSocketHandler"] is django_ws.handlers.WebSocketHandler
    assert namespace["reverse_ws"] is django_ws.routing.reverse_ws


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        django_ws.no_such_name


@pytest.mark.parametrize(
    "code, value",
    [
        (CloseCode.NORMAL, 1000),
        (CloseCode.GOING_AWAY, 1001),
        (CloseCode.INTERNAL_ERROR, 1011),
        (CloseCode.SERVICE_RESTART, 1012),
        (CloseCode.TRY_AGAIN_LATER, 1013),
        (CloseCode.INVALID_DATA, 1007),
        (CloseCode.MESSAGE_TOO_BIG, 1009),
    ],
)
def test_close_code_values(code, value):
    assert code == value
    assert int(code) == value


# -- WebSocketRequest ------------------------------------------------------------------


def test_request_path():
    request = request_with()
    assert request.path == "/socket/echo"
    assert request.path_info == "/socket/echo"


def test_request_method_is_get():
    assert request_with().method == "GET"


def test_request_get_keeps_repeated_query_values():
    request = request_with()
    assert request.GET.getlist("a") == ["1", "2"]
    assert request.GET["b"] == "x"
    assert request.META["QUERY_STRING"] == "a=1&a=2&b=x"


def test_request_cookies_are_parsed_from_the_cookie_header():
    assert request_with().COOKIES == {"sessionid": "abc", "other": "1"}


def test_request_headers_appear_in_meta_and_headers():
    request = request_with()
    assert request.META["HTTP_USER_AGENT"] == "UA"
    assert request.META["HTTP_X_FORWARDED_FOR"] == "1.2.3.4"
    assert request.headers["User-Agent"] == "UA"
    assert request.headers["x-forwarded-for"] == "1.2.3.4"


def test_request_connection_details_in_meta():
    meta = request_with().META
    assert meta["REMOTE_ADDR"] == "127.0.0.1"
    assert meta["SERVER_NAME"] == "localhost"
    assert meta["SERVER_PORT"] == "8888"
    assert meta["REQUEST_METHOD"] == "GET"


def test_repeated_headers_are_joined_with_commas():
    request = request_with(headers=[["X-Tag", "a"], ["X-Tag", "b"]])
    assert request.META["HTTP_X_TAG"] == "a,b"


def test_content_type_header_has_no_http_prefix():
    request = request_with(headers=[["Content-Type", "text/plain"]])
    assert request.META["CONTENT_TYPE"] == "text/plain"
    assert "HTTP_CONTENT_TYPE" not in request.META


def test_request_is_not_secure_over_plain_ws():
    assert request_with(secure=False).is_secure() is False


def test_request_is_secure_over_wss():
    assert request_with(secure=True).is_secure() is True


def test_request_scheme_is_https_over_wss():
    request = request_with(secure=True, headers=[["Host", "localhost:8888"]])
    assert request.scheme == "https"
    assert request.build_absolute_uri().startswith("https://")


@override_settings(SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"))
def test_request_behind_tls_proxy_honours_secure_proxy_ssl_header():
    request = request_with(secure=False, headers=[["X-Forwarded-Proto", "https"]])
    assert request.scheme == "https"  # Django's own logic already agrees
    assert request.is_secure() is True


def test_header_with_underscores_cannot_spoof_a_dashed_header():
    request = request_with(headers=[["X_Forwarded_For", "6.6.6.6"], ["X-Forwarded-For", "1.2.3.4"]])
    assert request.META["HTTP_X_FORWARDED_FOR"] == "1.2.3.4"


@pytest.mark.django_db
def test_user_is_anonymous_without_a_valid_session():
    request = request_with()  # sessionid=abc names no stored session
    assert request.session.is_empty()
    assert isinstance(request.user, AnonymousUser)  # SimpleLazyObject proxies __class__
    assert request.user.is_authenticated is False


@pytest.mark.django_db
def test_user_is_anonymous_without_any_cookie():
    request = request_with(headers=[])
    assert request.COOKIES == {}
    assert request.user.is_anonymous


@pytest.mark.django_db
def test_user_comes_from_the_session_cookie():
    user = get_user_model().objects.create_user("alice", password="pw")
    client = Client()
    client.force_login(user)
    session_key = client.cookies["sessionid"].value

    request = request_with(headers=[["Cookie", f"sessionid={session_key}; other=1"]])

    assert request.session.session_key == session_key
    assert request.user == user
    assert request.user.is_authenticated
    assert request.user.get_username() == "alice"


def test_every_connection_a_handler_can_get_has_exactly_the_documented_interface():
    """The worker's connection and the test communicator's offer what HandlerConnection documents."""
    from django_ws.handlers import HandlerConnection
    from django_ws.testing import HandlerCommunicator
    from django_ws.worker.connection import Connection

    worker_side = Connection("e.1", "echo", {"path": "/echo", "query": "", "headers": []}, lambda frames: None)
    assert isinstance(worker_side, HandlerConnection)
    assert isinstance(HandlerCommunicator("echo").connection, HandlerConnection)
