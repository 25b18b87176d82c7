"""Keepalive for every open connection of an edge, from one timer.

A task per connection that sleeps, pings, sleeps again and checks for the
pong costs a task, a coroutine, a future and a timer handle: about a
kilobyte per idle connection. Here one small record per connection sits in a
bucket of ``resolution`` seconds, and one timer serves the buckets: the
first ping goes ``interval`` after the upgrade, then one every ``interval``;
a connection that has not answered within ``timeout`` is told it expired.
A ping or a check may come up to ``resolution`` later than its due time.
"""

from __future__ import annotations

import asyncio
import logging
import math
import typing

logger = logging.getLogger("django_ws.edge")


class Pingable(typing.Protocol):
    """What a transport's connection offers the keepalive."""

    #: Set to True by the transport when a pong arrives.
    pong_received: bool

    def ping(self) -> bool:
        """Send a ping; False if the connection is ending (no more pings then)."""

    def keepalive_expired(self) -> None:
        """No pong came within the timeout: close the connection."""


class Keepalive:
    """Pings the open connections of one edge every ``interval`` seconds; ``timeout`` 0 never expires them."""

    def __init__(self, interval: float, timeout: float):
        self.interval, self.timeout = interval, timeout
        self.resolution = min(1.0, interval / 4, (timeout or interval) / 4) if interval > 0 else 1.0
        self._buckets: dict[int, set[Watched]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_bucket: int | None = None

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def watch(self, connection: Pingable) -> Watched | None:
        """Start pinging ``connection``; the record's ``cancel()`` stops it. None when keepalive is off."""
        if not self.enabled:
            return None
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        record = Watched(self, connection)
        self._put(record, self._loop.time() + self.interval)
        return record

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._buckets.values())

    def _put(self, record: Watched, when: float) -> None:
        key = record.bucket = math.ceil(when / self.resolution)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = set()
        bucket.add(record)
        if self._timer_bucket is None or key < self._timer_bucket:
            self._arm(key)

    def _remove(self, record: Watched) -> None:
        bucket = self._buckets.get(record.bucket)
        if bucket is not None:
            bucket.discard(record)
            if not bucket:
                del self._buckets[record.bucket]

    def _arm(self, key: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_bucket = key
        self._timer = self._loop.call_at(key * self.resolution, self._run)

    def _run(self) -> None:
        self._timer = self._timer_bucket = None
        now = self._loop.time()
        for key in sorted(k for k in self._buckets if k * self.resolution <= now):
            for record in self._buckets.pop(key, ()):
                if record.connection is not None:
                    try:
                        self._due(record, now)
                    except Exception:  # one connection's failure must not unschedule the others
                        logger.exception("keepalive failed for a connection; closing it")
                        connection, record.connection = record.connection, None
                        connection.keepalive_expired()
        if self._buckets:
            first = min(self._buckets)
            if self._timer_bucket is None or first < self._timer_bucket:
                self._arm(first)

    def _due(self, record: Watched, now: float) -> None:
        connection = record.connection
        if record.ping_time is not None:  # a ping is out: was it answered in time?
            if self.timeout > 0 and not connection.pong_received:
                record.connection = None
                connection.keepalive_expired()
                return
            next_ping, record.ping_time = record.ping_time + self.interval, None
            if next_ping > now:
                self._put(record, next_ping)
                return
        connection.pong_received = False
        record.ping_time = now
        if connection.ping():
            self._put(record, now + (self.timeout or self.interval))
        else:
            record.connection = None


class Watched:
    """One connection that Keepalive pings; the transport calls ``cancel()`` when it ends."""

    __slots__ = ("bucket", "connection", "keepalive", "ping_time")

    def __init__(self, keepalive: Keepalive, connection: Pingable):
        self.keepalive, self.connection = keepalive, connection
        self.bucket = 0
        self.ping_time: float | None = None  # when the ping now awaiting its pong was sent

    def cancel(self) -> None:
        if self.connection is not None:
            self.connection = None
            self.keepalive._remove(self)
