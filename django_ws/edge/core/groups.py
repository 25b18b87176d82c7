"""Groups on one edge: who is a member, who watches the joins and leaves, and who gets a plain group message.

Membership is the one part of the core that spans connections, so it is
kept apart from any single connection's story: a join adds a connection id
to a set, a fan-out reads those sets, and a connection that ends leaves
every set it was in. In cluster mode the broker must hear of the first
member and the last (``Subscribe`` / ``Unsubscribe``) and of every join and
leave (``MemberChanged``, for the presence of other edges); watchers here
hear joins and leaves as ``PresenceDiff``. Connections joined with a user
(``JoinAs``) are also counted by user; the users who appear or disappear are
gathered for a window (``FlushPresenceLater``) and told to watchers as one
``UserPresenceDiff`` per group: from these counts in static mode, from the
broker's (which span every edge) in cluster mode. Positions and recovery of groups
with history are :mod:`.recovery`'s, on top of these sets.
"""

from __future__ import annotations

import typing

from django_ws import wire
from django_ws.presence import Coalescer, UserCounts

from .actions import Action, Answer, FlushPresenceLater, MemberChanged, Subscribe, ToWorker, Unsubscribe
from .lifecycle import OPEN, may_join

if typing.TYPE_CHECKING:  # pragma: no cover
    from .records import Connection


class Groups:
    """The groups and watchers of one edge, by connection id (the core's ``groups`` and ``watchers``)."""

    __slots__ = ("cluster", "coalescer", "connections", "edge_id", "groups", "on_leave", "users", "watchers",
                 "window")

    def __init__(self, connections: dict[str, Connection], cluster: bool, edge_id: str, window: float = 0.1):
        #: The core's connection table, read to turn ids into connections.
        self.connections = connections
        #: Cluster mode: group messages come from the broker, which must hear of joins and leaves.
        self.cluster = cluster
        self.edge_id = edge_id
        #: group -> the ids of its members here.
        self.groups: dict[str, set[str]] = {}
        #: group -> the connections whose handlers watch its joins and leaves (Watch).
        self.watchers: dict[str, set[str]] = {}
        #: Told after a connection left a group (the core's recovery drops what it held for it there).
        self.on_leave: typing.Callable[[Connection, str], None] = lambda conn, group: None
        #: group -> its users here (connections joined with a user), counted.
        self.users: dict[str, UserCounts] = {}
        #: User joins and leaves not yet told to watchers; told every ``window`` seconds at most.
        self.coalescer = Coalescer()
        self.window = window

    def members_of(self, group: str, exclude: str = "") -> list[Connection]:
        """The open connections of ``group`` (but ``exclude``)."""
        members = self.groups.get(group)
        if not members:
            return []
        connections = self.connections
        targets = []
        for conn_id in members:
            if conn_id != exclude:
                conn = connections.get(conn_id)
                # is_open(conn), inlined: this runs once per member and message.
                if conn is not None and conn.state is OPEN:
                    targets.append(conn)
        return targets

    def join(self, conn: Connection, group: str, user: str = "", info: dict | None = None) -> list[Action]:
        """Make ``conn`` a member of ``group`` (again: a repeated join changes nothing but its record).

        ``user``: as a connection of that user, with ``info`` (again: new info).
        """
        actions: list[Action] = []
        if user:
            users = self.users.get(group)
            if users is None:
                users = self.users[group] = UserCounts()
            info = info or {}
            before = users.users.get(user)
            changed = users.add(conn.id, user, info) or before[1] != info
            if self.cluster:
                # The broker counts across edges: it tells who appeared, and new info.
                actions.append(MemberChanged(group, conn.id, True, user, info))
            else:
                actions += self.user_changed(group, {user: info}, ()) if changed else []
        members = self.groups.get(group)
        if members is None:
            members = self.groups[group] = set()
            if self.cluster:
                actions.append(Subscribe(group))
        if conn.id not in members:
            if self.cluster and not user:
                actions.append(MemberChanged(group, conn.id, True))
            if self.watchers:
                actions += self.presence_changed(group, [conn.id], [])
        members.add(conn.id)
        if conn.groups is None:
            conn.groups = set()
        conn.groups.add(group)
        return actions

    def leave(self, identity: bytes, message: wire.Leave) -> list[Action]:
        """A handler's leave()."""
        conn = self.connections.get(message.conn_id)
        if conn is None:
            return []
        if conn.groups:
            conn.groups.discard(message.group)
        return self.remove(conn, message.group)

    def drop(self, conn: Connection) -> list[Action]:
        """``conn`` ended: it leaves every group it joined, and stops watching those it watched."""
        actions: list[Action] = []
        if conn.watching:
            for group in list(conn.watching):
                actions += self.unwatch(conn, group)
        if conn.groups:
            for group in conn.groups:
                actions += self.remove(conn, group)
            conn.groups = None
        return actions

    def remove(self, conn: Connection, group: str) -> list[Action]:
        """Take ``conn`` out of ``group`` (its own ``groups`` is the caller's business)."""
        members = self.groups.get(group)
        if members is None or conn.id not in members:
            return []
        members.discard(conn.id)
        actions = self.presence_changed(group, [], [conn.id]) if self.watchers else []
        users = self.users.get(group)
        if users is not None:
            gone = users.remove(conn.id)
            if not users:
                del self.users[group]
            if gone is not None and not self.cluster:
                actions += self.user_changed(group, {}, [gone])
        if self.cluster:
            actions.append(MemberChanged(group, conn.id, False))
        if not members:
            del self.groups[group]
            if self.cluster:
                actions.append(Unsubscribe(group))
        self.on_leave(conn, group)
        return actions

    def presence_changed(self, group: str, joined: list[str], left: list[str]) -> list[Action]:
        """Tell the handlers watching ``group`` who joined and who left it."""
        watchers = self.watchers.get(group)
        if not watchers:
            return []
        diff = {"joined": joined, "left": left}
        actions: list[Action] = []
        for conn_id in watchers:
            conn = self.connections.get(conn_id)
            if conn is not None and conn.worker is not None:
                actions.append(ToWorker(conn.worker, wire.PresenceDiff(conn_id, group, diff)))
        return actions

    def user_changed(self, group: str, joined: dict[str, dict], left: typing.Iterable[str]) -> list[Action]:
        """Users appeared in (or left) ``group``: gathered for the watchers, told at the end of the window."""
        if group not in self.watchers:
            return []
        if self.coalescer.note(group, joined, left):
            if self.window <= 0:
                return self.flush_presence()
            return [FlushPresenceLater(self.window)]
        return []

    def flush_presence(self) -> list[Action]:
        """The window closed: each watcher hears the net user changes of each group it watches, in one message."""
        actions: list[Action] = []
        for group, (joined, left) in self.coalescer.drain().items():
            diff = {"joined": joined, "left": left}
            for conn_id in self.watchers.get(group, ()):
                conn = self.connections.get(conn_id)
                if conn is not None and conn.worker is not None:
                    actions.append(ToWorker(conn.worker, wire.UserPresenceDiff(conn_id, group, diff)))
        return actions

    def watch(self, identity: bytes, message: wire.Watch) -> list[Action]:
        """A handler starts (or stops) watching the joins and leaves of a group."""
        conn = self.connections.get(message.conn_id)
        if conn is None or not may_join(conn):
            return []
        if not message.watch:
            return self.unwatch(conn, message.group)
        watchers = self.watchers.get(message.group)
        actions: list[Action] = []
        if watchers is None:
            watchers = self.watchers[message.group] = set()
            if self.cluster:
                actions.append(Subscribe(message.group, presence=True))
        watchers.add(conn.id)
        if conn.watching is None:
            conn.watching = set()
        conn.watching.add(message.group)
        return actions

    def unwatch(self, conn: Connection, group: str) -> list[Action]:
        """``conn``'s handler no longer watches ``group``."""
        if conn.watching:
            conn.watching.discard(group)
        watchers = self.watchers.get(group)
        if watchers is None or conn.id not in watchers:
            return []
        watchers.discard(conn.id)
        if watchers:
            return []
        del self.watchers[group]
        return [Unsubscribe(group, presence=True)] if self.cluster else []

    def presence(self, identity: bytes, message: wire.Presence) -> list[Action]:
        """A sender asks who is in a group here."""
        members = sorted(self.groups.get(message.group, ()))
        return [Answer(identity, wire.Members(message.ref, self.edge_id, {"ids": members}))]

    def query(self, identity: bytes, message: wire.PresenceQuery) -> list[Action]:
        """A sender asks for the counts of a group here, or a page of its users: no connection id moves."""
        users = self.users.get(message.group) or UserCounts()
        if message.what == "count":
            answer: dict = {"size": len(self.groups.get(message.group, ())), "users": len(users)}
            if message.limit == 1:  # several edges (static mode): the sender merges the keys
                answer["keys"] = sorted(users.users)
        elif message.what == "users":
            answer = users.page(max(1, min(message.limit, 10000)), message.after or None)
        else:
            answer = {"error": f"unknown presence query {message.what!r}"}
        return [Answer(identity, wire.Members(message.ref, self.edge_id, answer))]
