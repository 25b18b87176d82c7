"""Presence of users in a group, pure: counts by user, the info they carry, and the coalescing of changes.

A user with three tabs is three connections and one entry. The edge keeps
these per group in static mode, Redis keeps them in cluster mode (with the
same page order: user keys sorted as strings), and the test communicator
keeps them in memory; all three use this module, which knows nothing of
sockets, Redis or Django.
"""

from __future__ import annotations

import json
import typing

__all__ = ["Coalescer", "Info", "UserCounts", "check_info", "merge_pages"]

#: A user's info: a JSON object.
Info = dict[str, typing.Any]
#: A page of group_presence: {"users": {key: {"info": ..., "connections": n}}, "next": key or None}.
Page = dict[str, typing.Any]


def check_info(info: typing.Any, limit: int) -> Info:
    """``info`` if it is a JSON object of at most ``limit`` bytes as JSON, else ValueError saying why.

    Checked in the handler's call: a too large or unserialisable info fails
    there, not on the edge or in Redis.
    """
    if not isinstance(info, dict):
        raise ValueError(f"presence info is a dict (a JSON object), not {type(info).__name__}")
    try:
        size = len(json.dumps(info, separators=(",", ":")).encode("utf-8"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"presence info must be JSON-serialisable: {exc}") from None
    if size > limit:
        raise ValueError(f"presence info is {size} bytes as JSON; WS_PRESENCE_INFO_MAX allows {limit}")
    return info


def check_page(limit: int, after: str | None) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10000:
        raise ValueError(f"limit is an int from 1 to 10000, not {limit!r}")
    if after is not None and not isinstance(after, str):
        raise ValueError(f"after is the 'next' of a previous page (a str) or None, not {after!r}")


class UserCounts:
    """One group's users here: user key -> [connections, info], and which user each connection is.

    ``add`` and ``remove`` return whether the user appeared or disappeared:
    a user joins with their first connection and leaves with their last.
    """

    __slots__ = ("by_connection", "users")

    def __init__(self) -> None:
        self.users: dict[str, list[typing.Any]] = {}
        self.by_connection: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.users)

    def add(self, conn_id: str, user: str, info: Info) -> bool:
        """``conn_id`` is ``user``'s, with ``info`` (new info replaces the old); True if the user is new here."""
        previous = self.by_connection.get(conn_id)
        if previous is not None and previous != user:
            self.remove(conn_id)
        entry = self.users.get(user)
        if entry is None:
            self.users[user] = [1, info]
            self.by_connection[conn_id] = user
            return True
        if previous != user:
            entry[0] += 1
            self.by_connection[conn_id] = user
        entry[1] = info
        return False

    def remove(self, conn_id: str) -> str | None:
        """``conn_id`` is gone: the user it was, if that was their last connection here."""
        user = self.by_connection.pop(conn_id, None)
        if user is None:
            return None
        entry = self.users[user]
        entry[0] -= 1
        if entry[0] > 0:
            return None
        del self.users[user]
        return user

    def page(self, limit: int, after: str | None = None) -> Page:
        """The first ``limit`` users after ``after``, in key order: ``{"users": {...}, "next": ...}``."""
        keys = sorted(key for key in self.users if after is None or key > after)
        chosen = keys[:limit]
        users = {key: {"info": self.users[key][1], "connections": self.users[key][0]} for key in chosen}
        return {"users": users, "next": chosen[-1] if len(keys) > limit else None}


def merge_pages(pages: typing.Iterable[Page], limit: int) -> Page:
    """One page from the pages of several edges (each its first ``limit`` users after the same cursor).

    A user on several edges sums their connections. Exact: a key in the
    merged page is below the last key of any edge that returned a full page,
    so that edge returned it too if it has it.
    """
    merged: dict[str, dict[str, typing.Any]] = {}
    more = False
    for page in pages:
        more = more or page.get("next") is not None
        for key, entry in page.get("users", {}).items():
            have = merged.get(key)
            if have is None:
                merged[key] = {"info": entry["info"], "connections": entry["connections"]}
            else:
                have["connections"] += entry["connections"]
    keys = sorted(merged)
    chosen = keys[:limit]
    return {"users": {key: merged[key] for key in chosen},
            "next": chosen[-1] if (len(keys) > limit or more) and chosen else None}


class Coalescer:
    """User joins and leaves per group, gathered over a window and told as one change per group.

    What a watcher hears at the end of the window is the net change: a user
    who came and went within it is not told at all, one who left and came
    back is told as joined (with their newest info).
    """

    __slots__ = ("pending",)

    def __init__(self) -> None:
        #: group -> user -> (was present when the window opened, info now or None if gone).
        self.pending: dict[str, dict[str, tuple[bool, Info | None]]] = {}

    def __bool__(self) -> bool:
        return bool(self.pending)

    def note(self, group: str, joined: dict[str, Info], left: typing.Iterable[str]) -> bool:
        """Record a change; True if it opened the window (the caller schedules the drain)."""
        opened = not self.pending
        changes = self.pending.setdefault(group, {})
        for user in left:
            was = changes[user][0] if user in changes else True
            changes[user] = (was, None)
        for user, info in joined.items():
            was = changes[user][0] if user in changes else False
            changes[user] = (was, info)
        return opened

    def drain(self) -> dict[str, tuple[dict[str, Info], list[str]]]:
        """group -> (joined, left): the net changes of the window, which closes."""
        out = {}
        for group, changes in self.pending.items():
            joined = {user: info for user, (was, info) in changes.items() if info is not None}
            left = sorted(user for user, (was, info) in changes.items() if info is None and was)
            if joined or left:
                out[group] = (joined, left)
        self.pending = {}
        return out
