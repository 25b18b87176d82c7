"""Messages for clients, from workers and other senders, and their de-duplication: a ref is delivered once.

A worker's Send goes to its own connection (or waits for the upgrade, when
on_connect sent it); a SendTo or a GroupSend comes from any Django process,
and a GroupSend goes through :mod:`.recovery` when its group keeps history.
In cluster mode the broker carries the same messages from other edges.

A sender's message carries a ref, its idempotency key (``send_to_group(key=...)``),
and the sender waits for each edge's Ack. An edge that took the message but
whose Ack was lost looks unreached, so the sender retries with the same key
(``SendFailed.key``); without a memory of refs that retry, or the original
arriving late after a partition, would reach every client twice. The memory
is bounded twice, by the ttl (WS_SEND_KEY_TTL) and by
:data:`RECENT_SENDS_LIMIT`, so a sender minting keys cannot grow the edge
without end.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import typing

from django_ws import wire
from django_ws.history import Position

from .actions import Acknowledge, Action, Answer, deliver
from .lifecycle import is_open, waits_for_upgrade

if typing.TYPE_CHECKING:  # pragma: no cover
    from django_ws.history import History

    from .groups import Groups
    from .records import Connection, Stats
    from .recovery import Recovery

logger = logging.getLogger("django_ws.edge")

#: Most idempotency keys an edge remembers, whatever WS_SEND_KEY_TTL says.
RECENT_SENDS_LIMIT = 100_000


class RecentSends:
    """The refs of recent sends, each with the number of clients its first delivery reached."""

    __slots__ = ("_recent", "clock", "edge_id", "stats", "ttl")

    def __init__(self, ttl: float, edge_id: str, stats: Stats, clock: typing.Callable[[], float]):
        #: ref -> (expiry, clients reached), oldest first: every entry lives the same ttl.
        self._recent: collections.OrderedDict[str, tuple[float, int]] = collections.OrderedDict()
        self.ttl = ttl
        self.edge_id = edge_id
        self.stats = stats
        self.clock = clock

    def __len__(self) -> int:
        """The refs remembered now (the stats' ``records``: bounded by the ttl and RECENT_SENDS_LIMIT)."""
        return len(self._recent)

    def once(self, identity: bytes, message: wire.GroupSend | wire.SendTo,
             targets: typing.Callable[[], tuple[list[Connection], Position | None]]) -> list[Action]:
        """Deliver a sender's message, acknowledged when it has a ref, unless that ref came before.

        ``targets()`` gives the connections it goes to and its position (None
        but for a group with history), once it is known not to be a repeat.
        A repeat within the ttl is acknowledged with the first delivery's
        count and not delivered again.
        """
        ref = message.ref
        if ref:
            now = self.clock()
            recent = self._recent
            while recent and (next(iter(recent.values()))[0] <= now or len(recent) > RECENT_SENDS_LIMIT):
                recent.popitem(last=False)
            seen = recent.get(ref)
            if seen is not None:
                return [Answer(identity, wire.Ack(ref, self.edge_id, seen[1]))]
        found, position = targets()
        actions = deliver(self.stats, found, message.binary, message.payload, position, message.sent_at, message.trace)
        if ref:
            if self.ttl > 0:
                recent[ref] = (now + self.ttl, len(found))
            actions.append(Answer(identity, wire.Ack(ref, self.edge_id, len(found))))
        return actions


class Sends:
    """Where each message for clients goes: a connection, a group's open members, or nowhere (gone)."""

    __slots__ = ("connections", "history", "members", "recent", "recovery", "start_close", "stats")

    def __init__(self, connections: dict[str, Connection], members: Groups, recovery: Recovery, history: History,
                 recent: RecentSends, stats: Stats,
                 start_close: typing.Callable[[Connection, int, str], list[Action]]):
        self.connections = connections
        #: EdgeCore's own way to start closing a connection (the lifecycle's rule).
        self.start_close = start_close
        self.members = members
        self.recovery = recovery
        self.history = history
        self.recent = recent
        self.stats = stats

    def send(self, identity: bytes, message: wire.Send) -> list[Action]:
        """A handler's message for its own client."""
        conn = self.connections.get(message.conn_id)
        if conn is None:
            logger.debug("send to gone connection %s dropped", message.conn_id)
            return []
        if is_open(conn):
            return deliver(self.stats, [conn], message.binary, message.payload)
        if waits_for_upgrade(conn):
            # Sent from on_connect: the client gets it first thing after the upgrade.
            conn.keep_early([(message.binary, message.payload, None)])
        return []

    def group_send(self, identity: bytes, message: wire.GroupSend) -> list[Action]:
        """A sender's message for a group's open members here (recorded first, if the group keeps history)."""
        if not self.history:
            return self.recent.once(
                identity, message, lambda: (self.members.members_of(message.group, exclude=message.exclude), None))
        return self.recent.once(identity, message, lambda: self.recovery.fan_out(message))

    def send_to(self, identity: bytes, message: wire.SendTo) -> list[Action]:
        """A sender's message for one connection, wherever it was sent from."""
        def target() -> tuple[list[Connection], None]:
            conn = self.connections.get(message.conn_id)
            return ([conn] if conn is not None and is_open(conn) else []), None

        return self.recent.once(identity, message, target)

    def close_connections(self, identity: bytes, message: wire.CloseConnections) -> list[Action]:
        """A sender's close_connection() or close_group(): close the open ones, Ack how many.

        Not de-duplicated by ref as sends are: closing twice is closing once.
        """
        if message.conn_id:
            found = self.connections.get(message.conn_id)
            targets = [found] if found is not None and is_open(found) else []
        else:
            targets = self.members.members_of(message.group)
        actions: list[Action] = []
        for conn in targets:
            actions += self.start_close(conn, message.code, message.reason)
        if message.ref:
            actions.append(Answer(identity, wire.Ack(message.ref, self.recent.edge_id, len(targets))))
        return actions

    def event_ack(self, identity: bytes, message: wire.EventAck) -> list[Action]:
        """A handler's answer to a Socket.IO client's event."""
        conn = self.connections.get(message.conn_id)
        if conn is None or not is_open(conn):
            return []
        return [Acknowledge(conn, message.ack, message.payload)]

    def from_broker(self, message: wire.Message, position: tuple[str, int] | None) -> list[Action]:
        """Cluster mode: a message the broker carried; see EdgeCore.broker_message."""
        if isinstance(message, wire.GroupSend):
            if position is not None:
                return self.recovery.fan_out_at(message, Position(message.group, *position))
            # No position: the sender keeps no history for this group; neither does the edge in a cluster.
            return deliver(self.stats, self.members.members_of(message.group, exclude=message.exclude),
                           message.binary, message.payload, None, message.sent_at, message.trace)
        if isinstance(message, wire.SendTo):
            return self.send_to(b"", dataclasses.replace(message, ref=""))
        if isinstance(message, wire.CloseConnections):
            return self.close_connections(b"", dataclasses.replace(message, ref=""))
        logger.warning("edge dropped an unexpected %s from the broker", type(message).__name__)
        return []
