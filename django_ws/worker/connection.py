"""One connection as the worker sees it, and the loop that drives its handler.

``Connection`` is what a handler's ``self.send()``/``self.close()`` talk to;
``ConnectionRunner`` drives the handler in steps (handshake, handle one
message, finish), which the threaded and gevent pools call (pool.py) and
``run`` strings together as the body of a --multiprocess child. Neither knows which of those
it runs in: they get a mailbox and an outbox callable from the mode (see
modes.py).
"""

from __future__ import annotations

import json
import logging
import threading
import typing

from django.core.exceptions import PermissionDenied
from django.db import connections
from django.db.backends.signals import connection_created
from django.urls import Resolver404

from django_ws import access, tokens, tracing, wire
from django_ws.codes import check_close_code
from django_ws.exceptions import ConnectionClosed, EdgeUnreachable, HandshakeDenied
from django_ws.handlers import CloseCode
from django_ws.handlers.request import WebSocketRequest
from django_ws.routing import resolve_ws

logger = logging.getLogger("django_ws.worker")

#: Put in a mailbox to make the runner stop (shutdown, lost edge, overflow).
STOP = object()


class _DatabaseUse(threading.local):
    """Whether this thread (a greenlet, under gevent) has opened a database connection.

    Django keeps a thread's connections in an asgiref ``Local``, whose every
    lookup costs a few microseconds; asking it around each handler call was
    the worker's dearest line for handlers that never touch the database.
    ``connection_created`` marks the thread instead, and the runner looks
    further only when it is marked (``ConnectionRunner._db_hygiene``).
    """

    opened = False


_database_use = _DatabaseUse()


def _connection_opened(sender, connection, **kwargs) -> None:
    _database_use.opened = True


connection_created.connect(_connection_opened, dispatch_uid="django_ws.worker.connection")


class Connection:
    """The worker-side half of one client connection.

    ``close_code`` is set exactly once, by whichever side ends the connection
    first: the worker's I/O loop when the edge reports a disconnect, or the
    handler's own thread when it closes or fails. ``send`` checks it first, so
    a handler looping on ``send`` stops promptly after the client leaves, even
    while its thread never returns to read the mailbox.
    """

    # Slotted, as every open connection has one (as has its runner, below).
    __slots__ = ("id", "route", "request_meta", "_outbox", "close_code", "close_reason", "_provisional",
                 "closed_here", "args", "kwargs", "request", "request_overrides", "_send_headers")

    def __init__(self, conn_id: str, route: str, request_meta: dict, outbox: typing.Callable[[list], None]):
        self.id = conn_id
        self.route = route
        self.request_meta = request_meta
        self._outbox = outbox
        self.close_code: int | None = None
        self.close_reason = ""
        self._provisional = False
        #: True when the worker side closed (the handler, or an error): the
        #: runner then drops what is still queued instead of handling it.
        self.closed_here = False
        self.args: tuple = ()
        self.kwargs: dict = {}
        self.request: WebSocketRequest | None = None
        #: Attributes set on ``request`` after it is built (the test communicator's user=), or None.
        self.request_overrides: dict | None = None
        #: The headers of this connection's text and binary Send messages (see send()).
        self._send_headers: tuple[bytes, bytes] | None = None

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    @property
    def recovering(self) -> frozenset[str]:
        """The groups whose last position the client presented (the edge lists them in the Connect)."""
        return frozenset(self.request_meta.get("recovering", ()))

    def mark_closed(self, code: int, reason: str = "", *, provisional: bool = False, final: bool = False) -> bool:
        """Record the end of the connection; False if it had already ended.

        A ``provisional`` close (a handler process told by a signal that its
        client left, before the Disconnect saying how reaches its mailbox)
        stops ``send()`` at once; the ``final`` one that follows replaces its
        code and reason, so ``on_close`` sees what the edge saw.
        """
        if self.close_code is not None:
            if not (final and self._provisional):
                return False
        self._provisional = provisional
        self.close_code, self.close_reason = int(code), reason
        return True

    def send(self, data: str | bytes) -> None:
        self._check_open("send()")
        binary, payload = wire.payload(data)
        headers = self._send_headers
        if headers is None:
            # A Send's header depends only on the connection and the opcode:
            # made once, on the first send, it spares each later send a
            # dataclass and an encode (the same bytes as wire.Send.encode()).
            headers = self._send_headers = (wire.Send(self.id, False, b"").encode()[0],
                                             wire.Send(self.id, True, b"").encode()[0])
        self._deliver([headers[binary], payload])

    def _check_open(self, what: str) -> None:
        # Allowed from on_connect too: the edge keeps what comes before the
        # upgrade (a welcome message, a join) and applies it on open.
        if self.close_code is not None:
            raise ConnectionClosed(self.id, self.close_code, self.close_reason)

    def _deliver(self, frames: list) -> None:
        """Hand frames to the edge; if it cannot take them, the connection is over (1012)."""
        try:
            self._outbox(frames)
        except EdgeUnreachable as exc:
            self.mark_closed(CloseCode.SERVICE_RESTART, str(exc))
            self.closed_here = True
            raise ConnectionClosed(self.id, CloseCode.SERVICE_RESTART, str(exc)) from None

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        # Checked here, in the handler's call, not where the edge would refuse the frame.
        code = check_close_code(code)
        if self.mark_closed(code, reason):
            self.closed_here = True
            try:
                self._outbox(wire.Close(self.id, int(code), reason).encode())
            except EdgeUnreachable:
                pass  # nobody to tell: the edge is gone, and its client with it

    def join(self, group: str) -> None:
        self._group_message(wire.Join, group)

    def join_as(self, group: str, user: str, info: dict) -> None:
        self._group_message(wire.JoinAs, group, user, info)

    def leave(self, group: str) -> None:
        self._group_message(wire.Leave, group)

    def watch(self, group: str, watch: bool = True) -> None:
        self._group_message(wire.Watch, group, watch)

    def _group_message(self, cls, group: str, *extra) -> None:
        if not isinstance(group, str) or not group:
            raise ValueError(f"a group name is a non-empty str, not {group!r}")
        self._check_open(f"{cls.__name__.lower()}()")
        self._deliver(cls(self.id, group, *extra).encode())


class ConnectionRunner:
    """Drives one handler: handshake, then messages in order, then on_close.

    Every call into user code goes through ``_call``, which does what Django
    does around a request for the database (close_old_connections before and
    after) and contains exceptions: one failing handler closes its own
    connection with 1011 and nothing else notices.
    """

    __slots__ = ("connection", "mailbox", "on_finished", "handler", "accepted", "opened", "tracing",
                 "manage_db_connections")

    def __init__(self, connection: Connection, mailbox, on_finished: typing.Callable[[Connection], None]):
        #: Do what Django does around a request for the database. The in-process
        #: test communicator turns this off: inside a TestCase's transaction,
        #: closing "old" connections would end the test's transaction too.
        self.manage_db_connections = True
        self.connection = connection
        self.mailbox = mailbox
        self.on_finished = on_finished
        self.handler = None
        #: on_connect returned normally: on_close is owed, exactly once (finish()).
        self.accepted = False
        #: on_open ran (the first message's contract); it has no bearing on on_close.
        self.opened = False
        #: Spans around the handler's hooks (WS_TRACING), or None.
        self.tracing = tracing.handler_tracing()

    def run(self) -> None:
        """The whole life of the connection as one call: handshake, messages, on_close.

        For a mode that gives each connection a process of its own
        (--multiprocess). The pooled modes call the same steps (handshake,
        handle, finish) from pool threads or greenlets instead; see pool.py.
        """
        try:
            if self.handshake():
                get = self.mailbox.get
                while self.handle(get()):
                    pass
        finally:
            self.finish()

    def finish(self) -> None:
        """Run on_close (once, for an accepted connection) and give resources back."""
        conn = self.connection
        try:
            if self.accepted:
                self.accepted = False
                if conn.close_code is None:
                    # The mailbox ended with no word of why (the worker's pipe to a
                    # handler process closed): the worker side went away.
                    conn.mark_closed(CloseCode.SERVICE_RESTART, "worker stopped")
                self._call("on_close")
        finally:
            try:
                if self.manage_db_connections and _database_use.opened:
                    # The thread's own database connections go back now, not at exit.
                    connections.close_all()
                    _database_use.opened = False
            finally:
                self.on_finished(conn)

    def handshake(self) -> bool:
        """Resolve the route, build the handler, run on_connect; send Accept or Deny."""
        conn = self.connection
        try:
            self._db_hygiene()
            match = resolve_ws(conn.route)
            conn.args, conn.kwargs = tuple(match.args), dict(match.kwargs)
            conn.request = WebSocketRequest(conn.request_meta, conn.route, resolve_ws)
            conn.request.resolver_match = match
            for name, value in (conn.request_overrides or {}).items():
                setattr(conn.request, name, value)
            handler = self.handler = match.func(conn)
            tokens.authenticate(conn.request, handler)
            _check_access(handler)
            if self.tracing is None:
                handler.on_connect()
            else:
                with self.tracing.span("on_connect", _route_name(conn), handler, _traceparent(conn.request_meta)):
                    handler.on_connect()
            offered, token_marker = tokens.strip_token_subprotocols(conn.request_meta.get("subprotocols", []))
            subprotocol = handler.select_subprotocol(list(offered)) or ""
            if subprotocol and subprotocol not in offered:
                raise ValueError(f"select_subprotocol() returned {subprotocol!r}, which the client did not offer")
            if not subprotocol and token_marker:
                # A browser that offered subprotocols fails a handshake that selects none.
                subprotocol = tokens.SUBPROTOCOL
            # Sent before the Accept, on the same socket: the edge knows what ends the connection once it opens.
            tied = access.credentials_for(conn.id, conn.request, handler)
            # From here on_close is owed, even if the Accept cannot reach the
            # edge: it undoes what on_connect set up.
            self.accepted = True
            if conn.request.__dict__.get("resolver_match") is match:
                # Held for the connection's life, the match would be a good part of
                # its memory, and few handlers look at it after on_connect: the
                # request resolves the route again if asked (the same match).
                del conn.request.resolver_match
        except HandshakeDenied as exc:
            return self._deny(exc.status, exc.reason)
        except PermissionDenied as exc:
            return self._deny(403, str(exc))
        except Resolver404:
            return self._deny(404, "no route")
        except Exception:
            logger.exception("handshake of connection %s (route %r) failed", conn.id, conn.route)
            return self._deny(500, "handler error")
        finally:
            self._db_hygiene()
        try:
            if tied is not None:
                conn._outbox(tied.encode())
            conn._outbox(wire.Accept(conn.id, subprotocol).encode())
        except EdgeUnreachable:
            conn.mark_closed(CloseCode.SERVICE_RESTART, "edge unreachable")
            return False
        return True

    def _deny(self, status: int, reason: str) -> bool:
        conn = self.connection
        conn.mark_closed(CloseCode.POLICY_VIOLATION, reason)
        conn.closed_here = True
        try:
            conn._outbox(wire.Deny(conn.id, int(status), reason[:200]).encode())
        except EdgeUnreachable:
            pass  # the edge is gone: its client's handshake fails there anyway
        return False

    def handle(self, event) -> bool:
        """Handle one event from the mailbox; False when this connection is done here.

        Messages that arrived before the client left are still handled, in
        order (their sends raise ConnectionClosed); after a close by this
        side, whatever is still queued is dropped.
        """
        conn = self.connection
        if event is STOP or conn.closed_here:
            return False
        if isinstance(event, wire.Disconnect):
            # The edge's word on why the connection ended. In a handler process
            # it replaces the provisional close of SIGUSR1, which could not say.
            conn.mark_closed(event.code, event.reason, final=True)
            return False
        if isinstance(event, wire.Data):
            self.receive(event.payload if event.binary else event.payload.decode("utf-8"))
        elif isinstance(event, wire.Event):
            self.receive_event(event)
        elif isinstance(event, wire.Recovery):
            self._call("on_recovered" if event.recovered else "on_resync", event.group)
        elif isinstance(event, wire.Refresh):
            self.refresh(event.token)
        elif isinstance(event, wire.PresenceDiff):
            self._call("on_presence", event.group, list(event.diff.get("joined", ())), list(event.diff.get("left", ())))
        elif isinstance(event, wire.UserPresenceDiff):
            self._call("on_user_presence", event.group, dict(event.diff.get("joined", {})),
                       list(event.diff.get("left", ())))
        return not conn.closed_here

    def receive(self, message: str | bytes) -> None:
        """Hand one client message to the handler, keeping the on_open contract."""
        if not self.opened:
            self.opened = True
            if self._call("on_open", message) is None and not self.connection.closed:
                self._call("on_message", message)
        else:
            self._call("on_message", message)

    def refresh(self, token: str) -> None:
        """The client sent a fresh token: check it, and tell the edge its new expiry (or close with 1008)."""
        conn = self.connection
        self._db_hygiene()
        try:
            answer = access.refreshed(conn.id, conn.request, self.handler, token)
        except Exception:
            logger.exception("connection %s: checking its fresh token failed", conn.id)
            answer = wire.Close(conn.id, CloseCode.INTERNAL_ERROR, "handler error")
        finally:
            self._db_hygiene()
        if isinstance(answer, wire.Close):
            logger.info("connection %s: its fresh token was refused (%s)", conn.id, answer.reason)
            conn.close(answer.code, answer.reason)
            return
        try:
            conn._deliver(answer.encode())
        except ConnectionClosed:
            pass  # the client left meanwhile

    def receive_event(self, event: wire.Event) -> None:
        """Hand a Socket.IO client's named event to the handler; answer its ack with what the handler returned.

        A named event is not the first message of the on_open contract (that
        is a ``message`` event): it skips on_open, but on_close still runs.
        """
        self.opened = True
        try:
            args = json.loads(event.payload)
            if not isinstance(args, list):
                raise ValueError("not a JSON array")
        except ValueError:
            # The edge encodes the arguments itself: this is a bug there, not the client's doing.
            logger.error("connection %s: event %r with arguments that are not a JSON array", self.connection.id,
                         event.name)
            self.connection.close(CloseCode.INTERNAL_ERROR, "bad event")
            return
        payload = args[0] if len(args) == 1 else (None if not args else args)
        failed = []
        result = self._call("dispatch_event", event.name, payload, failed=failed)
        if event.ack < 0 or failed or self.connection.closed:
            return
        try:
            encoded = self.handler.encode_ack(result)
        except (TypeError, ValueError):
            logger.exception("%s: the value returned for event %r of connection %s is not JSON-serializable; "
                             "closing it with 1011", type(self.handler).__name__, event.name, self.connection.id)
            self.connection.close(CloseCode.INTERNAL_ERROR, "handler error")
            return
        try:
            self.connection._deliver(wire.EventAck(self.connection.id, event.ack, encoded).encode())
        except ConnectionClosed:
            pass  # the edge is gone, and the client with it

    def _call(self, hook: str, *args, failed: list | None = None):
        conn = self.connection
        self._db_hygiene()
        try:
            if self.tracing is None:
                return getattr(self.handler, hook)(*args)
            with self.tracing.span(hook, _route_name(conn), self.handler):
                return getattr(self.handler, hook)(*args)
        except ConnectionClosed as exc:
            if exc.conn_id != conn.id:  # a send to another connection: that is a bug
                self._fail(hook)
            if failed is not None:
                failed.append(exc)
            return False
        except Exception as exc:
            self._fail(hook)
            if failed is not None:
                failed.append(exc)
            return False
        finally:
            self._db_hygiene()

    def _db_hygiene(self) -> None:
        """Django's request_started/finished work for the database, in one pass.

        Equivalent to reset_queries() + close_old_connections(), but only in
        a thread that has opened a database connection since the last pass
        that found none open: a handler that never touches the database
        (most messages of most handlers) pays one attribute read. So a
        handler still never starts with a broken or expired connection, as
        in Django's request cycle.
        """
        if self.manage_db_connections and _database_use.opened:
            still_open = False
            for conn in connections.all(initialized_only=True):
                conn.queries_log.clear()
                conn.close_if_unusable_or_obsolete()
                still_open = still_open or conn.connection is not None
            if not still_open:
                _database_use.opened = False

    def _fail(self, hook: str) -> None:
        conn = self.connection
        logger.exception(
            "%s.%s raised on connection %s (route %r); closing it with 1011",
            type(self.handler).__name__,
            hook,
            conn.id,
            conn.route,
        )
        if hook != "on_close":
            conn.close(CloseCode.INTERNAL_ERROR, "handler error")


def _route_name(conn: Connection) -> str:
    """The route's name (``ws_path(..., name=...)``), or its path when it has none."""
    match = getattr(conn.request, "resolver_match", None)
    return (match.url_name if match is not None else None) or conn.route


def _traceparent(request_meta: dict) -> str:
    """The edge's handshake span (WS_TRACING there), else the client's own ``traceparent`` header, or ''."""
    if request_meta.get("traceparent"):
        return request_meta["traceparent"]
    for name, value in request_meta.get("headers", ()):
        if name.lower() == "traceparent":
            return value
    return ""


def _check_access(handler) -> None:
    """Apply the handler's declarative login_required / permission_required."""
    perms = handler.permission_required
    if not handler.login_required and not perms:
        return
    user = getattr(handler.request, "user", None)
    if user is None or not user.is_authenticated:
        raise HandshakeDenied(403, "login required")
    if isinstance(perms, str):
        perms = (perms,)
    if perms and not user.has_perms(perms):
        raise HandshakeDenied(403, "permission required")
