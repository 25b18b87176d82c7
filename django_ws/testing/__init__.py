"""Helpers for testing websocket handlers, used by django-ws's own tests.

``WebSocketServer`` starts the real ``run_wsserver`` in a subprocess and
waits until its workers are connected; ``LiveWebSocketTestCase`` wraps it for
Django's test runner; ``HandlerCommunicator`` drives a handler in-process,
with no servers at all.
"""

from .server import WebSocketServer

__all__ = ["WebSocketServer"]
