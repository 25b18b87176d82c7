"""django-ws: WebSocket handlers written as ordinary Django code.

The public names below are imported lazily (PEP 562), so that importing
``django_ws`` pulls in neither Django nor threading: the gevent worker must be
able to monkey-patch before either is imported.
"""

__version__ = "0.3.0"

__all__ = [
    "CloseCode",
    "ConnectionClosed",
    "HandshakeDenied",
    "JsonWebSocketHandler",
    "NoReverseMatch",
    "SendError",
    "WebSocketError",
    "WebSocketHandler",
    "group_members",
    "group_size",
    "include",
    "on_type",
    "reverse_ws",
    "send_to_connection",
    "send_to_group",
    "ws_path",
]

_LAZY = {
    "CloseCode": "django_ws.codes",
    "JsonWebSocketHandler": "django_ws.handlers",
    "WebSocketHandler": "django_ws.handlers",
    "on_type": "django_ws.handlers",
    "ConnectionClosed": "django_ws.exceptions",
    "HandshakeDenied": "django_ws.exceptions",
    "SendError": "django_ws.exceptions",
    "WebSocketError": "django_ws.exceptions",
    "NoReverseMatch": "django_ws.routing",
    "include": "django_ws.routing",
    "reverse_ws": "django_ws.routing",
    "ws_path": "django_ws.routing",
    "send_to_group": "django_ws.sending",
    "send_to_connection": "django_ws.sending",
    "group_members": "django_ws.sending",
    "group_size": "django_ws.sending",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'django_ws' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
