"""Every rule of a connection's life in one place: which event moves it from which state, and what each state allows.

The rest of the core never sets ``Connection.state``: it asks
:class:`Lifecycle` to apply an event, and the answer says whether the event
applied. So a close race (a worker's Close overtaking the upgrade, a worker
lost mid-handshake, a client leaving while a worker decides) is one lookup
in :data:`TRANSITIONS`, the same for every caller, and the count of open
connections moves with the states instead of beside them.

==============  ====================  ============  =============================================
state           event                 next state    also
==============  ====================  ============  =============================================
CONNECTING      ``accepted``          UPGRADING     the handshake's request is dropped
UPGRADING       ``upgraded``          OPEN          counted open
OPEN            ``close_started``     CLOSING       ``close_sent`` kept; no longer counted open
all but CLOSED  ``ended``             CLOSED        no longer counted open (if it was)
==============  ====================  ============  =============================================

An event that has no entry for the connection's state does nothing: a
second close, an Accept after the client left, a transport's end reported
twice. One exception, not a transition: a close this side asks for during
the upgrade is kept (``close_after_upgrade``) and started once the
connection is open (a browser sees a close code, never an HTTP status).

The predicates below (:func:`is_open`, :func:`may_join`...) are the other
half of the rules: what a connection may do, or be sent, in its state.
"""

from __future__ import annotations

import enum

from django_ws.codes import CloseCode

from .records import Connection, ConnectionState

__all__ = ["OPEN", "TRANSITIONS", "Event", "Lifecycle", "awaits_worker", "ended", "ending", "is_open", "may_join",
           "waits_for_upgrade"]

CONNECTING, UPGRADING, OPEN = ConnectionState.CONNECTING, ConnectionState.UPGRADING, ConnectionState.OPEN
CLOSING, CLOSED = ConnectionState.CLOSING, ConnectionState.CLOSED


class Event(enum.Enum):
    """What happens to a connection, as far as its state goes."""

    #: A worker accepted the handshake (or none had room: the client is upgraded, to be told 1013).
    ACCEPTED = "accepted"
    #: The transport completed the upgrade.
    UPGRADED = "upgraded"
    #: This side sends a close frame (CloseClient); the transport reports the end.
    CLOSE_STARTED = "close_started"
    #: The transport ended, or the handshake was refused: the record is forgotten.
    ENDED = "ended"


#: state -> event -> next state; an event missing for a state does nothing.
TRANSITIONS: dict[ConnectionState, dict[Event, ConnectionState]] = {
    CONNECTING: {Event.ACCEPTED: UPGRADING, Event.ENDED: CLOSED},
    UPGRADING: {Event.UPGRADED: OPEN, Event.ENDED: CLOSED},
    OPEN: {Event.CLOSE_STARTED: CLOSING, Event.ENDED: CLOSED},
    CLOSING: {Event.ENDED: CLOSED},
    CLOSED: {},
}


class Lifecycle:
    """Applies :data:`TRANSITIONS` to connections, and counts those OPEN."""

    __slots__ = ("open_count",)

    def __init__(self) -> None:
        self.open_count = 0

    def _apply(self, conn: Connection, event: Event) -> bool:
        new = TRANSITIONS[conn.state].get(event)
        if new is None:
            return False
        if conn.state is OPEN:
            self.open_count -= 1
        elif new is OPEN:
            self.open_count += 1
        conn.state = new
        return True

    def accept(self, conn: Connection) -> bool:
        """A worker took ``conn`` (or none could): CONNECTING becomes UPGRADING. False in any other state."""
        if not self._apply(conn, Event.ACCEPTED):
            return False
        conn.request = None  # kept only while a worker lost meanwhile could be replaced by another
        return True

    def upgraded(self, conn: Connection) -> bool:
        """The transport completed the upgrade: UPGRADING becomes OPEN. False in any other state."""
        return self._apply(conn, Event.UPGRADED)

    def start_close(self, conn: Connection, code: int, reason: str) -> bool:
        """This side closes ``conn``: True when its close frame goes now (OPEN becomes CLOSING).

        During the upgrade the close is kept for right after it
        (``close_after_upgrade``); before it, or once closing, nothing happens.
        """
        if conn.state is UPGRADING:
            conn.close_after_upgrade = (code, reason)
            return False
        if not self._apply(conn, Event.CLOSE_STARTED):
            return False
        conn.close_sent = (int(code), reason)
        return True

    def end(self, conn: Connection) -> bool:
        """``conn`` is gone (its transport ended, its handshake was refused): CLOSED. False if it was already."""
        return self._apply(conn, Event.ENDED)


def ending(conn: Connection, received: tuple[int, str] | None, clean: bool) -> tuple[int, str]:
    """The (code, reason) a connection ended with, for the stats and the worker's on_close.

    The close this side started, else the client's close (``received``),
    else 1005 for a close frame without a code (``clean``), else 1006.
    """
    if conn.close_sent is not None:
        return conn.close_sent
    if received is not None:
        return received
    if clean:
        return CloseCode.NO_STATUS, ""
    return CloseCode.ABNORMAL, "connection dropped without a close frame"


def awaits_worker(conn: Connection) -> bool:
    """A worker runs its on_connect: a Connect was sent, an Accept or a Deny is awaited."""
    return conn.state is CONNECTING


def is_open(conn: Connection) -> bool:
    """Its client reads what it is sent, and its messages go to its worker."""
    return conn.state is OPEN


def may_join(conn: Connection) -> bool:
    """A handler's join() or watch counts: from on_connect on, until this side starts closing."""
    return conn.state in _MAY_JOIN


def waits_for_upgrade(conn: Connection) -> bool:
    """What it is sent waits in ``early``, for right after the upgrade."""
    return conn.state in _EARLY


def ended(conn: Connection) -> bool:
    """Its record is forgotten: nothing more is sent to it, nor to its worker on its behalf."""
    return conn.state is CLOSED


_MAY_JOIN = frozenset((CONNECTING, UPGRADING, OPEN))
_EARLY = frozenset((CONNECTING, UPGRADING))
