"""Exceptions raised by django-ws.

::

    Exception
     +-- WebSocketError
     |    +-- ConnectionClosed       send() or close() on a connection that has ended
     |    +-- HandshakeDenied        raised by a handler's on_connect() to refuse a client
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
    """Raise from ``WebSocketHandler.on_connect()`` to refuse the handshake."""

    def __init__(self, status: int = 403, reason: str = ""):
        self.status = status
        self.reason = reason
        super().__init__(f"handshake denied with HTTP {status}{': ' + reason if reason else ''}")


class SendError(WebSocketError):
    """A message for clients could not be handed to every websocket edge in time.

    Outside a worker, ``send_to_group()`` and friends send to every edge at
    once and raise this when some edge did not confirm within the timeout.
    The attributes tell "nobody got it" from "some did":

    ``unreached``
        ``{endpoint: why}`` for each edge that did not confirm. An edge that
        took the message but whose answer was lost counts here too, so it may
        have delivered it: retry with ``key``.
    ``delivered``
        How many clients the edges that did confirm wrote the message to.
    ``reached``
        The endpoints of the edges that confirmed.
    ``key``
        The idempotency key the message went out with. Pass it as ``key=`` to
        a retry: edges that already delivered it do not deliver it again
        (for ``WS_SEND_KEY_TTL`` seconds).
    """

    def __init__(self, message: str, *, unreached: dict[str, str] | None = None, delivered: int = 0,
                 reached: list[str] | None = None, key: str | None = None):
        super().__init__(message)
        self.unreached = dict(unreached or {})
        self.delivered = delivered
        self.reached = list(reached or [])
        self.key = key


class EdgeUnreachable(SendError):
    """Inside a worker: the edge did not take a message within the heartbeat timeout.

    A handler never sees this: its connection is marked closed (1012) and
    ``send()`` raises :class:`ConnectionClosed` instead.
    """
