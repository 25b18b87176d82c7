"""django_ws.checks.check_ws_routes: configuration mistakes reported as system-check errors."""

import sys

import pytest
from django.core import checks
from django.test import override_settings

from django_ws.checks import check_ws_routes
from django_ws.routing import get_ws_urlconf, resolve_ws
from tests.project import handlers


def ids(errors):
    return [error.id for error in errors]


def test_test_project_configuration_has_no_errors():
    assert check_ws_routes(None) == []


def test_missing_dotted_handler_is_e003():
    with override_settings(WS_URLCONF="tests.fixtures.bad_ws_urls"):
        errors = check_ws_routes(None)
    assert ids(errors) == ["django_ws.E003"]
    assert errors[0].level == checks.ERROR
    assert "tests.project.handlers.NoSuchHandler" in errors[0].msg
    assert errors[0].obj == "tests.fixtures.bad_ws_urls"


def test_dotted_handler_that_is_not_a_handler_class_is_e003():
    with override_settings(WS_URLCONF="tests.fixtures.not_a_handler_ws_urls"):
        errors = check_ws_routes(None)
    assert ids(errors) == ["django_ws.E003"]
    assert "not a WebSocketHandler subclass" in errors[0].msg


def test_django_path_instead_of_ws_path_is_e004():
    with override_settings(WS_URLCONF="tests.fixtures.django_path_ws_urls"):
        errors = check_ws_routes(None)
    assert ids(errors) == ["django_ws.E004"]
    assert "ws_path()" in errors[0].hint


def test_include_of_a_module_without_urlpatterns_is_e002():
    with override_settings(WS_URLCONF="tests.fixtures.broken_include_ws_urls"):
        errors = check_ws_routes(None)
    assert ids(errors) == ["django_ws.E002"]


def test_ws_urlconf_that_cannot_be_imported_is_e001():
    with override_settings(WS_URLCONF="tests.unit.no_such_module"):
        errors = check_ws_routes(None)
    assert ids(errors) == ["django_ws.E001"]
    assert "no_such_module" in errors[0].msg


def test_bad_default_ws_handlers_is_e001():
    with override_settings(DEFAULT_WS_HANDLERS={"bad namespace": "tests.project.handlers.EchoHandler"}):
        errors = check_ws_routes(None)
    assert ids(errors) == ["django_ws.E001"]


def test_missing_legacy_handler_is_e003():
    with override_settings(DEFAULT_WS_HANDLERS={"default": "tests.project.handlers.Gone"}):
        errors = check_ws_routes(None)
    # 'default' is routed twice: as 'default' and as ''.
    assert ids(errors) == ["django_ws.E003", "django_ws.E003"]


def test_ws_base_url_that_is_not_ws_or_wss_is_e005():
    with override_settings(WS_BASE_URL="http://x"):
        errors = check_ws_routes(None)
    assert ids(errors) == ["django_ws.E005"]
    assert "http://x" in errors[0].msg


def test_wss_base_url_is_accepted():
    with override_settings(WS_BASE_URL="wss://example.com/ws"):
        assert check_ws_routes(None) == []


def test_check_is_registered_with_the_urls_tag():
    with override_settings(WS_URLCONF="tests.fixtures.bad_ws_urls", WS_BASE_URL="http://x"):
        found = ids(checks.run_checks(tags=[checks.Tags.urls]))
    assert "django_ws.E003" in found
    assert "django_ws.E005" in found


def test_override_of_ws_urlconf_clears_the_route_cache_on_enter_and_exit():
    good = get_ws_urlconf()
    assert get_ws_urlconf() is good  # cached
    with override_settings(WS_URLCONF="tests.fixtures.bad_ws_urls"):
        bad = get_ws_urlconf()
        assert bad is not good
        assert bad.source == "tests.fixtures.bad_ws_urls"
        assert check_ws_routes(None) != []
    restored = get_ws_urlconf()
    assert restored is not bad
    assert restored.source == "tests.project.ws_urls"
    assert resolve_ws("open/true").func is handlers.OpenContractHandler
    assert check_ws_routes(None) == []


def test_socketio_on_without_python_socketio_is_e008(monkeypatch):
    from django_ws.checks import check_socketio

    with override_settings(WS_SOCKETIO=False):
        assert check_socketio(None) == []
    with override_settings(WS_SOCKETIO=True):
        if check_socketio(None) != []:
            pytest.skip("python-socketio is not installed here")
        monkeypatch.setitem(sys.modules, "socketio", None)  # what `import socketio` finds when it is not installed
        (error,) = check_socketio(None)
    assert error.id == "django_ws.E008" and "django-ws-edge[socketio]" in error.hint


# -- the usual mistakes (W010-W014) ---------------------------------------------------------


def test_a_misspelled_setting_is_w010_naming_the_right_one():
    from django_ws.checks import check_settings_names

    assert check_settings_names(None) == []  # the test project's settings are all known
    with override_settings(WS_MAX_MESAGE_SIZE=1024, WS_SOMETHING_ELSE_ENTIRELY=1):
        errors = check_settings_names(None)
    assert ids(errors) == ["django_ws.W010", "django_ws.W010"]
    typo, unknown = sorted(errors, key=lambda e: "MESAGE" not in e.msg)
    assert typo.level == checks.WARNING
    assert "WS_MAX_MESAGE_SIZE" in typo.msg and "did you mean WS_MAX_MESSAGE_SIZE?" in typo.msg
    assert typo.hint == "Rename it to WS_MAX_MESSAGE_SIZE."
    assert "WS_SOMETHING_ELSE_ENTIRELY" in unknown.msg and "docs/settings.rst" in unknown.hint


def test_manage_py_check_warns_about_a_misspelled_setting():
    with override_settings(WS_MAX_MESAGE_SIZE=1024):
        found = checks.run_checks()
    (warning,) = [error for error in found if error.id == "django_ws.W010"]
    assert "WS_MAX_MESSAGE_SIZE" in warning.msg


def test_channels_method_names_on_a_handler_are_w011_and_on_type_off_a_json_handler_is_w012():
    with override_settings(WS_URLCONF="tests.fixtures.mistakes_ws_urls"):
        errors = check_ws_routes(None)
    channels = [e for e in errors if e.id == "django_ws.W011"]
    # connect, receive and disconnect of one class, reported once although two routes serve it.
    assert sorted(e.msg.split(" defines ")[1].split("(")[0] for e in channels) == ["connect", "disconnect", "receive"]
    assert all(e.obj.__name__ == "ChannelsStyleHandler" and e.level == checks.WARNING for e in channels)
    assert "on_close" in next(e.hint for e in channels if "disconnect()" in e.msg)
    (typed,) = [e for e in errors if e.id == "django_ws.W012"]
    assert typed.obj.__name__ == "TypedPlainHandler" and "@on_type('move')" in typed.msg
    assert "JsonWebSocketHandler" in typed.hint
    assert set(ids(errors)) == {"django_ws.W011", "django_ws.W012"}


def test_no_routes_at_all_is_w013():
    with override_settings(WS_URLCONF=None, ROOT_URLCONF="tests.unit.urls", DEFAULT_WS_HANDLERS={}):
        errors = check_ws_routes(None)
    assert ids(errors) == ["django_ws.W013"]
    assert "tests.unit.ws_urls" in errors[0].msg
    assert "tests/unit/ws_urls.py" in errors[0].hint
    with override_settings(WS_URLCONF=None, ROOT_URLCONF="tests.unit.urls"):
        assert check_ws_routes(None) == []  # DEFAULT_WS_HANDLERS alone is routes enough


@pytest.mark.parametrize("tls_setting", [{"SECURE_SSL_REDIRECT": True}, {"SESSION_COOKIE_SECURE": True},
                                         {"SECURE_HSTS_SECONDS": 3600},
                                         {"SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https")}])
def test_ws_base_url_on_a_tls_site_in_production_is_w014(tls_setting):
    from django_ws.checks import check_base_url_scheme

    with override_settings(DEBUG=False, WS_BASE_URL="ws://example.com/socket", **tls_setting):
        (warning,) = check_base_url_scheme(None)
    assert warning.id == "django_ws.W014" and next(iter(tls_setting)) in warning.msg
    assert "'wss://example.com/socket'" in warning.hint
    for fine in ({"DEBUG": True, "WS_BASE_URL": "ws://example.com/socket"},
                 {"DEBUG": False, "WS_BASE_URL": "wss://example.com/socket"}):
        with override_settings(**tls_setting, **fine):
            assert check_base_url_scheme(None) == []
    with override_settings(DEBUG=False, WS_BASE_URL="ws://example.com/socket"):
        assert check_base_url_scheme(None) == []  # nothing says the site is on HTTPS


def test_a_relative_ws_base_url_is_accepted():
    with override_settings(WS_BASE_URL="/socket"):
        assert check_ws_routes(None) == []


def test_api_keys_of_the_wrong_shape_are_e010_and_short_ones_w015():
    from django_ws.checks import check_api_keys

    assert check_api_keys(None) == []  # none: the API is off
    long_key = "x" * 32
    with override_settings(WS_API_KEYS=[long_key, long_key + "y"]):
        assert check_api_keys(None) == []
    with override_settings(WS_API_KEYS="a-single-str-key-is-a-mistake-0123456789"):
        (error,) = check_api_keys(None)
    assert error.id == "django_ws.E010" and "list of keys or a dict" in error.msg
    with override_settings(WS_API_KEYS={"billing": None}):
        (error,) = check_api_keys(None)
    assert error.id == "django_ws.E010" and "'billing'" in error.msg
    with override_settings(WS_API_KEYS={"billing": "hunter2", "search": long_key}):
        (warning,) = check_api_keys(None)
    assert warning.id == "django_ws.W015" and "'billing'" in warning.msg and "'search'" not in warning.msg
    assert "hunter2" not in warning.msg, "a check never prints a key"


def test_the_admin_timeout_must_be_a_positive_number_of_seconds():
    from django_ws.checks import check_admin_timeout

    assert check_admin_timeout(None) == []
    for wrong in (0, -1, "1", None, True):
        with override_settings(WS_ADMIN_TIMEOUT=wrong):
            (error,) = check_admin_timeout(None)
        assert error.id == "django_ws.E011" and repr(wrong) in error.msg


@pytest.mark.parametrize("name, value", [("WS_PRESENCE_WINDOW", -1), ("WS_PRESENCE_WINDOW", "0.1"),
                                         ("WS_PRESENCE_INFO_MAX", 0), ("WS_PRESENCE_INFO_MAX", 1.5)])
def test_presence_settings_out_of_range_are_e012(name, value):
    from django_ws.checks import check_presence

    with override_settings(**{name: value}):
        assert [error.id for error in check_presence(None)] == ["django_ws.E012"]
    assert check_presence(None) == []


def test_tracing_without_opentelemetry_is_e013(monkeypatch):
    import importlib.util

    from django_ws.checks import check_tracing

    assert check_tracing(None) == []  # off by default
    with override_settings(WS_TRACING=True):
        assert check_tracing(None) == []  # the [test] extra installs it
        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a: None if name.startswith("opentelemetry") else real(name, *a))
        (error,) = check_tracing(None)
    assert error.id == "django_ws.E013" and "otel" in error.hint
