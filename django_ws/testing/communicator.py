"""``HandlerCommunicator``: drive a handler in this process, with no servers.

The handler runs in the calling thread, so inside Django's ``TestCase`` it
sees the test database and its transaction, as a view under the test client
does. Groups work in memory between the communicators of one test.
"""

from __future__ import annotations

import collections
import json
import threading
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django_ws import sending, wire
from django_ws.conf import ws_settings
from django_ws.handlers import CloseCode
from django_ws.history import History, parse_settings
from django_ws.presence import UserCounts
from django_ws.worker.connection import Connection, ConnectionRunner

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser
    from django.contrib.sessions.backends.base import SessionBase


class _MemoryGroups:
    """Group membership and fan-out for communicators, standing in for the edge."""

    def __init__(self):
        self.members: dict[str, set[str]] = collections.defaultdict(set)
        #: group -> the connections whose handlers watch it (watch_presence).
        self.watchers: dict[str, set[str]] = collections.defaultdict(set)
        #: group -> its users (join(group, presence=...)), counted as the edge counts them.
        self.users: dict[str, UserCounts] = collections.defaultdict(UserCounts)
        self.communicators: dict[str, HandlerCommunicator] = {}
        self.lock = threading.RLock()
        self._saved = None
        self._installed = False
        #: The groups' history (WS_GROUP_HISTORY), as an edge keeps it: kept across
        #: communicators, so that one can come back with another's positions.
        self.history: History | None = None
        self._history_settings = None

    def _history(self) -> History:
        configured = ws_settings.WS_GROUP_HISTORY
        if self.history is None or configured != self._history_settings:
            self.history, self._history_settings = History(parse_settings(configured)), configured
        return self.history

    def register(self, communicator: HandlerCommunicator) -> None:
        with self.lock:
            if not self.communicators:
                self._saved, self._installed = sending.use_route(_MemoryRoute(self)), True
            self.communicators[communicator.connection_id] = communicator

    def unregister(self, communicator: HandlerCommunicator) -> None:
        with self.lock:
            self.communicators.pop(communicator.connection_id, None)
            for watchers in self.watchers.values():
                watchers.discard(communicator.connection_id)
            for group, members in self.members.items():
                if communicator.connection_id in members:
                    members.discard(communicator.connection_id)
                    self._presence_changed(group, [], [communicator.connection_id])
                    self._user_left(group, communicator.connection_id)
            if not self.communicators and self._installed:
                sending.use_route(self._saved)  # None too: the default route again
                self._saved, self._installed = None, False

    def dispatch(self, message: wire.Message) -> None:
        with self.lock:
            position = None
            if isinstance(message, wire.GroupSend):
                targets = [c for c in sorted(self.members.get(message.group, ())) if c != message.exclude]
                position = self._history().record(message.group, message.binary, message.payload)
            elif isinstance(message, wire.SendTo):
                targets = [message.conn_id]
            elif isinstance(message, wire.JoinAs):
                before = self.users[message.group].users.get(message.user)
                before_info = before[1] if before else None
                if self.users[message.group].add(message.conn_id, message.user, message.info) or (
                        before_info != message.info):
                    self._user_presence_changed(message.group, {message.user: message.info}, [])
                self.dispatch(wire.Join(message.conn_id, message.group))
                return
            elif isinstance(message, wire.Join):
                if message.conn_id not in self.members[message.group]:
                    self.members[message.group].add(message.conn_id)
                    self._presence_changed(message.group, [message.conn_id], [])
                communicator = self.communicators.get(message.conn_id)
                if communicator is not None and message.group in communicator.since:
                    self._recover(communicator, message.group, *communicator.since.pop(message.group))
                return
            elif isinstance(message, wire.Leave):
                if message.conn_id in self.members[message.group]:
                    self.members[message.group].discard(message.conn_id)
                    self._presence_changed(message.group, [], [message.conn_id])
                    self._user_left(message.group, message.conn_id)
                return
            elif isinstance(message, wire.Watch):
                if message.watch:
                    self.watchers[message.group].add(message.conn_id)
                else:
                    self.watchers[message.group].discard(message.conn_id)
                return
            else:
                return
            for conn_id in targets:
                communicator = self.communicators.get(conn_id)
                if communicator is not None and not communicator.closed:
                    communicator.output.append(message.payload if message.binary else message.payload.decode())
                    if position is not None:
                        communicator.positions[message.group] = (position.epoch, position.offset)

    def _presence_changed(self, group: str, joined: list[str], left: list[str]) -> None:
        """As the edge does: each watcher's handler hears of it (its on_presence runs at its next turn)."""
        for conn_id in sorted(self.watchers.get(group, ())):
            communicator = self.communicators.get(conn_id)
            if communicator is not None:
                communicator.pending.append(wire.PresenceDiff(conn_id, group, {"joined": joined, "left": left}))

    def _user_left(self, group: str, conn_id: str) -> None:
        gone = self.users[group].remove(conn_id)
        if gone is not None:
            self._user_presence_changed(group, {}, [gone])

    def _user_presence_changed(self, group: str, joined: dict, left: list[str]) -> None:
        """As the edge does, without its window: each watcher's on_user_presence runs at its next turn."""
        for conn_id in sorted(self.watchers.get(group, ())):
            communicator = self.communicators.get(conn_id)
            if communicator is not None:
                communicator.pending.append(wire.UserPresenceDiff(conn_id, group, {"joined": joined, "left": left}))

    def _recover(self, communicator: HandlerCommunicator, group: str, epoch: str, offset: int) -> None:
        """As the edge does on a join: replay the gap after ``(epoch, offset)``, or tell the handler to resync."""
        entries, here = self._history().replay(group, epoch, offset)
        for entry in entries or ():
            communicator.output.append(entry.payload if entry.binary else entry.payload.decode())
        last = entries[-1].offset if entries else here.offset
        communicator.positions[group] = (here.epoch, last)
        # Run after the hook that joined returns: a handler's hooks never run inside each other.
        communicator.pending.append(wire.Recovery(communicator.connection_id, group, entries is not None))


class _MemoryRoute(sending.WorkerRoute):
    """``send_to_group()`` and friends during a test: delivered in memory, presence answered from it."""

    def __init__(self, groups: _MemoryGroups):
        super().__init__(groups.dispatch, [])
        self.groups = groups

    def members(self, group: str, timeout: float | None) -> list[str]:
        with self.groups.lock:
            return sorted(self.groups.members.get(group, ()))

    def counts(self, group: str, timeout: float | None) -> tuple[int, int]:
        with self.groups.lock:
            return len(self.groups.members.get(group, ())), len(self.groups.users.get(group, ()))

    def users(self, group: str, limit: int, after: str | None, timeout: float | None) -> dict:
        with self.groups.lock:
            return self.groups.users.get(group, UserCounts()).page(limit, after)


groups = _MemoryGroups()


class HandlerCommunicator:
    """Open a route, send to and receive from its handler, close it.

    ::

        communicator = HandlerCommunicator("chat/lobby", user=alice)
        assert communicator.connect()
        communicator.send_json({"text": "hi"})
        assert communicator.receive_json()["text"] == "hi"
        communicator.close()                 # runs on_close

    ``path`` is the route below the mount prefix ("chat/lobby") or a full
    URL as ``reverse_ws`` gives it. ``user`` and ``session`` are set on
    ``self.request`` as given; ``cookies`` (such as ``self.client.cookies``
    after ``force_login``) load them the real way, through the session
    cookie. ``receive()`` returns what the handler sent, in order; it never
    waits, because the handler already ran in this thread.
    """

    _ids = 0

    def __init__(self, path: str, *, user: AbstractBaseUser | AnonymousUser | None = None,
                 session: SessionBase | None = None, headers: dict[str, str] | None = None,
                 cookies: dict[str, str] | SimpleCookie | None = None, query: str = "",
                 subprotocols: tuple[str, ...] = (), since: dict[str, tuple[str, int]] | None = None):
        route, query_from_path = self._route(path)
        HandlerCommunicator._ids += 1
        self.connection_id = f"test.{HandlerCommunicator._ids:x}"
        header_list = [[k, v] for k, v in (headers or {}).items()]
        if cookies:
            if isinstance(cookies, SimpleCookie):
                cookies = {k: m.value for k, m in cookies.items()}
            header_list.append(["Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items())])
        if subprotocols:
            header_list.append(["Sec-WebSocket-Protocol", ", ".join(subprotocols)])
        meta = {
            "path": "/" + route,
            "query": query or query_from_path,
            "headers": header_list,
            "remote_addr": "127.0.0.1",
            "server_name": "testserver",
            "server_port": "80",
            "secure": False,
            "subprotocols": list(subprotocols),
        }
        if since:
            meta["recovering"] = sorted(since)
        #: The positions presented, as a client coming back presents its last ones (docs/protocol.rst).
        self.since = dict(since or {})
        #: The last position of each group with history that this client received: ``since=`` for the next one.
        self.positions: dict[str, tuple[str, int]] = {}
        #: What the edge would tell the worker after a hook (the outcome of a recovery).
        self.pending: list[wire.Message] = []
        self.output: collections.deque = collections.deque()
        #: Acknowledgements of emit()'s events, by ack id, until emit() returns them.
        self._acks: dict[int, list] = {}
        self._next_ack = 0
        self.accepted: bool | None = None
        self.subprotocol: str | None = None
        self.deny_status: int | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.connection = Connection(self.connection_id, route, meta, self._outbox)
        overrides = self.connection.request_overrides = {}
        if user is not None:
            overrides["user"] = user
        if session is not None:
            overrides["session"] = session
        self.runner = ConnectionRunner(self.connection, mailbox=None, on_finished=lambda conn: None)
        self.runner.manage_db_connections = False

    @staticmethod
    def _route(path: str) -> tuple[str, str]:
        if "://" in path:
            parts = urlsplit(path)
            prefix = urlsplit(ws_settings.WS_BASE_URL).path.rstrip("/")
            route = parts.path[len(prefix):] if parts.path.startswith(prefix) else parts.path
            return route.lstrip("/"), parts.query
        route, _, query = path.partition("?")
        return route.lstrip("/"), query

    def _outbox(self, frames: list) -> None:
        message = wire.decode(frames)
        if isinstance(message, wire.Send):
            self.output.append(message.payload if message.binary else message.payload.decode("utf-8"))
        elif isinstance(message, wire.Accept):
            self.accepted, self.subprotocol = True, message.subprotocol or None
        elif isinstance(message, wire.Deny):
            self.accepted, self.deny_status = False, message.status
        elif isinstance(message, wire.Close):
            self.close_code, self.close_reason = message.code, message.reason
        elif isinstance(message, wire.EventAck):
            self._acks[message.ack] = json.loads(message.payload)
        else:
            groups.dispatch(message)

    # -- the client's side --------------------------------------------------------

    def connect(self) -> bool:
        """Run the handshake; True if the handler accepted (else see ``deny_status``)."""
        groups.register(self)
        if not self.runner.handshake():
            groups.unregister(self)
            return False
        self._run_pending()
        return True

    def _run_pending(self) -> None:
        """What the edge told the worker during the last hook (a recovery's outcome), handled in order."""
        while self.pending and not self.connection.closed_here:
            self.runner.handle(self.pending.pop(0))

    def send(self, data: str | bytes) -> None:
        """Send one message to the handler; it runs before this returns."""
        if self.accepted is not True:
            raise AssertionError("connect() first: the handler has not accepted this connection")
        if self.connection.closed_here:
            raise AssertionError(f"the handler closed the connection (code {self.close_code}); nothing more is read")
        self.runner.receive(data)
        self._run_pending()
        if self.connection.closed_here:
            # The handler closed (or failed): as in the worker, on_close runs now.
            self._finish()

    def send_json(self, content: Any) -> None:
        """Send ``content`` encoded as JSON, as one text message."""
        self.send(json.dumps(content))

    def emit(self, name: str, *args: Any) -> list:
        """Emit the Socket.IO event ``name`` with ``args`` (docs/socketio.rst); return its acknowledgement's arguments.

        The handler runs before this returns (its ``@on_type(name)`` method or
        ``on_event``); what it returned comes back as Socket.IO would send it:
        ``[]`` for None, a tuple's items, else ``[value]``.
        """
        if self.accepted is not True:
            raise AssertionError("connect() first: the handler has not accepted this connection")
        if self.connection.closed_here:
            raise AssertionError(f"the handler closed the connection (code {self.close_code}); nothing more is read")
        self._next_ack += 1
        ack = self._next_ack
        payload = json.dumps(list(args)).encode("utf-8")
        self.runner.handle(wire.Event(self.connection_id, self.connection.route, name, ack, payload))
        self._run_pending()
        if self.connection.closed_here:
            self._finish()
            raise AssertionError(f"the handler closed the connection (code {self.close_code}) instead of answering")
        return self._acks.pop(ack)

    def receive(self) -> str | bytes:
        """The next message the handler sent; AssertionError if there is none.

        What other communicators' handlers did to this one's groups (its
        ``on_presence``) runs first.
        """
        self._run_pending()
        if not self.output:
            raise AssertionError(f"the handler sent nothing more (closed: {self.close_code})")
        return self.output.popleft()

    def receive_json(self) -> Any:
        """The next message the handler sent, decoded from JSON; AssertionError if it is not text."""
        message = self.receive()
        if not isinstance(message, str):
            raise AssertionError(f"expected a JSON text message, got {type(message).__name__}")
        return json.loads(message)

    def receive_nothing(self) -> bool:
        """True if the handler sent nothing that ``receive()`` has not returned yet."""
        self._run_pending()
        return not self.output

    @property
    def closed(self) -> bool:
        """Whether the connection has ended, closed by either side."""
        return self.connection.closed

    def close(self, code: int = CloseCode.NORMAL) -> None:
        """The client leaves: the handler's on_close runs (once)."""
        self.connection.mark_closed(code, "client closed")
        self._finish()

    def _finish(self) -> None:
        self.runner.finish()  # on_close if the handler accepted; a second call does nothing
        groups.unregister(self)

    def __enter__(self) -> "HandlerCommunicator":
        if not self.connect():
            raise AssertionError(f"the handler refused the connection with HTTP {self.deny_status}")
        return self

    def __exit__(self, *exc) -> None:
        self.close()
