"""ws_path(), include(), resolve_ws(), reverse_ws() and Mount, against tests/project's routes."""

import re
import sys

import pytest
from django.test import override_settings
from django.urls import NoReverseMatch, Resolver404

from django_ws.routing import Mount, WebSocketRoute, get_ws_urlconf, include, resolve_ws, reverse_ws, ws_path
from tests.project import handlers

LAZY_MODULE = "tests.fixtures.lazy_handlers"


# -- ws_path -----------------------------------------------------------------------


def test_ws_path_regex_captures_named_groups_as_kwargs():
    route = ws_path(r"^chat/(?P<room>\w+)$", handlers.EchoHandler, name="chat")
    assert isinstance(route, WebSocketRoute)
    match = route.resolve("chat/lobby")
    assert match.func is handlers.EchoHandler
    assert match.kwargs == {"room": "lobby"}
    assert match.url_name == "chat"
    assert route.resolve("chat/") is None
    assert route.resolve("chat/lobby/extra") is None


def test_ws_path_extra_kwargs_are_merged_with_captured_ones():
    route = ws_path(r"^chat/(?P<room>\w+)$", handlers.EchoHandler, {"mode": "read"})
    assert route.resolve("chat/x").kwargs == {"room": "x", "mode": "read"}


def test_ws_path_rejects_kwargs_that_are_not_a_dict():
    with pytest.raises(TypeError, match="kwargs must be a dict"):
        ws_path(r"^x$", handlers.EchoHandler, [("a", 1)])


def test_dotted_handler_is_imported_lazily_on_first_resolve(monkeypatch):
    monkeypatch.delitem(sys.modules, LAZY_MODULE, raising=False)
    route = ws_path(r"^lazy$", f"{LAZY_MODULE}.LazyHandler", name="lazy")
    assert LAZY_MODULE not in sys.modules
    assert route.lookup_str == f"{LAZY_MODULE}.LazyHandler"
    assert "LazyHandler" in repr(route)

    match = route.resolve("lazy")

    assert LAZY_MODULE in sys.modules
    assert match.func is sys.modules[LAZY_MODULE].LazyHandler
    assert route.callback is match.func


def test_dotted_handler_that_does_not_exist_raises_import_error_naming_it():
    route = ws_path(r"^ghost$", "tests.project.handlers.NoSuchHandler")
    with pytest.raises(ImportError, match="NoSuchHandler"):
        route.handler


def test_dotted_handler_that_is_not_a_handler_raises_type_error_when_imported():
    route = ws_path(r"^visit$", "tests.project.models.Visit")
    with pytest.raises(TypeError, match="not a WebSocketHandler subclass"):
        route.handler


def test_ws_path_rejects_a_handler_instance():
    instance = handlers.EchoHandler.__new__(handlers.EchoHandler)  # no connection needed for this check
    with pytest.raises(TypeError, match="pass the handler class, not an instance"):
        ws_path(r"^echo$", instance)


@pytest.mark.parametrize("not_a_handler", [dict, object, int, lambda request: None])
def test_ws_path_rejects_a_class_or_callable_that_is_not_a_handler(not_a_handler):
    with pytest.raises(TypeError, match="not a WebSocketHandler subclass"):
        ws_path(r"^x$", not_a_handler)


def test_ws_path_rejects_a_leading_slash_and_suggests_the_fix():
    with pytest.raises(ValueError, match="'chat/x'"):
        ws_path(r"/chat/x", handlers.EchoHandler)


# -- resolve_ws --------------------------------------------------------------------


def test_resolve_ws_returns_the_handler_class_as_func():
    match = resolve_ws("echo")
    assert match.func is handlers.EchoHandler
    assert match.kwargs == {}
    assert match.url_name == "echo"


def test_resolve_ws_passes_captured_kwargs():
    match = resolve_ws("open/true")
    assert match.func is handlers.OpenContractHandler
    assert match.kwargs == {"result": "true"}


def test_resolve_ws_passes_route_extra_kwargs_and_imports_dotted_handler():
    match = resolve_ws("info")
    assert match.func is handlers.InfoHandler
    assert match.kwargs == {"extra": "yes"}


def test_resolve_ws_through_an_include_with_namespace():
    match = resolve_ws("shop/item/3")
    assert match.func is handlers.InfoHandler
    assert match.kwargs == {"pk": "3"}
    assert match.namespace == "shop"
    assert match.url_name == "item"
    assert match.view_name == "shop:item"


def test_include_returns_the_triple_ws_path_turns_into_a_resolver():
    module, app_name, namespace = include("tests.project.shop_ws_urls", namespace="shop")
    assert (app_name, namespace) == ("shop", "shop")
    resolver = ws_path(r"^shop/", (module, app_name, namespace))
    assert resolver.resolve("shop/item/7").kwargs == {"pk": "7"}


@pytest.mark.parametrize("route", ["nope", "echo/", "/echo", "echoo", "open/maybe", "shop/item/x", "shop/item/"])
def test_resolve_ws_raises_resolver404_for_unknown_routes(route):
    with pytest.raises(Resolver404):
        resolve_ws(route)


# -- reverse_ws --------------------------------------------------------------------


def test_reverse_ws_prepends_ws_base_url():
    assert reverse_ws("echo") == "ws://testserver:8888/socket/echo"


def test_reverse_ws_with_keyword_arguments():
    assert reverse_ws("open", result="true") == "ws://testserver:8888/socket/open/true"


def test_reverse_ws_with_kwargs_dict():
    assert reverse_ws("open", kwargs={"result": "false"}) == "ws://testserver:8888/socket/open/false"


def test_reverse_ws_namespaced_route():
    assert reverse_ws("shop:item", pk=3) == "ws://testserver:8888/socket/shop/item/3"


def test_reverse_ws_with_positional_args():
    assert reverse_ws("open", args=["none"]) == "ws://testserver:8888/socket/open/none"
    assert reverse_ws("shop:item", args=[42]) == "ws://testserver:8888/socket/shop/item/42"


def test_reverse_ws_explicit_base_url_wins():
    assert reverse_ws("echo", base_url="wss://edge.example/") == "wss://edge.example/echo"


def test_reverse_ws_refuses_kwargs_dict_and_keywords_together():
    with pytest.raises(TypeError, match="not both"):
        reverse_ws("open", kwargs={"result": "true"}, result="true")


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("nope", {}),
        ("open", {"result": "maybe"}),
        ("open", {}),
        ("echo", {"extra": "x"}),
        ("item", {"pk": 3}),  # needs its namespace
        ("shop:item", {"pk": "abc"}),
        ("shop:nope", {}),
    ],
)
def test_reverse_ws_raises_no_reverse_match(name, kwargs):
    with pytest.raises(NoReverseMatch):
        reverse_ws(name, kwargs=kwargs or None)


def test_ws_base_url_setting_changes_the_base():
    with override_settings(WS_BASE_URL="wss://example.com/ws/"):
        assert reverse_ws("echo") == "wss://example.com/ws/echo"
        assert reverse_ws("shop:item", pk=1) == "wss://example.com/ws/shop/item/1"
    assert reverse_ws("echo") == "ws://testserver:8888/socket/echo"


def test_reverse_ws_of_a_good_route_works_while_another_route_has_a_broken_dotted_handler():
    with override_settings(WS_URLCONF="tests.fixtures.bad_ws_urls"):
        assert resolve_ws("echo").func is handlers.EchoHandler  # resolving is fine
        assert reverse_ws("echo") == "ws://testserver:8888/socket/echo"


# -- DEFAULT_WS_HANDLERS (the original namespace mapping) ---------------------------


@pytest.mark.parametrize(
    "route, handler",
    [("", handlers.EchoHandler), ("default", handlers.EchoHandler), ("upper", handlers.UpperHandler)],
)
def test_default_ws_handlers_namespaces_resolve(route, handler):
    match = resolve_ws(route)
    assert match.func is handler
    assert match.kwargs == {"namespace": route}


def test_unknown_legacy_namespace_is_resolver404():
    with pytest.raises(Resolver404):
        resolve_ws("missing")


def test_ws_urls_routes_come_before_legacy_namespaces():
    urlconf = get_ws_urlconf()
    assert urlconf.source == "tests.project.ws_urls"
    assert set(urlconf.legacy_regexes.values()) == {"default", "upper"}


def test_override_default_ws_handlers_is_picked_up_and_restored():
    before = get_ws_urlconf()
    with override_settings(DEFAULT_WS_HANDLERS={"shout": "tests.project.handlers.UpperHandler"}):
        assert get_ws_urlconf() is not before
        assert resolve_ws("shout").func is handlers.UpperHandler
        for gone in ("upper", "default", ""):
            with pytest.raises(Resolver404):
                resolve_ws(gone)
        assert resolve_ws("echo").func is handlers.EchoHandler  # ws_urls routes stay
    assert resolve_ws("upper").func is handlers.UpperHandler
    with pytest.raises(Resolver404):
        resolve_ws("shout")


def test_override_ws_urlconf_is_picked_up():
    with override_settings(WS_URLCONF="tests.fixtures.not_a_handler_ws_urls"):
        assert get_ws_urlconf().source == "tests.fixtures.not_a_handler_ws_urls"
        with pytest.raises(Resolver404):
            resolve_ws("echo")
    assert resolve_ws("echo").func is handlers.EchoHandler


# -- Mount (--websocket-url) ---------------------------------------------------------


def test_mount_plain_prefix():
    mount = Mount("/socket")
    assert mount.prefix == "/socket"
    assert mount.namespace_regex is None


@pytest.mark.parametrize("url", ["/socket/", "socket", "socket/"])
def test_mount_normalises_slashes(url):
    assert Mount(url).prefix == "/socket"


def test_mount_with_namespace_group():
    mount = Mount(r"/socket/(?P<namespace>\w*)")
    assert mount.prefix == "/socket"
    assert mount.namespace_regex.pattern == r"\w*"


def test_mount_resolve_empty_route_reaches_the_default_handler():
    match = Mount("/socket").resolve("")
    assert match.func is handlers.EchoHandler
    assert match.kwargs == {"namespace": ""}


def test_mount_resolve_unknown_route_is_none():
    assert Mount("/socket").resolve("nope") is None


def test_mount_namespace_group_must_match_legacy_namespaces():
    mount = Mount("/socket/(?P<namespace>[a-z]+)")
    assert mount.resolve("") is None  # '' does not match [a-z]+
    assert mount.resolve("upper").func is handlers.UpperHandler
    assert mount.resolve("default").func is handlers.EchoHandler


def test_mount_namespace_group_does_not_filter_ws_urls_routes():
    mount = Mount("/socket/(?P<namespace>[a-z]+)")
    assert mount.resolve("echo").func is handlers.EchoHandler
    assert mount.resolve("open/true").kwargs == {"result": "true"}
    assert mount.resolve("shop/item/3").func is handlers.InfoHandler


@pytest.mark.parametrize(
    "url",
    [
        r"/socket/(?P<namespace>\w*)/more",  # the group must end the URL
        "/socket/(?P<namespace>[a-z)",  # bad regex in the group
        "/so cket",
        "/soc*et",
        "^/socket",
        "/socket/(\\w+)",
    ],
)
def test_mount_rejects_bad_urls(url):
    with pytest.raises(ValueError, match="--websocket-url"):
        Mount(url)


@pytest.mark.parametrize(
    "path, route",
    [("/socket", None), ("/socket/", ""), ("/socket/chat/x", "chat/x"), ("/socket/echo", "echo")],
)
def test_tornado_pattern_matches_the_prefix_and_captures_the_route(path, route):
    match = re.match(Mount("/socket").tornado_pattern, path)
    assert match is not None
    assert match.group(1) == route


@pytest.mark.parametrize("path", ["/other", "/socketx", "/socket-chat", "/", "/ws/socket"])
def test_tornado_pattern_does_not_match_other_paths(path):
    assert re.match(Mount("/socket").tornado_pattern, path) is None


def test_tornado_pattern_escapes_prefix_characters():
    pattern = Mount("/my.socket").tornado_pattern
    assert re.match(pattern, "/my.socket/echo").group(1) == "echo"
    assert re.match(pattern, "/myXsocket/echo") is None
