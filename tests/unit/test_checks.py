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
    with override_settings(WS_URLCONF="tests.unit.bad_ws_urls"):
        errors = check_ws_routes(None)
    assert ids(errors) == ["django_ws.E003"]
    assert errors[0].level == checks.ERROR
    assert "tests.project.handlers.NoSuchHandler" in errors[0].msg
    assert errors[0].obj == "tests.unit.bad_ws_urls"


def test_dotted_handler_that_is_not_a_handler_class_is_e003():
    with override_settings(WS_URLCONF="tests.unit.not_a_handler_ws_urls"):
        errors = check_ws_routes(None)
    assert ids(errors) == ["django_ws.E003"]
    assert "not a WebSocketHandler subclass" in errors[0].msg


def test_django_path_instead_of_ws_path_is_e004():
    with override_settings(WS_URLCONF="tests.unit.django_path_ws_urls"):
        errors = check_ws_routes(None)
    assert ids(errors) == ["django_ws.E004"]
    assert "ws_path()" in errors[0].hint


def test_include_of_a_module_without_urlpatterns_is_e002():
    with override_settings(WS_URLCONF="tests.unit.broken_include_ws_urls"):
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
    with override_settings(WS_URLCONF="tests.unit.bad_ws_urls", WS_BASE_URL="http://x"):
        found = ids(checks.run_checks(tags=[checks.Tags.urls]))
    assert "django_ws.E003" in found
    assert "django_ws.E005" in found


def test_override_of_ws_urlconf_clears_the_route_cache_on_enter_and_exit():
    good = get_ws_urlconf()
    assert get_ws_urlconf() is good  # cached
    with override_settings(WS_URLCONF="tests.unit.bad_ws_urls"):
        bad = get_ws_urlconf()
        assert bad is not good
        assert bad.source == "tests.unit.bad_ws_urls"
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
