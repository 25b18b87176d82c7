r"""URLconf-style routing for WebSocket handlers, built on django.urls.

A project lists its routes in a ``ws_urls.py``::

    from django_ws.routing import ws_path, include

    urlpatterns = [
        ws_path(r'^chat/(?P<room>\w+)$', ChatHandler, name='chat'),
        ws_path(r'^game/', include('game.ws_urls', namespace='game')),
    ]

The patterns are real ``URLPattern`` / ``URLResolver`` objects, so Django's
resolver does the matching and ``reverse`` the reversing; ``reverse_ws`` only
adds the ``ws://host:port/prefix`` base.
"""

from django.urls import NoReverseMatch, Resolver404, include

from .mount import Mount
from .patterns import WebSocketRoute, ws_path
from .resolvers import get_ws_urlconf, resolve_ws, reverse_ws

__all__ = [
    "Mount",
    "NoReverseMatch",
    "Resolver404",
    "WebSocketRoute",
    "get_ws_urlconf",
    "include",
    "resolve_ws",
    "reverse_ws",
    "ws_path",
]
