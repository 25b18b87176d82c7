"""What a handler reaches of its connection: a small interface, the same whatever runs the handler.

A worker (threads, greenlets or a process of its own) and the test
communicator each give the handler an object with exactly these members;
handlers use them through ``self.send()``, ``self.close()``, ``self.join()``,
``self.leave()``, ``self.watch_presence()`` and ``self.closed``, and never anything else of the object
behind them.
"""

from __future__ import annotations

import typing

if typing.TYPE_CHECKING:  # pragma: no cover
    from .request import WebSocketRequest

__all__ = ["HandlerConnection"]


@typing.runtime_checkable
class HandlerConnection(typing.Protocol):
    """One client connection, as its handler sees it."""

    #: Unique across edges and restarts: store it to address this client later from any Django process.
    id: str
    #: What the route captured (positional and keyword), plus the route's extra kwargs.
    args: tuple[typing.Any, ...]
    kwargs: dict[str, typing.Any]
    #: The handshake as a Django request: set before the handler is made, so never None in a hook.
    request: WebSocketRequest
    #: Why the connection ended (a close code and reason), None while it is open.
    close_code: int | None
    close_reason: str

    @property
    def closed(self) -> bool:
        """True once the connection has ended, from either side."""

    @property
    def recovering(self) -> frozenset[str]:
        """The groups whose last position the client presented at its handshake (docs/protocol.rst)."""

    def send(self, data: str | bytes) -> None:
        """One message to the client: ``str`` as text, ``bytes`` as binary; ConnectionClosed once it has ended."""

    def close(self, code: int = 1000, reason: str = "") -> None:
        """End the connection from the server side with ``code``."""

    def join(self, group: str) -> None:
        """Add the connection to ``group``."""

    def join_as(self, group: str, user: str, info: dict[str, typing.Any]) -> None:
        """Add the connection to ``group`` as a connection of ``user`` with ``info`` (again: new info)."""

    def leave(self, group: str) -> None:
        """Remove the connection from ``group``."""

    def watch(self, group: str, watch: bool = True) -> None:
        """Have the handler told of joins and leaves in ``group`` (``watch``), or no more."""
