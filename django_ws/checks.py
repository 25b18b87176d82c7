"""System checks for django-ws's configuration (ids django_ws.E001...)."""

from django.core import checks

from .conf import ws_settings


@checks.register(checks.Tags.urls)
def check_ws_routes(app_configs, **kwargs):
    """Import the websocket routes and their handlers, so mistakes show at start-up."""
    from django.urls import URLResolver

    from .routing import get_ws_urlconf
    from .routing.patterns import WebSocketRoute

    errors = []
    try:
        root = get_ws_urlconf()
    except Exception as exc:
        return [
            checks.Error(
                f"The websocket routes cannot be loaded: {exc}",
                hint="Check WS_URLCONF (or <project>.ws_urls) and DEFAULT_WS_HANDLERS.",
                id="django_ws.E001",
            )
        ]

    def walk(patterns, where):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                try:
                    walk(pattern.url_patterns, f"{where} > {pattern.pattern.describe()}")
                except Exception as exc:
                    errors.append(checks.Error(f"{where}: include() failed: {exc}", id="django_ws.E002"))
            elif isinstance(pattern, WebSocketRoute):
                try:
                    pattern.handler
                except (ImportError, TypeError) as exc:
                    errors.append(checks.Error(str(exc), obj=where, id="django_ws.E003"))
            else:
                errors.append(
                    checks.Error(
                        f"{where}: {pattern!r} is not a websocket route",
                        hint="Use django_ws.routing.ws_path() in ws_urls.py, not django.urls.path().",
                        id="django_ws.E004",
                    )
                )

    walk(root.urlpatterns, root.source)
    base = ws_settings.WS_BASE_URL
    if not isinstance(base, str) or not base.startswith(("ws://", "wss://")):
        errors.append(
            checks.Error(
                f"WS_BASE_URL must start with ws:// or wss://, not {base!r}",
                hint="For example WS_BASE_URL = 'wss://example.com/socket'.",
                id="django_ws.E005",
            )
        )
    return errors


@checks.register(checks.Tags.security)
def check_jwt(app_configs, **kwargs):
    """WS_JWT must be complete and PyJWT installed, or no token could ever verify."""
    from django.core.exceptions import ImproperlyConfigured

    from .tokens import check_jwt_settings

    try:
        check_jwt_settings()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), hint="See WS_JWT in docs/settings.rst.", id="django_ws.E006")]
    return []


@checks.register()
def check_group_history(app_configs, **kwargs):
    """WS_GROUP_HISTORY must map patterns to {"size": N, "ttl": seconds}, or the edge could not start."""
    from .conf import ws_settings
    from .history import parse_settings

    try:
        parse_settings(ws_settings.WS_GROUP_HISTORY)
    except ValueError as exc:
        return [checks.Error(str(exc), hint='For example WS_GROUP_HISTORY = {"chat.*": {"size": 100, "ttl": 300}}.',
                             id="django_ws.E007")]
    return []


@checks.register()
def check_socketio(app_configs, **kwargs):
    """WS_SOCKETIO needs python-socketio, or run_wsserver could not start."""
    from .conf import ws_settings

    if not ws_settings.WS_SOCKETIO:
        return []  # and nothing of python-socketio is imported
    try:
        import engineio  # noqa: F401
        import socketio  # noqa: F401
    except ImportError as exc:
        return [checks.Error(f"WS_SOCKETIO is on, but python-socketio is not importable ({exc}).",
                             hint="pip install 'django-ws-edge[socketio]', or set WS_SOCKETIO = False.",
                             id="django_ws.E008")]
    return []


@checks.register()
def check_broker(app_configs, **kwargs):
    """WS_BROKER, WS_BROKER_LEASE and WS_BROKER_PREFIX must be valid, and redis-py installed, when a broker is set."""
    from django.core.exceptions import ImproperlyConfigured

    from .conf import ws_settings

    if not ws_settings.WS_BROKER:
        return []
    from .broker import config

    try:
        config.configured()
        config.lease()
        config.prefix()
        import redis  # noqa: F401
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), hint="See WS_BROKER in docs/settings.rst.", id="django_ws.E009")]
    except ImportError:
        return [checks.Error("WS_BROKER is set but redis-py is not installed",
                             hint="pip install 'django-ws-edge[redis]'", id="django_ws.E009")]
    return []
