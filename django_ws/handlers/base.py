"""WebSocketHandler: the class a project subclasses to serve a route."""

from __future__ import annotations

import json
import logging
import typing

from django_ws.codes import CloseCode
from django_ws.conf import ws_settings
from django_ws.presence import Info, check_info

if typing.TYPE_CHECKING:  # pragma: no cover
    from .connection import HandlerConnection
    from .request import WebSocketRequest

logger = logging.getLogger("django_ws.worker")


class WebSocketHandler:
    """One instance per WebSocket connection, living in a worker process.

    Override the ``on_*`` hooks; they are no-ops here, so there is never a
    ``super()`` to remember. The worker calls them one at a time, in the
    order the client's messages arrived, never two at once (on a pool thread
    or greenlet, or in the connection's own process), so ``self`` is the
    place for per-connection state.

    The original contract is kept: the first message goes to ``on_open``;
    if that returns None the same message then goes to ``on_message`` too,
    if it returns True or False it does not. ``on_close`` runs exactly once
    for every connection that ``on_connect`` accepted, whether or not a
    message came: when the client leaves, when the handler closes, when the
    handler fails and when the edge goes away; :attr:`close_code` and
    :attr:`close_reason` say why.

    Attributes set before any hook runs:

    ``connection_id``
        A string unique across edges and restarts; store it to address this
        client later from any Django process.
    ``args``, ``kwargs``
        What the route captured, plus the route's extra kwargs.
    ``request``
        The handshake as a :class:`~django_ws.handlers.request.WebSocketRequest`,
        a Django ``HttpRequest`` (path, GET, headers, COOKIES, session, user);
        set before ``on_connect``, so never None in a hook.
    ``connection``
        The connection itself, through the small interface of
        :class:`~django_ws.handlers.connection.HandlerConnection`
        (``close_code`` and ``close_reason`` tell ``on_close`` why it ended).
    """

    #: Refuse the handshake with 403 unless the session's user is logged in.
    login_required: bool = False
    #: Refuse the handshake with 403 unless the user has all these permissions.
    permission_required: str | typing.Sequence[str] = ()
    #: The scope a token must have been minted for (``make_token(user, scope=...)``,
    #: or in a JWT's ``scope`` claim); None accepts tokens minted without one.
    token_scope: str | None = None
    #: Close the connection (1008) when the credentials it was opened with end: its token
    #: expires (unless the client sends a fresh one), its user is deactivated or changes
    #: password, or its session logs out (WS_CLOSE_ON_LOGOUT). False keeps it open.
    close_with_credentials: bool = True

    def __init__(self, connection: HandlerConnection):
        self.connection = connection
        self.connection_id: str = connection.id
        self.args: tuple[typing.Any, ...] = connection.args
        self.kwargs: dict[str, typing.Any] = connection.kwargs
        self.request: WebSocketRequest = connection.request

    # -- hooks -----------------------------------------------------------------

    def on_connect(self) -> None:
        """Runs during the handshake, before the client's upgrade completes.

        Raise ``django_ws.HandshakeDenied(status)`` (or Django's
        ``PermissionDenied``, which gives 403) to refuse the client with an
        HTTP status; return normally to accept, and ``on_close`` will run.
        ``send()`` and ``join()`` work here: the edge applies them once the
        upgrade completes (and drops them if the handshake is refused).
        """

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        """Pick one of the subprotocols the client offered, or None for none."""
        return None

    def on_open(self, message: str | bytes) -> bool | None:
        """Receives the connection's first message (see the class docstring)."""

    def on_message(self, message: str | bytes) -> None:
        """Receives every message: text as ``str``, binary as ``bytes``."""

    def on_event(self, name: str, payload: typing.Any) -> typing.Any:
        """A Socket.IO client emitted the event ``name`` (not ``message``, which goes to on_message).

        ``payload`` is the event's argument (a list for several, None for
        none); what this returns is the acknowledgement, if the client asked
        for one. The default ignores the event. See docs/socketio.rst.
        """
        logger.info("%s has no handler for the Socket.IO event %r of connection %s; ignored",
                    type(self).__name__, name, self.connection_id)

    def on_close(self) -> None:
        """The connection has ended (:attr:`close_code`, :attr:`close_reason`); ``send()`` would raise. Clean up here.

        Runs once for every accepted connection, even one that never sent a message.
        """

    def on_recovered(self, group: str) -> None:
        """The client came back with a position in ``group``, and this connection's join replayed what it missed.

        Runs after the join, in order with the messages (before ``on_open`` if
        the join was in ``on_connect``). Only for groups in :attr:`recovering`.
        """

    def on_resync(self, group: str) -> None:
        """The client came back with a position in ``group`` that the edge's history no longer covers.

        The client has been told (its ``onresync``); send it what it needs to
        rebuild its state of ``group`` here. Only for groups in :attr:`recovering`.
        """

    def on_presence(self, group: str, joined: list[str], left: list[str]) -> None:
        """Connections joined or left ``group``, which this handler watches (:meth:`watch_presence`).

        ``joined`` and ``left`` are connection ids, across every edge. Runs in
        order with the messages, one call per change.
        """

    def on_user_presence(self, group: str, joined: dict[str, Info], left: list[str]) -> None:
        """Users joined or left ``group``, which this handler watches (:meth:`watch_presence`).

        ``joined`` maps user keys to their info, ``left`` lists user keys. A
        user joins with their first connection (``join(group, presence=...)``)
        and leaves with their last, across edges; new info arrives as a join.
        The changes of a short window (WS_PRESENCE_WINDOW, default 0.1 s)
        come in one call.
        """

    # -- protocol dispatch (called by the worker, not meant to be overridden) ----

    def dispatch_event(self, name: str, payload: typing.Any) -> typing.Any:
        """Route a Socket.IO event to its hook; return the acknowledgement's value."""
        return self.on_event(name, payload)

    def encode_ack(self, value: typing.Any) -> bytes:
        """The acknowledgement's arguments as a JSON array: none for None, a tuple's items, else the value."""
        return json.dumps(_ack_arguments(value)).encode("utf-8")

    # -- actions ---------------------------------------------------------------

    def send(self, data: str | bytes) -> None:
        """Send one message: ``str`` as a text frame, ``bytes`` as a binary one.

        Raises ``django_ws.ConnectionClosed`` once the connection has closed.
        """
        self.connection.send(data)

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close the connection from the server side; ``on_close`` follows.

        ``code`` is 1000, one of 3000-4999 (yours), or one of 1001-1003 and
        1007-1014; any other raises ``ValueError`` here, at the call.
        """
        self.connection.close(code, reason)

    def join(self, group: str, presence: bool | Info | None = None) -> None:
        """Add this connection to ``group`` (left automatically on close).

        ``presence=True`` also counts it as a connection of ``request.user``
        (keyed by primary key) in the group's users, with the info
        ``{"username": ...}``; a dict records that info instead (JSON, at most
        WS_PRESENCE_INFO_MAX bytes: larger raises ValueError). An anonymous
        connection is a member, but not listed among the users.
        """
        if presence is None or presence is False:
            self.connection.join(group)
            return
        user = getattr(self.request, "user", None)
        if user is None or not user.is_authenticated:
            if isinstance(presence, dict):
                check_info(presence, int(ws_settings.WS_PRESENCE_INFO_MAX))
            self.connection.join(group)
            return
        info = {"username": user.get_username()} if presence is True else presence
        self.connection.join_as(group, str(user.pk), check_info(info, int(ws_settings.WS_PRESENCE_INFO_MAX)))

    def send_presence(self, group: str, joined: dict[str, Info] | None = None, left: list[str] | None = None) -> None:
        """Share ``group``'s people with the client's ``socket.presence(group)`` (django-ws.js).

        Without ``joined`` and ``left``: a snapshot (``group_presence``, up to
        1000 people), to send when the client connects; with them, the
        changes, to send from ``on_user_presence``. The messages carry a
        ``"dws_presence"`` key, which the JavaScript client keeps out of
        ``onmessage``. The handler decides who may see which group.
        """
        if joined is None and left is None:
            from django_ws.sending import group_presence

            users = group_presence(group, limit=1000)["users"]
            message: dict[str, typing.Any] = {"dws_presence": group, "users": users}
        else:
            message = {"dws_presence": group, "joined": joined or {}, "left": left or []}
        self.send(json.dumps(message, separators=(",", ":")))

    def update_presence(self, group: str, info: Info) -> None:
        """Give this connection's user new ``info`` in ``group`` (joining it as that user if need be).

        Watchers hear it as a join with the new info.

        The info is the user's, whichever of their connections set it last.
        """
        user = getattr(self.request, "user", None)
        if user is None or not user.is_authenticated:
            raise ValueError("update_presence() needs an authenticated request.user (anonymous users are not listed)")
        self.connection.join_as(group, str(user.pk), check_info(info, int(ws_settings.WS_PRESENCE_INFO_MAX)))

    def leave(self, group: str) -> None:
        """Remove this connection from ``group``."""
        self.connection.leave(group)

    def watch_presence(self, group: str) -> None:
        """From now on, call :meth:`on_presence` when a connection joins or leaves ``group``.

        Ends with this connection, or with :meth:`unwatch_presence`. The
        group's members as of now: ``django_ws.group_members(group)``.
        """
        self.connection.watch(group, True)

    def unwatch_presence(self, group: str) -> None:
        """Stop calling :meth:`on_presence` for ``group``."""
        self.connection.watch(group, False)

    @property
    def recovering(self) -> frozenset[str]:
        """The groups whose last position the client presented: joining one replays the gap, or asks for a resync.

        Empty for a client that did not ask for positions, or came for the
        first time. A handler that sends a group's state on join can skip it
        for these groups: ``on_resync`` says when it is needed after all.
        """
        return self.connection.recovering

    @property
    def closed(self) -> bool:
        """True once the connection has ended, from either side."""
        return self.connection.closed

    @property
    def close_code(self) -> int | None:
        """Why the connection ended, as a close code (1000, 1001, 1006...); None while it is open.

        The client's code when it closed (1005 if its close frame had none,
        1006 if its TCP connection dropped), the handler's when it called
        :meth:`close`, else the edge's or the worker's (see docs/handlers.rst).
        """
        return self.connection.close_code

    @property
    def close_reason(self) -> str:
        """The close frame's reason, "" if none; set with :attr:`close_code`."""
        return self.connection.close_reason


def _ack_arguments(value: typing.Any) -> list[typing.Any]:
    """What python-socketio does with a handler's return value: None is no argument, a tuple several."""
    if value is None:
        return []
    if isinstance(value, tuple):
        return list(value)
    return [value]
