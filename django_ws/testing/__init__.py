"""Helpers for testing websocket handlers, used by django-ws's own tests.

``WebSocketServer`` starts the real ``run_wsserver`` in a subprocess and
waits until its workers are connected; ``LiveWebSocketTestCase`` wraps it for
Django's test runner; ``HandlerCommunicator`` drives a handler in-process,
with no servers at all.
"""

from .communicator import HandlerCommunicator
from .server import WebSocketServer

__all__ = ["HandlerCommunicator", "LiveWebSocketTestCase", "WebSocketServer"]


def __getattr__(name):
    # Imported on use: it pulls in Django's test framework and the edge.
    if name in ("LiveWebSocketTestCase", "LiveWebSocketServer"):
        from . import live

        return getattr(live, name)
    raise AttributeError(name)
