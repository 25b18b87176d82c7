"""Rate limits of the edge: per client address, and per connection.

Pure bookkeeping: no sockets, no event loop, no clock of its own (every
call takes ``now``), so the edge's adapters call it and the tests drive it
event by event. Nothing here imports Tornado or ZeroMQ.

* :class:`AddressLimits` decides a handshake: a token bucket of new
  connections per address (``new_per_window`` at once, refilled evenly over
  ``window`` seconds) and a count of open connections per address. A refusal
  says how many seconds to wait (``Retry-After``).
* :class:`MessageLimits` is one connection's pair of token buckets, for
  messages and for bytes; a message that finds either empty is one too many.
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["AddressLimits", "LimitSettings", "MessageLimits", "Refusal", "TokenBucket"]


@dataclasses.dataclass(frozen=True)
class LimitSettings:
    """The limits in force; 0 disables the one concerned."""

    new_per_window: int = 0
    window: float = 10.0
    concurrent: int = 0
    messages_per_window: int = 0
    bytes_per_window: int = 0
    message_window: float = 10.0
    #: WS_TRUST_PROXY_HEADERS: the address is the proxy's view of the client.
    #: Off, a refused request that names a client in its proxy headers means
    #: that the limits count a whole proxy (or NAT) as one client.
    trust_proxy_headers: bool = False

    def __post_init__(self) -> None:
        if self.new_per_window and not self.window > 0:
            raise ValueError(f"WS_NEW_CONNECTIONS_WINDOW must be more than 0 seconds, not {self.window!r}")
        if self.per_connection and not self.message_window > 0:
            raise ValueError(f"WS_MESSAGE_WINDOW must be more than 0 seconds, not {self.message_window!r}")

    @property
    def per_connection(self) -> bool:
        return bool(self.messages_per_window or self.bytes_per_window)


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` per second; starts full."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, capacity: float, rate: float, now: float):
        self.capacity, self.rate = float(capacity), float(rate)
        self.tokens, self.stamp = self.capacity, now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, amount: float, now: float) -> bool:
        """Take ``amount`` tokens if there are that many; False (taking none) if not.

        A single ``amount`` larger than the whole capacity is allowed from a
        full bucket, leaving it in debt: a limit on bytes must not forbid one
        message larger than itself, only a stream of them.
        """
        self._refill(now)
        if self.tokens >= amount or self.tokens >= self.capacity:
            self.tokens -= amount
            return True
        return False

    def wait(self, amount: float, now: float) -> float:
        """Seconds until ``take(amount)`` would succeed."""
        self._refill(now)
        missing = min(amount, self.capacity) - self.tokens
        return max(0.0, missing / self.rate) if self.rate else math.inf

    def full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.capacity


@dataclasses.dataclass(frozen=True)
class Refusal:
    """Why a handshake is refused (``limit`` is "new_connections" or "concurrent") and when to retry."""

    limit: str
    retry_after: int


class _Address:
    __slots__ = ("bucket", "open")

    def __init__(self, bucket: TokenBucket | None):
        self.bucket = bucket
        self.open = 0


class AddressLimits:
    """Handshakes per client address: ``admit`` before, ``release`` after each admitted one ends.

    One record per address with open connections or an unfilled bucket;
    ``admit`` forgets the others every ``window`` seconds, so a scan of many
    addresses leaves nothing behind.
    """

    def __init__(self, settings: LimitSettings):
        self.settings = settings
        self.addresses: dict[str, _Address] = {}
        self._next_prune = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.settings.new_per_window or self.settings.concurrent)

    def admit(self, address: str, now: float) -> Refusal | None:
        """Count a new connection from ``address``; a Refusal if it is over a limit."""
        settings = self.settings
        if now >= self._next_prune:
            self.prune(now)
        record = self.addresses.get(address)
        if record is None:
            bucket = None
            if settings.new_per_window:
                bucket = TokenBucket(settings.new_per_window, settings.new_per_window / settings.window, now)
            record = self.addresses[address] = _Address(bucket)
        if settings.concurrent and record.open >= settings.concurrent:
            # Nothing says when one of them will close: suggest a window.
            return Refusal("concurrent", max(1, math.ceil(settings.window)))
        if record.bucket is not None and not record.bucket.take(1, now):
            return Refusal("new_connections", max(1, math.ceil(record.bucket.wait(1, now))))
        record.open += 1
        return None

    def release(self, address: str) -> None:
        """An admitted connection from ``address`` has ended (whether or not it opened)."""
        record = self.addresses.get(address)
        if record is not None and record.open > 0:
            record.open -= 1

    def prune(self, now: float) -> None:
        """Forget addresses with nothing open and a full bucket: they are as if never seen."""
        self._next_prune = now + self.settings.window
        idle = [address for address, record in self.addresses.items()
                if not record.open and (record.bucket is None or record.bucket.full(now))]
        for address in idle:
            del self.addresses[address]

    def open_connections(self, address: str) -> int:
        record = self.addresses.get(address)
        return record.open if record is not None else 0


class MessageLimits:
    """One connection's budget of messages and bytes; ``allow`` says whether a message fits.

    Made by :meth:`for_connection`, which returns None when neither limit is
    set, so an unlimited connection carries nothing.
    """

    __slots__ = ("bytes", "messages")

    def __init__(self, settings: LimitSettings, now: float):
        window = settings.message_window
        self.messages = (TokenBucket(settings.messages_per_window, settings.messages_per_window / window, now)
                         if settings.messages_per_window else None)
        self.bytes = (TokenBucket(settings.bytes_per_window, settings.bytes_per_window / window, now)
                      if settings.bytes_per_window else None)

    @classmethod
    def for_connection(cls, settings: LimitSettings, now: float) -> MessageLimits | None:
        return cls(settings, now) if settings.per_connection else None

    def allow(self, size: int, now: float) -> str | None:
        """None if a message of ``size`` bytes is within the limits; else which one it breaks."""
        if self.messages is not None and not self.messages.take(1, now):
            return "messages"
        if self.bytes is not None and not self.bytes.take(size, now):
            return "bytes"
        return None
