"""Recovery: group messages with positions, a client's gap replayed, an edge caught up after the broker's outage.

No silent loss, across a reconnect, means that for a group with history
every member gets every message in order, or is told to resync. That takes
more than the membership sets of :mod:`.groups`: a member still in its
handshake gets the messages after its upgrade (``early``); a member whose
gap is being fetched from the broker gets the live messages after that gap
(``holding``); an edge whose broker was away holds the group's live
messages until it knows what it missed (a CatchUp), and must not tell a
client twice what that client recovered on its own meanwhile. Those rules
are here, together, because each reads the others' state.

Where the history is: on this edge (:class:`~django_ws.history.History`,
one edge), or with the broker (cluster mode), which assigns the positions
and whose answers to FetchGap and CatchUp come to :meth:`Recovery.gap_fetched`.
"""

from __future__ import annotations

import logging
import typing

from django_ws import wire
from django_ws.history import Position

from .actions import Action, CatchUp, FetchGap, ToWorker, deliver
from .lifecycle import OPEN, ended, is_open, waits_for_upgrade

if typing.TYPE_CHECKING:  # pragma: no cover
    from django_ws.history import History

    from .groups import Groups
    from .records import Connection, Stats

logger = logging.getLogger("django_ws.edge")

#: (binary, payload, position) of one message, as it waits in ``early`` or ``holding``.
Entry = tuple[bool, bytes, Position]


class Recovery:
    """Positions and gaps of the groups with history on one edge."""

    __slots__ = ("_catching_up", "_last_seen", "_recovered_meanwhile", "cluster", "connections", "edge_id",
                 "groups", "history", "stats")

    def __init__(self, connections: dict[str, Connection], groups: Groups, history: History, stats: Stats,
                 cluster: bool, edge_id: str):
        self.connections = connections
        self.groups = groups
        self.history = history
        self.stats = stats
        self.cluster = cluster
        self.edge_id = edge_id
        #: Cluster mode: the last position received of each group with history and members here,
        #: and the live messages of groups being caught up after an outage (see broker_resumed).
        self._last_seen: dict[str, tuple[str, int]] = {}
        self._catching_up: dict[str, list[tuple[wire.GroupSend, Position]]] = {}
        #: group being caught up -> connection id -> (epoch, offset) it recovered to meanwhile, on its own.
        self._recovered_meanwhile: dict[str, dict[str, tuple[str, int]]] = {}

    def records(self) -> dict[str, int]:
        """The sizes of the tables above, for the stats' ``records`` (each must stay bounded)."""
        return {"last_seen": len(self._last_seen), "catching_up": len(self._catching_up),
                "recovered_meanwhile": len(self._recovered_meanwhile)}

    # -- group messages with a position ----------------------------------------------------

    def fan_out(self, message: wire.GroupSend) -> tuple[list[Connection], Position | None]:
        """The open members of a group that may keep history here; the message is kept first, if it does.

        Members that asked for positions and are still in their handshake (a
        replay waits for them in ``early``) get it after that replay: between
        their join and their upgrade, nothing sent to the group falls in a gap.
        """
        position = self.history.record(message.group, message.binary, message.payload)
        if position is None:
            return self.groups.members_of(message.group, exclude=message.exclude), None
        return self._members_at(message.group, message.exclude, (message.binary, message.payload, position)), position

    def fan_out_at(self, message: wire.GroupSend, position: Position) -> list[Action]:
        """Cluster mode: a group message whose position the broker assigned: to the open members, in order.

        A member still in its handshake that asked for positions gets it after
        its upgrade; one whose gap the broker is being asked for gets it after
        that gap (see gap_fetched).
        """
        if not self.groups.groups.get(message.group):
            return []
        group, exclude = message.group, message.exclude
        entry = (message.binary, message.payload, position)
        held = self._catching_up.get(group)
        if held is not None:
            held.append((message, position))
            return []
        if self._received(group, position.epoch, position.offset):
            # A catch-up's answer overtook it (see gap_fetched): delivered already, with the catch-up.
            return []
        self._last_seen[group] = (position.epoch, position.offset)
        return deliver(self.stats, self._members_at(group, exclude, entry), message.binary, message.payload, position,
                       message.sent_at, message.trace)

    def _members_at(self, group: str, exclude: str, entry: Entry) -> list[Connection]:
        """The open members of ``group`` that get ``entry`` (binary, payload, position) now.

        The others get it later, in order: a member still in its handshake
        that asked for positions after its upgrade (``early``: between its join
        and its upgrade nothing falls in a gap), and one whose gap the broker is
        being asked for after that gap (``holding``, cluster mode).
        """
        targets: list[Connection] = []
        connections = self.connections
        for conn_id in self.groups.groups.get(group, ()):
            if conn_id == exclude:
                continue
            conn = connections.get(conn_id)
            if conn is None:
                continue
            if conn.replayed_to is not None and _replayed(conn, group, entry[2]):
                continue
            if conn.holding is not None and group in conn.holding:
                conn.holding[group].append(entry)
            elif conn.state is OPEN:  # is_open(conn), inlined: this runs once per member and message
                targets.append(conn)
            elif conn.positions is not None and waits_for_upgrade(conn):
                conn.keep_early([entry])
        return targets

    # -- a member that presented positions --------------------------------------------------

    def joined(self, conn: Connection, group: str) -> list[Action]:
        """``conn`` joined ``group``: if its client presented a position there, replay the gap, or ask the broker."""
        positions = conn.positions
        if positions is None or group not in positions.positions:
            return []
        epoch, offset = positions.positions.pop(group)
        if self.cluster and self.history.bound_for(group) is not None:
            # The broker keeps this history: ask it, and hold the live messages meanwhile.
            if conn.holding is None:
                conn.holding = {}
            conn.holding[group] = []
            return [FetchGap(conn, group, epoch, offset)]
        return self._recover(conn, group, epoch, offset)

    def _recover(self, conn: Connection, group: str, epoch: str, offset: int) -> list[Action]:
        """``conn`` joined ``group``, for which its client presented ``(epoch, offset)``: replay the gap, or say resync.

        Done here, in the join's own event, so that no message of the group
        can come between the replay and the live ones: the live ones are
        delivered by later events, and find the connection a member already.
        Its worker hears the outcome (wire.Recovery) for the handler's hooks.
        """
        entries, here = self.history.replay(group, epoch, offset)
        if entries is None:
            logger.debug("connection %s: gap in %s after %s:%d not covered; resync", conn.id, group, epoch, offset)
            frames = [(False, b"", here)]
        else:
            frames = [(e.binary, e.payload, Position(group, here.epoch, e.offset)) for e in entries]
        actions: list[Action] = []
        if is_open(conn):
            for frame in frames:
                actions += deliver(self.stats, [conn], *frame)
        else:
            conn.keep_early(frames)
        if conn.worker is not None:
            actions.append(ToWorker(conn.worker, wire.Recovery(conn.id, group, entries is not None)))
        return actions

    def _received(self, group: str, epoch: str, offset: int) -> bool:
        """Whether this edge's subscription has brought ``group``'s message at ``(epoch, offset)`` already."""
        seen = self._last_seen.get(group)
        return seen is not None and seen[0] == epoch and seen[1] >= offset

    def left(self, conn: Connection, group: str) -> None:
        """``conn`` left ``group`` (Groups.on_leave): drop what was held for it there, and the group if now empty."""
        if conn.holding is not None:
            conn.holding.pop(group, None)
            if not conn.holding:
                conn.holding = None
        if conn.replayed_to is not None:
            conn.replayed_to.pop(group, None)
            if not conn.replayed_to:
                conn.replayed_to = None
        if group not in self.groups.groups:
            self._last_seen.pop(group, None)  # no member left to catch up

    # -- the broker's answers (cluster mode) ----------------------------------------------

    def gap_fetched(self, conn_id: str | None, group: str, epoch: str, last: int,
                    entries: list[tuple[int, bool, bytes]] | None) -> list[Action]:
        """The broker answered a FetchGap for ``conn_id``: the group stands at ``(epoch, last)``.

        ``entries``: (offset, binary, payload) of every message after the
        client's position, or None when they are no longer all kept (or the
        broker could not be asked): the client is told to resync. Then come
        the live messages held meanwhile, but those the replay already held.
        Without ``conn_id``, the answer to a CatchUp, for every member here.
        """
        if conn_id is None:
            return self._caught_up(group, epoch, last, entries)
        conn = self.connections.get(conn_id)
        if conn is None or conn.holding is None or group not in conn.holding:
            return []  # closed, or left the group, meanwhile
        held = conn.holding.pop(group)
        if not conn.holding:
            conn.holding = None
        if group in self._catching_up:
            # The edge's own catch-up of this group is under way: it must not tell this client again.
            self._recovered_meanwhile.setdefault(group, {})[conn.id] = (epoch, last)
        elif epoch and not self._received(group, epoch, last):
            # The answer came on the command connection, ahead of messages the subscription
            # has not brought yet (another connection): those up to ``last`` are in the replay.
            if conn.replayed_to is None:
                conn.replayed_to = {}
            conn.replayed_to[group] = (epoch, last)
        if entries is None:
            frames = [(False, b"", Position(group, epoch, last, resync=True))]
        else:
            frames = [(binary, payload, Position(group, epoch, offset)) for offset, binary, payload in entries]
        frames += [entry for entry in held if entry[2].epoch != epoch or entry[2].offset > last]
        actions: list[Action] = []
        if is_open(conn):
            for frame in frames:
                actions += deliver(self.stats, [conn], *frame)
        elif waits_for_upgrade(conn):
            conn.keep_early(frames)
        if conn.worker is not None and not ended(conn):
            actions.append(ToWorker(conn.worker, wire.Recovery(conn.id, group, entries is not None)))
        return actions

    def broker_resumed(self) -> list[Action]:
        """The broker is back after an outage; catch up the groups with history here.

        Their live messages are held until the broker says what this edge
        may have missed (a CatchUp each): every member then gets that first,
        or, if it is no longer kept, each client that asked for positions the
        resync signal, as after any gap the history cannot fill.
        """
        actions: list[Action] = []
        for group in self.groups.groups:
            if group in self._catching_up or self.history.bound_for(group) is None:
                continue
            self._catching_up[group] = []
            # No message received yet since its first member joined here: where it stood is not
            # known, so whatever was sent meanwhile cannot be told apart: its clients resync.
            actions.append(CatchUp(group, *self._last_seen.get(group, ("", 0))))
        return actions

    def _caught_up(self, group: str, epoch: str, last: int, entries: list[tuple[int, bool, bytes]] | None
                   ) -> list[Action]:
        """The broker answered a CatchUp: what the members missed first, then the live messages held meanwhile."""
        held = self._catching_up.pop(group, None)
        if held is None:
            return []
        recovered = self._recovered_meanwhile.pop(group, {})
        members = [conn for conn in self.groups.members_of(group)
                   if not (conn.holding and group in conn.holding) and conn.id not in recovered]
        actions: list[Action] = []
        if entries is None:
            logger.warning("edge %s: messages of %s sent while the broker was away are lost; clients resync",
                           self.edge_id, group)
            told = [conn for conn in members if conn.positions is not None]
            actions += deliver(self.stats, told, False, b"", Position(group, epoch, last, resync=True))
        else:
            for offset, binary, payload in entries:
                actions += deliver(self.stats, members, binary, payload, Position(group, epoch, offset))
        if epoch:
            self._last_seen[group] = (epoch, last)
        for message, position in held:
            if position.epoch == epoch and position.offset <= last:
                continue  # in the catch-up already
            self._last_seen[group] = (position.epoch, position.offset)
            targets = [conn for conn in members if conn.id != message.exclude]
            for conn_id, (their_epoch, their_last) in recovered.items():
                conn = self.connections.get(conn_id)
                if (conn is not None and is_open(conn) and conn_id != message.exclude
                        and (position.epoch != their_epoch or position.offset > their_last)):
                    targets.append(conn)
            actions += deliver(self.stats, targets, message.binary, message.payload, position,
                               message.sent_at, message.trace)
        return actions


def _replayed(conn: Connection, group: str, position: Position | None) -> bool:
    """Whether ``conn``'s replay of ``group`` gave it the message at ``position`` already.

    The first live message past the replay ends the check for that group.
    """
    marks = conn.replayed_to
    mark = marks.get(group) if marks else None
    if marks is None or mark is None or position is None:
        return False
    if position.epoch == mark[0] and position.offset <= mark[1]:
        return True
    del marks[group]
    if not marks:
        conn.replayed_to = None
    return False
