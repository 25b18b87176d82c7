"""django-ws: WebSocket handlers written as ordinary Django code.

The public names below are imported lazily (PEP 562), so that importing
``django_ws`` pulls in neither Django nor threading: the gevent worker must be
able to monkey-patch before either is imported. Type checkers, which never
run ``__getattr__``, read the same names from the ``TYPE_CHECKING`` imports
(tests/e2e/test_typing.py checks that the two lists agree).
"""

import typing

__version__ = "0.3.0"

__all__ = [
    "CloseCode",
    "ConnectionClosed",
    "HandshakeDenied",
    "JsonWebSocketHandler",
    "NoReverseMatch",
    "SendError",
    "SendResult",
    "WebSocketError",
    "WebSocketHandler",
    "close_connection",
    "close_group",
    "group_members",
    "group_presence",
    "group_size",
    "group_user_count",
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
    "close_connection": "django_ws.sending",
    "close_group": "django_ws.sending",
    "SendResult": "django_ws.sending",
    "group_members": "django_ws.sending",
    "group_presence": "django_ws.sending",
    "group_size": "django_ws.sending",
    "group_user_count": "django_ws.sending",
}

if typing.TYPE_CHECKING:  # what _LAZY imports at run time, spelled out for mypy and Pyright
    from django_ws.codes import CloseCode
    from django_ws.exceptions import ConnectionClosed, HandshakeDenied, SendError, WebSocketError
    from django_ws.handlers import JsonWebSocketHandler, WebSocketHandler, on_type
    from django_ws.routing import NoReverseMatch, include, reverse_ws, ws_path
    from django_ws.sending import (
        SendResult,
        close_connection,
        close_group,
        group_members,
        group_presence,
        group_size,
        group_user_count,
        send_to_connection,
        send_to_group,
    )


def __getattr__(name: str) -> typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'django_ws' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
