"""WebSocketRequest builds META, GET, COOKIES, session, user... on first access only.

Every open connection keeps its request for as long as it lives, and most
handlers never read it after on_connect: it must cost no more than the
handshake the worker holds anyway, yet behave as the eager version did.
"""

import copy

import pytest
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, QueryDict
from django.http.cookie import parse_cookie
from django.test import override_settings
from django.utils.datastructures import MultiValueDict
from django.utils.functional import SimpleLazyObject

from django_ws.handlers import request as request_module
from django_ws.handlers.request import WebSocketRequest

META = {
    "path": "/socket/chat/lobby",
    "query": "q=%C3%A9t%C3%A9&n=1&n=2",
    "headers": [
        ["Host", "example.com:8443"],
        ["Cookie", "sessionid=abc; theme=dark"],
        ["User-Agent", "UA"],
    ],
    "remote_addr": "10.0.0.7",
    "server_name": "example.com",
    "server_port": "8443",
    "secure": True,
    "subprotocols": [],
}

LAZY = {"META", "GET", "POST", "FILES", "COOKIES", "session", "user", "headers"}


def make(**changes):
    return WebSocketRequest({**META, **changes})


def test_a_new_request_holds_only_the_handshake():
    request = make()
    assert not LAZY & set(vars(request))
    assert request._ws_meta["path"] == "/socket/chat/lobby"


def test_every_attribute_httprequest_init_sets_is_provided():
    # WebSocketRequest does not run HttpRequest.__init__: should a new Django
    # set something more there, this says it must be provided too.
    provided = {"path", "path_info", "method", "resolver_match", "content_type", "content_params",
                *request_module._LAZY}
    assert set(vars(HttpRequest())) <= provided
    request = make()
    for name in vars(HttpRequest()):
        getattr(request, name)


@pytest.mark.django_db
def test_each_part_is_built_once_then_kept():
    request = make()
    assert request.META is request.META
    assert request.GET is request.GET
    assert request.COOKIES is request.COOKIES
    assert request.session is request.session
    assert request.user is request.user
    assert request.headers is request.headers


def test_cookies_do_not_build_meta():
    request = make()
    assert request.COOKIES == {"sessionid": "abc", "theme": "dark"}
    assert "META" not in vars(request)


def test_repeated_cookie_headers_give_the_cookies_meta_shows():
    request = make(headers=[["Cookie", "a=1"], ["Cookie", "b=2"], ["Cookie_X", "c=3"]])
    cookies = request.COOKIES
    assert request.META["HTTP_COOKIE"] == "a=1,b=2"
    assert cookies == parse_cookie(request.META["HTTP_COOKIE"])


@override_settings(ALLOWED_HOSTS=["example.com"])
def test_the_plain_httprequest_attributes_are_there():
    request = make()
    assert request.method == "GET"
    assert request.path == request.path_info == "/socket/chat/lobby"
    assert request.resolver_match is None
    assert request.content_type is None and request.content_params is None
    assert isinstance(request.POST, QueryDict) and not request.POST
    assert isinstance(request.FILES, MultiValueDict) and not request.FILES
    assert request.GET.getlist("n") == ["1", "2"]
    assert request.GET["q"] == "été"
    assert request.get_full_path() == "/socket/chat/lobby?q=%C3%A9t%C3%A9&n=1&n=2"
    assert request.build_absolute_uri("/x") == "https://example.com:8443/x"
    assert request.META["REMOTE_ADDR"] == "10.0.0.7"
    assert repr(request) == "<WebSocketRequest: GET '/socket/chat/lobby?q=%C3%A9t%C3%A9&n=1&n=2'>"


def test_session_and_user_are_lazy_objects_as_before():
    request = make(headers=[])
    assert type(request.user) is SimpleLazyObject  # isinstance() would see the wrapped class
    assert type(request.session) is SimpleLazyObject
    assert isinstance(request.user, AnonymousUser)


def test_values_set_after_construction_win_before_or_after_first_access():
    request = make()
    marker = object()
    request.user = marker  # never looked at before: the lazy one is never built
    assert request.user is marker
    assert request.GET.getlist("n") == ["1", "2"]  # built...
    request.GET = QueryDict("a=1")  # ...and replaced
    assert request.GET["a"] == "1"
    request.META = {"CUSTOM": "1"}
    assert request.headers == {}  # headers follow META as on any HttpRequest


@pytest.mark.django_db
def test_a_deleted_part_is_built_again():
    request = make(headers=[])
    first = request.user
    del request.user
    assert request.user is not first
    assert isinstance(request.user, AnonymousUser)


def test_setting_the_encoding_decodes_get_again():
    request = make(query="q=%E9t%E9")
    request.encoding = "latin-1"
    assert request.GET["q"] == "été"


@override_settings(INSTALLED_APPS=["django.contrib.contenttypes", "django_ws"])
def test_no_session_or_user_without_their_apps():
    request = make()
    assert not hasattr(request, "session")
    assert not hasattr(request, "user")


def test_an_unknown_attribute_is_an_attribute_error():
    request = make()
    try:
        request.nothing_here  # noqa: B018
    except AttributeError as exc:
        assert str(exc) == "'WebSocketRequest' object has no attribute 'nothing_here'"
    else:  # pragma: no cover
        raise AssertionError("no AttributeError")
    assert getattr(request, "_messages", None) is None


def test_a_copy_builds_its_own_parts():
    request = make()
    twin = copy.copy(request)
    assert twin.META == request.META
    assert twin.COOKIES == {"sessionid": "abc", "theme": "dark"}


def test_share_meta_keeps_the_handshake_and_shares_its_repeated_strings():
    from django_ws.handlers.request import share_meta

    first, second = share_meta(copy.deepcopy(META)), share_meta(copy.deepcopy(META))
    assert first == {**META, "headers": tuple(tuple(h) for h in META["headers"])}
    assert list(first) == list(META)
    assert first["headers"][0][1] is second["headers"][0][1]  # Host: one copy for every connection
    assert first["server_name"] is second["server_name"]
    assert WebSocketRequest(first).META == make().META


def test_resolver_match_is_resolved_again_when_dropped():
    calls = []

    def resolve(route):
        calls.append(route)
        return ("match", route)

    request = WebSocketRequest(dict(META), "chat/lobby", resolve)
    assert request.resolver_match == ("match", "chat/lobby")
    assert request.resolver_match == ("match", "chat/lobby") and calls == ["chat/lobby"]  # then kept
    assert make().resolver_match is None  # no route: as HttpRequest's
