"""Group history: the last messages of each group that keeps one, with their positions.

Pure, like the core: no I/O, the clock injected. The core records every
message sent to a group that matches a ``WS_GROUP_HISTORY`` pattern and,
when a client that came back presents the last position it saw, replays what
followed it (docs/protocol.rst, "Positions and recovery").

A position is ``(epoch, offset)``: the offset grows by one per message of the
group; the epoch names the log that backs the offsets, and changes whenever
that log is lost: each edge start draws a random one, and a group's log
forgotten after ``ttl`` of silence is made anew under a new epoch. An offset
is only comparable with another of the same epoch.

This module also reads what a client presents (:func:`parse_positions`) and
writes the envelope positions travel in on a WebSocket (:meth:`Position.header`).
"""

from __future__ import annotations

import collections
import fnmatch
import json
import secrets
import time
import typing
from urllib.parse import parse_qs

#: Most groups one client may present positions for.
MAX_POSITIONS = 100
#: Most group names whose bound (or its absence) is remembered, to spare a pattern match per message.
_BOUND_CACHE_LIMIT = 100_000

#: The query parameters of docs/protocol.rst: ``dws=1`` asks for positions,
#: ``dws_since`` presents the last ones seen.
ENVELOPE_PARAM = "dws"
SINCE_PARAM = "dws_since"
ENVELOPE_VERSION = "1"


class BadPositions(ValueError):
    """What a client presented is not valid per docs/protocol.rst (the handshake gets a 400)."""


class HistoryBound:
    """How much of one group's history is kept: ``size`` messages, each for ``ttl`` seconds."""

    __slots__ = ("size", "ttl")

    def __init__(self, size: int, ttl: float):
        self.size, self.ttl = size, ttl

    def __repr__(self) -> str:
        return f"HistoryBound(size={self.size}, ttl={self.ttl})"


def parse_settings(value: typing.Mapping | None) -> list[tuple[str, HistoryBound]]:
    """``WS_GROUP_HISTORY`` as (pattern, bound) pairs, in order; ValueError says what is wrong."""
    if not value:
        return []
    if not isinstance(value, typing.Mapping):
        raise ValueError(f"WS_GROUP_HISTORY maps group-name patterns to bounds, not {type(value).__name__}")
    bounds = []
    for pattern, bound in value.items():
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"WS_GROUP_HISTORY: a pattern is a non-empty str, not {pattern!r}")
        if not isinstance(bound, typing.Mapping) or set(bound) - {"size", "ttl"} or "size" not in bound:
            raise ValueError(f'WS_GROUP_HISTORY[{pattern!r}] must be {{"size": N, "ttl": seconds}}, not {bound!r}')
        size, ttl = bound["size"], bound.get("ttl", 300)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"WS_GROUP_HISTORY[{pattern!r}]['size'] must be a positive int, not {size!r}")
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0:
            raise ValueError(f"WS_GROUP_HISTORY[{pattern!r}]['ttl'] must be positive seconds, not {ttl!r}")
        bounds.append((pattern, HistoryBound(size, float(ttl))))
    return bounds


class Position:
    """Where one message stands in its group's history; shared by every client the message reaches.

    ``resync``: not a message but the signal that a client's gap could not be
    filled; ``offset`` is then the group's current one, from which the client
    can recover next time.
    """

    __slots__ = ("_header", "epoch", "group", "offset", "resync")

    def __init__(self, group: str, epoch: str, offset: int, resync: bool = False):
        self.group, self.epoch, self.offset, self.resync = group, epoch, offset, resync
        self._header: bytes | None = None

    def header(self) -> bytes:
        """The envelope's header line for this position (docs/protocol.rst), encoded once."""
        header = self._header
        if header is None:
            fields = ({"resync": self.group, "e": self.epoch, "o": self.offset} if self.resync
                      else {"g": self.group, "e": self.epoch, "o": self.offset})
            header = self._header = json.dumps(fields, separators=(",", ":")).encode() + b"\n"
        return header

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Position) and (self.group, self.epoch, self.offset, self.resync)
                == (other.group, other.epoch, other.offset, other.resync))

    def __repr__(self) -> str:
        kind = "resync " if self.resync else ""
        return f"<Position {kind}{self.group} {self.epoch}:{self.offset}>"


#: What frames a client that asked for positions receives for a message without one: an empty header line.
NO_POSITION_HEADER = b"\n"


def envelope(position: Position | None, payload: bytes) -> bytes:
    """The payload as a client that asked for positions receives it: a header line, then the message."""
    return (position.header() if position is not None else NO_POSITION_HEADER) + payload


class Entry(typing.NamedTuple):
    offset: int
    time: float
    binary: bool
    payload: bytes


class GroupLog:
    """One group's retained messages: contiguous offsets, oldest first."""

    __slots__ = ("bound", "entries", "epoch", "last", "last_time", "size_bytes")

    def __init__(self, epoch: str, bound: HistoryBound, now: float):
        self.epoch = epoch
        self.bound = bound
        #: Offset of the newest message (0: none yet); kept when the entries expire.
        self.last = 0
        self.last_time = now
        self.entries: collections.deque[Entry] = collections.deque()
        #: Payload bytes held, for the stats.
        self.size_bytes = 0

    def append(self, now: float, binary: bool, payload: bytes) -> int:
        self.last += 1
        self.last_time = now
        entries = self.entries
        entries.append(Entry(self.last, now, binary, payload))
        self.size_bytes += len(payload)
        if len(entries) > self.bound.size:
            self.size_bytes -= len(entries.popleft().payload)
        return self.last

    def expire(self, now: float) -> None:
        entries, horizon = self.entries, now - self.bound.ttl
        while entries and entries[0].time <= horizon:
            self.size_bytes -= len(entries.popleft().payload)

    def after(self, offset: int) -> list[Entry] | None:
        """Every message after ``offset``, or None if some of them are no longer kept."""
        if offset == self.last:
            return []
        if offset < 0 or offset > self.last:
            return None
        entries = self.entries
        if not entries or entries[0].offset > offset + 1:
            return None
        return list(entries)[offset + 1 - entries[0].offset:]


class History:
    """Every group log of one edge, under the patterns of ``WS_GROUP_HISTORY``.

    ``epoch``: this edge's random start id (each log's epoch derives from it).
    """

    def __init__(self, bounds: list[tuple[str, HistoryBound]], *, epoch: str | None = None,
                 clock: typing.Callable[[], float] = time.monotonic):
        self.bounds = bounds
        self.epoch = epoch or secrets.token_hex(6)
        self.clock = clock
        self.logs: dict[str, GroupLog] = {}
        self._bound_of: dict[str, HistoryBound | None] = {}
        self._serial = 0

    def __bool__(self) -> bool:
        return bool(self.bounds)

    def bound_for(self, group: str) -> HistoryBound | None:
        """The bound of the first pattern ``group`` matches, or None: no history."""
        cache = self._bound_of
        try:
            return cache[group]
        except KeyError:
            pass
        found = None
        for pattern, bound in self.bounds:
            if fnmatch.fnmatchcase(group, pattern):
                found = bound
                break
        if len(cache) >= _BOUND_CACHE_LIMIT:
            cache.clear()
        cache[group] = found
        return found

    def record(self, group: str, binary: bool, payload: bytes) -> Position | None:
        """Keep a message sent to ``group``; its position, or None if the group keeps no history."""
        log = self.logs.get(group)
        now = self.clock()
        if log is None:
            bound = self.bound_for(group)
            if bound is None:
                return None
            log = self.logs[group] = self._new_log(bound, now)
        else:
            log.expire(now)
        return Position(group, log.epoch, log.append(now, binary, payload))

    def _new_log(self, bound: HistoryBound, now: float) -> GroupLog:
        # A log made anew (after a sweep) must not reuse the offsets of the one
        # forgotten: its epoch differs, so an old position is never taken for a new one.
        self._serial += 1
        return GroupLog(f"{self.epoch}-{self._serial:x}", bound, now)

    def replay(self, group: str, epoch: str, offset: int) -> tuple[list[Entry] | None, Position]:
        """What follows ``(epoch, offset)`` in ``group`` (None: the gap is not covered), and where the group stands.

        A group with history that has had no message yet (or whose log was
        forgotten) stands at a fresh log: a client presenting a position in it
        is told to resync unless its position is that fresh log's own.
        """
        log = self.logs.get(group)
        now = self.clock()
        if log is None:
            bound = self.bound_for(group)
            if bound is None:
                return None, Position(group, "", 0, resync=True)
            log = self.logs[group] = self._new_log(bound, now)
        log.expire(now)
        here = Position(group, log.epoch, log.last, resync=True)
        if epoch != log.epoch:
            return None, here
        return log.after(offset), here

    def sweep(self, keep: typing.Callable[[str], bool]) -> int:
        """Forget the logs whose messages have all expired and whose group ``keep`` says has no use; return how many."""
        now = self.clock()
        gone = []
        for group, log in self.logs.items():
            log.expire(now)
            if not log.entries and now - log.last_time >= log.bound.ttl and not keep(group):
                gone.append(group)
        for group in gone:
            del self.logs[group]
        return len(gone)

    def figures(self) -> dict:
        """For the stats endpoint: logs, messages and payload bytes kept."""
        now = self.clock()
        for log in self.logs.values():
            log.expire(now)
        return {
            "epoch": self.epoch,
            "groups": len(self.logs),
            "messages": sum(len(log.entries) for log in self.logs.values()),
            "bytes": sum(log.size_bytes for log in self.logs.values()),
        }


class Positions:
    """What a client asked for at its handshake: positions in its frames, and the last ones it saw."""

    __slots__ = ("positions",)

    def __init__(self, positions: dict[str, tuple[str, int]]):
        #: group -> (epoch, offset): used once, by the handler's first join of that group.
        self.positions = positions


def without_positions(query: str) -> str:
    """``query`` without the parameters of docs/protocol.rst: the handler's ``request.GET`` is the application's own."""
    if ENVELOPE_PARAM not in query:
        return query
    return "&".join(part for part in query.split("&")
                    if part.partition("=")[0] not in (ENVELOPE_PARAM, SINCE_PARAM))


def parse_positions(query: str) -> Positions | None:
    """The client's ``dws`` and ``dws_since`` query parameters; None when it asked for nothing.

    Raises :class:`BadPositions` with a message fit for a 400 response.
    """
    if ENVELOPE_PARAM not in query:  # the common case costs a substring test
        return None
    params = parse_qs(query, keep_blank_values=True)
    versions = params.get(ENVELOPE_PARAM)
    since = params.get(SINCE_PARAM)
    if versions is None:
        if since is not None:
            raise BadPositions(f"{SINCE_PARAM} needs {ENVELOPE_PARAM}={ENVELOPE_VERSION}")
        return None
    if versions != [ENVELOPE_VERSION]:
        raise BadPositions(f"unsupported {ENVELOPE_PARAM}={versions[-1]!r}: this server speaks "
                          f"{ENVELOPE_PARAM}={ENVELOPE_VERSION}")
    if since is None:
        return Positions({})
    if len(since) != 1:
        raise BadPositions(f"{SINCE_PARAM} given {len(since)} times")
    try:
        value = json.loads(since[0])
    except ValueError:
        raise BadPositions(f"{SINCE_PARAM} is not JSON") from None
    if not isinstance(value, dict):
        raise BadPositions(f'{SINCE_PARAM} must be a JSON object: {{"group": ["epoch", offset], ...}}')
    if len(value) > MAX_POSITIONS:
        raise BadPositions(f"{SINCE_PARAM} names {len(value)} groups; at most {MAX_POSITIONS}")
    positions = {}
    for group, position in value.items():
        if (not isinstance(position, list) or len(position) != 2 or not isinstance(position[0], str)
                or isinstance(position[1], bool) or not isinstance(position[1], int) or position[1] < 0):
            raise BadPositions(f'{SINCE_PARAM}[{group!r}] must be ["epoch", offset], an offset >= 0')
        positions[group] = (position[0], position[1])
    return Positions(positions)
