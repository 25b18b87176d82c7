"""Admission: the rate limits of docs/security.rst, where the core applies them.

Two places, one budget each: a handshake is counted against its client
address (new connections per second, connections at once), and each message
of an open connection against that connection's own budget (messages and
bytes per second). The buckets themselves are :mod:`django_ws.edge.limits`;
this is what the core does with their answers: count a refusal by limit,
word the reason, and release an address when its connection ends. Kept apart
so the core's handshake and receive paths read as one check each, and the
budget made on a connection's first message stays the only per-frame cost.

A refusal of a request that carries ``X-Forwarded-For`` or ``X-Real-IP``
while WS_TRUST_PROXY_HEADERS is off is most likely not one client over its
limit but everyone behind a proxy sharing the proxy's address: it is
counted (``proxy_limited``), and logged as a warning that names the setting,
once per address and process (a refusal is a hot path under attack: the
logs must not grow with it, nor the record of who was told).
"""

from __future__ import annotations

import logging
import typing

from ..limits import AddressLimits, LimitSettings, MessageLimits
from .actions import Refuse

if typing.TYPE_CHECKING:  # pragma: no cover
    from .records import Connection, Stats

logger = logging.getLogger("django_ws.edge")

#: The headers a proxy adds to name the client (lowercase).
PROXY_HEADERS = frozenset({"x-forwarded-for", "x-real-ip"})
#: Addresses warned about, at most: past it, the counter still counts, the log says no more.
PROXY_WARNINGS_KEPT = 1024


class Admission:
    """Which handshakes and messages the rate limits let through; all off by default (the edge passes the settings)."""

    __slots__ = ("address_limits", "clock", "per_connection", "proxy_warned", "settings", "stats")

    def __init__(self, settings: LimitSettings, stats: Stats, clock: typing.Callable[[], float]):
        self.settings = settings
        self.address_limits = AddressLimits(settings)
        #: Whether connections have a message budget at all: asked once, not per frame.
        self.per_connection = settings.per_connection
        self.stats = stats
        self.clock = clock
        #: The addresses whose proxy headers a warning named already (see PROXY_WARNINGS_KEPT).
        self.proxy_warned: set[str] = set()

    def refusal(self, address: str | None, request: dict | None = None) -> Refuse | None:
        """The 429 for a new connection from ``address``, or None: admitted, it counts there until released.

        ``request`` is the handshake as the Connect message carries it (its
        ``headers``, as (name, value) pairs), looked at only on a refusal.
        """
        if address is None or not self.address_limits.enabled:
            return None
        refused = self.address_limits.admit(address, self.clock())
        if refused is None:
            return None
        self.stats.rate_limited[refused.limit] += 1
        if not self.settings.trust_proxy_headers and request and _names_a_client(request):
            self._proxy_limited(address, refused.limit)
        reason = ("too many connections from this address" if refused.limit == "concurrent"
                  else "too many new connections from this address")
        return Refuse(None, 429, reason, {"Retry-After": str(refused.retry_after)})

    def _proxy_limited(self, address: str, limit: str) -> None:
        self.stats.proxy_limited += 1
        warned = self.proxy_warned
        if address in warned or len(warned) >= PROXY_WARNINGS_KEPT:
            return
        warned.add(address)
        setting = "WS_CONNECTIONS_PER_ADDRESS" if limit == "concurrent" else "WS_NEW_CONNECTIONS_PER_ADDRESS"
        logger.warning(
            "%s refused a handshake from %s with 429, and its request carries X-Forwarded-For or X-Real-IP: "
            "%s is likely a proxy, and while WS_TRUST_PROXY_HEADERS is off every client behind it counts as "
            "that one address. If it is your own proxy, set WS_TRUST_PROXY_HEADERS = True (and let only the "
            "proxy reach the edge); if not (a NAT, someone else's proxy), raise %s or set it to 0. Said once "
            "per address; django_ws_proxy_limited_total counts every such 429 (docs/security.rst, "
            "\"Rate limits\")", setting, address, address, setting)

    def admitted(self, conn: Connection, address: str | None) -> None:
        """``conn`` is the connection admitted from ``address``: release() frees its place there."""
        if address is not None and self.address_limits.enabled:
            conn.address = address  # released by release(), which every admitted connection reaches

    def release(self, conn: Connection) -> None:
        """``conn`` ended: its address may admit another."""
        if conn.address is not None:
            self.address_limits.release(conn.address)
            conn.address = None

    def over_budget(self, conn: Connection, size: int) -> str | None:
        """Why a message of ``size`` bytes breaks ``conn``'s budget (it is then closed with 1008), or None."""
        now = self.clock()
        if conn.limits is None:
            conn.limits = MessageLimits(self.settings, now)
        broken = conn.limits.allow(size, now)
        if broken is None:
            return None
        self.stats.rate_limited[broken] += 1
        reason = "message rate limit exceeded" if broken == "messages" else "byte rate limit exceeded"
        logger.info("connection %s: %s; closing it with 1008", conn.id, reason)
        return reason


def _names_a_client(request: dict) -> bool:
    """Whether the handshake ``request`` carries a proxy header that names the client."""
    return any(name.lower() in PROXY_HEADERS for name, _ in request.get("headers", ()))
