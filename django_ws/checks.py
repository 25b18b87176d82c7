"""System checks for django-ws's configuration (ids django_ws.E001..., W010...).

Errors stop ``run_wsserver``; warnings are the usual mistakes that would
otherwise pass in silence (docs/settings.rst, "System checks", lists them all).
"""

import difflib

from django.conf import settings as django_settings
from django.core import checks

from .conf import DEFAULTS, api_keys, ws_settings

#: Method names of Django Channels' consumers that a handler would define in vain -> what django-ws calls.
CHANNELS_METHODS = {
    "connect": "on_connect",
    "websocket_connect": "on_connect",
    "receive": "on_message (on_json for a JsonWebSocketHandler)",
    "websocket_receive": "on_message",
    "receive_json": "on_json",
    "disconnect": "on_close",
    "websocket_disconnect": "on_close",
}

#: Settings that say the site itself is served over HTTPS.
TLS_SETTINGS = ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS",
                "SECURE_PROXY_SSL_HEADER")


@checks.register(checks.Tags.urls)
def check_ws_routes(app_configs, **kwargs):
    """Import the websocket routes and their handlers, so mistakes show at start-up."""
    from django.urls import URLResolver

    from .routing import get_ws_urlconf
    from .routing.patterns import WebSocketRoute

    errors = []
    handlers = []  # (where, handler class) of every route
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
                    handlers.append((f"{where} > {pattern.pattern.describe()}", pattern.handler))
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
    if not root.urlpatterns:
        errors.append(
            checks.Warning(
                f"There are no websocket routes: {root.source} has none (or does not exist) and "
                "DEFAULT_WS_HANDLERS is empty, so every handshake is refused with 404.",
                hint=f"Create {root.source.replace('.', '/')}.py with urlpatterns = [ws_path(r'^chat/$', ChatHandler)], "
                     "or name your route module in WS_URLCONF.",
                id="django_ws.W013",
            )
        )
    seen = set()
    for where, handler in handlers:
        if handler not in seen:
            seen.add(handler)
            errors.extend(_check_handler(handler, where))
    base = ws_settings.WS_BASE_URL
    if not isinstance(base, str) or not base.startswith(("ws://", "wss://", "/")):
        errors.append(
            checks.Error(
                f"WS_BASE_URL must start with ws://, wss:// or / (relative to the page's host), not {base!r}",
                hint="For example WS_BASE_URL = 'wss://example.com/socket', or '/socket' behind one host.",
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


def _own_attributes(handler: type):
    """(class, name, value) of what ``handler`` and its bases define, django-ws's own classes left out."""
    for klass in handler.__mro__:
        if klass is object or klass.__module__.split(".")[0] == "django_ws":
            continue
        for name, value in vars(klass).items():
            yield klass, name, value


def _check_handler(handler: type, where: str) -> list:
    """Channels' method names (W011) and @on_type outside a JsonWebSocketHandler (W012)."""
    from .handlers import JsonWebSocketHandler

    found = []
    label = f"{handler.__module__}.{handler.__qualname__}"
    for klass, name, value in _own_attributes(handler):
        if name in CHANNELS_METHODS and callable(value):
            found.append(checks.Warning(
                f"{label} defines {name}(), a Django Channels consumer method that django-ws never calls "
                f"(route {where}).",
                hint=f"django-ws calls {CHANNELS_METHODS[name]}(); see docs/channels.rst for the mapping.",
                obj=handler, id="django_ws.W011"))
        message_type = getattr(value, "_ws_message_type", None)
        if message_type is not None and not issubclass(handler, JsonWebSocketHandler):
            found.append(checks.Warning(
                f"{label}.{name} is decorated with @on_type({message_type!r}), but {handler.__name__} is not a "
                f"JsonWebSocketHandler: the decorator does nothing there (route {where}).",
                hint="Derive the handler from django_ws.JsonWebSocketHandler, whose messages are routed by "
                     "their \"type\".",
                obj=handler, id="django_ws.W012"))
    return found


@checks.register()
def check_settings_names(app_configs, **kwargs):
    """A WS_* setting that django-ws does not know is a typo, ignored in silence otherwise (W010)."""
    found = []
    for name in sorted(dir(django_settings)):
        if not name.startswith("WS_") or name in DEFAULTS:
            continue
        close = difflib.get_close_matches(name, [known for known in DEFAULTS if known.startswith("WS_")], n=1)
        if close:
            message = f"{name} is not a django-ws setting (did you mean {close[0]}?); it is ignored."
            hint = f"Rename it to {close[0]}."
        else:
            message = f"{name} is not a django-ws setting; it is ignored."
            hint = "docs/settings.rst lists every setting; a name of your own should not start with WS_."
        found.append(checks.Warning(message, hint=hint, id="django_ws.W010"))
    return found


@checks.register(checks.Tags.security)
def check_base_url_scheme(app_configs, **kwargs):
    """ws:// in WS_BASE_URL on a production site served over HTTPS (W014)."""
    base = ws_settings.WS_BASE_URL
    if django_settings.DEBUG or not isinstance(base, str) or not base.startswith("ws://"):
        return []
    tls = [name for name in TLS_SETTINGS if getattr(django_settings, name, None)]
    if not tls:
        return []
    return [checks.Warning(
        f"WS_BASE_URL is {base!r} (unencrypted ws://) while the site is served over HTTPS "
        f"({', '.join(tls)} {'is' if len(tls) == 1 else 'are'} set): browsers refuse ws:// from an https:// "
        "page as mixed content, and the session cookie would travel in the clear.",
        hint=f"Use wss://, e.g. WS_BASE_URL = {'wss://' + base[len('ws://'):]!r}, with TLS at the proxy in "
             "front of the edge (docs/deployment.rst).",
        id="django_ws.W014")]


#: The shortest publish API key that W015 accepts: 32 characters (``secrets.token_urlsafe(24)``, 192 bits).
API_KEY_MIN_LENGTH = 32


@checks.register(checks.Tags.security)
def check_api_keys(app_configs, **kwargs):
    """WS_API_KEYS of the wrong shape (E010), or a key short enough to guess (W015)."""
    try:
        keys = api_keys(ws_settings.WS_API_KEYS)
    except (TypeError, AttributeError) as exc:
        return [checks.Error(str(exc), hint='For example WS_API_KEYS = {"billing": os.environ["WS_BILLING_KEY"]}.',
                             id="django_ws.E010")]
    short = sorted(name for name, key in keys.items() if len(key) < API_KEY_MIN_LENGTH)
    if not short:
        return []
    return [checks.Warning(
        f"WS_API_KEYS: the key(s) {', '.join(map(repr, short))} are shorter than {API_KEY_MIN_LENGTH} characters: "
        "anyone who can reach the edge's port could guess one and publish to every client.",
        hint='Make each with python -c "import secrets; print(secrets.token_urlsafe(32))".',
        id="django_ws.W015")]


@checks.register()
def check_admin_timeout(app_configs, **kwargs):
    """WS_ADMIN_TIMEOUT that is not a positive number of seconds (E011)."""
    value = ws_settings.WS_ADMIN_TIMEOUT
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return []
    return [checks.Error(f"WS_ADMIN_TIMEOUT must be a positive number of seconds, not {value!r}: the admin's "
                         "live view waits that long for the edges' reports.",
                         hint="For example WS_ADMIN_TIMEOUT = 1.0 (the default).", id="django_ws.E011")]


@checks.register()
def check_presence(app_configs, **kwargs):
    """WS_PRESENCE_WINDOW or WS_PRESENCE_INFO_MAX out of range (E012): the edge would not start, or tell nothing."""
    window, info_max = ws_settings.WS_PRESENCE_WINDOW, ws_settings.WS_PRESENCE_INFO_MAX
    found = []
    if isinstance(window, bool) or not isinstance(window, (int, float)) or not 0 <= window <= 10:
        found.append(checks.Error(f"WS_PRESENCE_WINDOW must be a number of seconds from 0 to 10, not {window!r}",
                                  hint="The default, 0.1, tells watchers at most ten times a second.",
                                  id="django_ws.E012"))
    if isinstance(info_max, bool) or not isinstance(info_max, int) or info_max < 2:
        found.append(checks.Error(f"WS_PRESENCE_INFO_MAX must be a number of bytes (an int of at least 2), "
                                  f"not {info_max!r}", hint="The default is 2048.", id="django_ws.E012"))
    return found


@checks.register()
def check_tracing(app_configs, **kwargs):
    """WS_TRACING on without OpenTelemetry's API installed (E013): every process would fail at its first span."""
    if not ws_settings.WS_TRACING:
        return []
    import importlib.util

    if importlib.util.find_spec("opentelemetry") is None or importlib.util.find_spec("opentelemetry.trace") is None:
        return [checks.Error("WS_TRACING is on but OpenTelemetry is not installed",
                             hint="pip install 'django-ws-edge[otel]'", id="django_ws.E013")]
    return []
