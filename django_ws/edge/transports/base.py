"""What a transport is to the edge, and what the edge is to a transport.

A transport (the WebSocket one, the Socket.IO one) speaks a client protocol
and turns what it reads into calls on the core (``connect``, ``opened``,
``received``, ``closed``...). The edge carries out the core's actions, and
some of them are the transport's to do: the record of each connection holds
its transport handle (``Connection.transport``), which implements
:class:`Transport` from the handshake to the end. The transports see the
edge only through :class:`EdgeServices`, so they never import the edge
application (``app.py``), which imports them.
"""

from __future__ import annotations

import typing

if typing.TYPE_CHECKING:  # pragma: no cover
    import asyncio

    from django_ws.history import Position

    from ..core import Connection, EdgeCore, Refuse, Upgrade
    from ..keepalive import Keepalive


class Transport(typing.Protocol):
    """One client connection as a transport holds it; the edge calls these when it carries out actions."""

    def answered(self, action: Upgrade | Refuse) -> None:
        """The core's answer to the handshake: complete the upgrade, or refuse with an HTTP status."""

    def deliver(self, binary: bool, payload: bytes, position: Position | None = None) -> None:
        """Write one message to the client (a group message carries its position)."""

    def acknowledge(self, ack: int, payload: bytes) -> None:
        """Answer a client's event with its acknowledgement (Socket.IO); WebSocket has none."""

    def close(self, code: int, reason: str, fail: bool = False) -> None:
        """Close the connection with ``code`` (``fail``: the client broke the protocol)."""

    def abort(self) -> None:
        """Drop the connection now, wherever it stands (shutdown, a client that never closed)."""

    def flush(self) -> None:
        """Write what ``deliver`` queued (the edge calls it once per batch of actions)."""


class EdgeServices(typing.Protocol):
    """The part of the edge application that transports use: the core, the settings they share, the handshake."""

    core: EdgeCore
    #: Largest client message (WS_MAX_MESSAGE_SIZE) and most bytes buffered for a client (WS_MAX_BUFFER_SIZE, 0: none).
    max_message_size: int
    max_buffer_size: int
    handshake_timeout: float
    #: The permessage-deflate options agreed to (WS_COMPRESSION), or None.
    compression: dict | None
    keepalive: Keepalive

    def execute(self, actions: typing.Iterable[typing.Any]) -> None:
        """Carry out the core's actions."""

    def unflushed(self, transport: Transport) -> None:
        """``transport`` holds frames to write: flush it at the end of the current batch."""

    def origin_allowed(self, origin: str) -> bool:
        """Whether a browser at ``origin`` may connect (WS_ALLOWED_ORIGINS, else ALLOWED_HOSTS)."""

    async def handshake(self, conn: Connection, actions: list, answer: asyncio.Future) -> Upgrade | Refuse | None:
        """Carry out a new connection's first actions and wait for ``answer`` (set by ``Transport.answered``)."""
