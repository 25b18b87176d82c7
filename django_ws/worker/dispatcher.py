"""The worker's core: edge events in, connection runners and mailboxes out.

No sockets here. The I/O loop (server.py) decodes what arrives from an edge
and calls ``dispatch``; the dispatcher keeps the table of live connections,
starts a runner through the mode for each Connect, and puts each Data in its
connection's mailbox, in order, so one handler instance sees its frames one
at a time.
"""

from __future__ import annotations

import logging
import time
import typing

from django_ws import wire
from django_ws.handlers import CloseCode
from django_ws.handlers.request import share_meta

from .connection import STOP, Connection, ConnectionRunner
from .modes import Mode

logger = logging.getLogger("django_ws.worker")


class _Entry:
    __slots__ = ("connection", "mailbox", "edge_id", "task")

    def __init__(self, connection: Connection, mailbox, edge_id: str):
        self.connection = connection
        self.mailbox = mailbox
        self.edge_id = edge_id
        self.task = None


class Dispatcher:
    """Routes decoded events to connections.

    ``mailbox_limit`` bounds each connection's queue of unhandled messages:
    a handler that falls that far behind has its connection closed with
    1013 (try again later) instead of letting the worker's memory grow.
    """

    def __init__(self, mode: Mode, mailbox_limit: int = 1000):
        self.mode = mode
        self.mailbox_limit = mailbox_limit
        self.connections: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self.connections)

    def dispatch(self, message: wire.Message, edge_id: str, outbox: typing.Callable[[list], None]) -> None:
        if isinstance(message, (wire.Data, wire.Event, wire.Recovery, wire.PresenceDiff, wire.UserPresenceDiff,
                                wire.Refresh)):
            self._data(message, outbox)
        elif isinstance(message, wire.Connect):
            self._connect(message, edge_id, outbox)
        elif isinstance(message, wire.Disconnect):
            self._disconnect(message.conn_id, message.code, message.reason)
        else:
            logger.warning("worker dropped an unexpected %s from edge %s", type(message).__name__, edge_id)

    def _connect(self, message: wire.Connect, edge_id: str, outbox) -> None:
        if message.conn_id in self.connections:
            logger.warning("duplicate Connect for %s dropped", message.conn_id)
            return
        conn = Connection(message.conn_id, message.route, share_meta(message.request), outbox)
        capacity = self.mode.capacity
        if capacity and len(self.connections) >= capacity:
            # The edge thought there was room (its count lags by a heartbeat).
            # Refuse as the edge itself would: upgrade, then close with 1013,
            # a code that page JavaScript can see (an HTTP status it cannot).
            outbox(wire.Accept(conn.id, "").encode())
            outbox(wire.Close(conn.id, CloseCode.TRY_AGAIN_LATER, "worker at capacity").encode())
            return
        mailbox = self.mode.mailbox()
        runner = ConnectionRunner(conn, mailbox, self.finished)
        # Registered before the runner starts, so its Data can never overtake it.
        entry = self.connections[conn.id] = _Entry(conn, mailbox, edge_id)
        entry.task = self.mode.spawn(runner, name=f"ws:{conn.id}")

    def _data(self, message: wire.Data | wire.Event | wire.Recovery | wire.PresenceDiff | wire.UserPresenceDiff
              | wire.Refresh, outbox) -> None:
        entry = self.connections.get(message.conn_id)
        if entry is None:
            # Its handler has finished (it closed, failed, or we took the edge
            # for dead). Say so, so the edge cannot keep a client waiting on a
            # handler that is gone; if the edge is already closing, no harm.
            logger.debug("data for unknown connection %s: asking the edge to close it", message.conn_id)
            try:
                outbox(wire.Close(message.conn_id, CloseCode.SERVICE_RESTART, "no handler for this connection").encode())
            except Exception:
                pass
            return
        if entry.mailbox.qsize() >= self.mailbox_limit:
            logger.warning(
                "connection %s: %d messages wait for its handler; closing it with 1013",
                message.conn_id,
                self.mailbox_limit,
            )
            entry.connection.close(CloseCode.TRY_AGAIN_LATER, "handler too slow")
            self._end(entry, CloseCode.TRY_AGAIN_LATER, "handler too slow")
            return
        entry.mailbox.put(message)

    def _disconnect(self, conn_id: str, code: int, reason: str) -> None:
        entry = self.connections.get(conn_id)
        if entry is None:
            return  # the handler closed first and has already finished
        entry.connection.mark_closed(code, reason)
        self._end(entry, code, reason)
        if entry.task is not None:
            self.mode.interrupt(entry.task)

    @staticmethod
    def _end(entry: _Entry, code: int, reason: str) -> None:
        """Queue the end of a connection: why it ended (for a handler process, whose
        Connection is its own copy: on_close sees the code), then STOP."""
        conn = entry.connection
        entry.mailbox.put(wire.Disconnect(conn.id, conn.route, int(code), reason))
        entry.mailbox.put(STOP)

    def edge_lost(self, edge_id: str) -> list[str]:
        """End every connection held by an edge that went away; return their ids."""
        lost = [e for e in list(self.connections.values()) if e.edge_id == edge_id]
        for entry in lost:
            self._disconnect(entry.connection.id, CloseCode.GOING_AWAY, "edge lost")
        return [entry.connection.id for entry in lost]

    def shutdown(self, timeout: float) -> int:
        """End every connection, let on_close run, wait up to ``timeout``; return stragglers."""
        entries = list(self.connections.values())
        for entry in entries:
            # 1012: this worker is going; the edge may stay, and a client that
            # reconnects is placed on a worker that is still there. (When the
            # whole server stops, the edge has already closed clients with 1001.)
            if entry.connection.mark_closed(CloseCode.SERVICE_RESTART, "worker stopping"):
                try:
                    entry.connection._outbox(
                        wire.Close(entry.connection.id, CloseCode.SERVICE_RESTART, "worker stopping").encode()
                    )
                except Exception:
                    pass  # the edge is gone too: nobody to tell
            self._end(entry, entry.connection.close_code, entry.connection.close_reason)
        deadline = time.monotonic() + timeout
        for entry in entries:
            if entry.task is not None:
                entry.task.join(max(0.0, deadline - time.monotonic()))
        stragglers = list(self.connections.values())
        for entry in stragglers:
            if entry.task is not None:
                self.mode.abandon(entry.task)
        return len(stragglers)

    def finished(self, conn: Connection) -> None:
        """The runner of ``conn`` is done (called from its thread, greenlet or reaper)."""
        self.connections.pop(conn.id, None)
