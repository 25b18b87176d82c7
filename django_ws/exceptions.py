"""Exceptions raised by django-ws.

::

    Exception
     +-- WebSocketError
     |    +-- ConnectionClosed       send() or close() on a connection that has ended
     |    +-- HandshakeDenied        raised by a handler's connect() to refuse a client
     |    +-- SendError              a message for clients could not be handed to an edge
     |         +-- EdgeUnreachable   (inside a worker) the edge took nothing within the heartbeat timeout
     +-- django.urls.NoReverseMatch  reverse_ws() with an unknown name or bad kwargs
"""

from __future__ import annotations


class WebSocketError(Exception):
    """Base class of django-ws's own exceptions."""


class ConnectionClosed(WebSocketError):
    """The connection has closed: nothing more can be sent on it.

    A handler that loops (``while True: self.send(...)``) ends when this
    propagates out of it; the worker treats it as a normal end, not an error.
    """

    def __init__(self, conn_id: str, code: int | None = None, reason: str = ""):
        self.conn_id = conn_id
        self.code = code
        self.reason = reason
        super().__init__(f"connection {conn_id} is closed (code {code})")


class HandshakeDenied(WebSocketError):
    """Raise from ``WebSocketHandler.connect()`` to refuse the handshake."""

    def __init__(self, status: int = 403, reason: str = ""):
        self.status = status
        self.reason = reason
        super().__init__(f"handshake denied with HTTP {status}{': ' + reason if reason else ''}")


class SendError(WebSocketError):
    """A message for clients could not be handed to the websocket server in time."""


class EdgeUnreachable(SendError):
    """Inside a worker: the edge did not take a message within the heartbeat timeout.

    A handler never sees this: its connection is marked closed (1012) and
    ``send()`` raises :class:`ConnectionClosed` instead.
    """
