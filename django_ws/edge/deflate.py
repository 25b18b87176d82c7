"""permessage-deflate (RFC 7692) for the server side: the options, and the negotiation at the handshake.

Apart from :mod:`django_ws.edge.protocol` because it is a step of its own:
the handshake agrees on compression once per connection (an offer in
``Sec-WebSocket-Extensions``, the options of ``WS_COMPRESSION``), and hands
the agreement, a :class:`DeflateParams`, to
:class:`~django_ws.edge.protocol.ServerProtocol`, which compresses and
inflates each message with it. Like the protocol it imports only the
standard library.

- :func:`deflate_settings` checks the options at start-up
  (:data:`DEFLATE_DEFAULTS` for ``True``);
- :func:`negotiate_deflate` answers a client's offers;
- :func:`compress` and :func:`inflate` do one message (or frame) for the
  protocol, which keeps the zlib objects between messages only with
  context takeover.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["DEFLATE_DEFAULTS", "DEFLATE_TAIL", "DeflateParams", "compress", "deflate_settings", "inflate",
           "negotiate_deflate"]

#: RFC 7692 7.2.1: a message compressed with a sync flush ends with this;
#: the sender strips it, the receiver appends it back before inflating.
DEFLATE_TAIL = b"\x00\x00\xff\xff"

#: The options of permessage-deflate that ``WS_COMPRESSION = True`` means; a
#: dict there overrides some of them. The window sizes and memLevel are
#: below zlib's 15 and 8 because with context takeover each connection keeps
#: its compressor and decompressor between messages: about 39 KB + 11 KB
#: here, against 268 KB + 40 KB with zlib's defaults (see docs/websocket.rst).
DEFLATE_DEFAULTS: dict = {
    "server_max_window_bits": 12,  # 9-15: the window of the server's compressor
    "client_max_window_bits": 12,  # 8-15: asked of clients that offer to limit theirs
    "server_no_context_takeover": False,  # True: compress each message on its own
    "client_no_context_takeover": False,  # True: ask clients to do the same
    "compress_level": 6,  # zlib's level, 0-9
    "mem_level": 5,  # zlib's memLevel, 1-9: the compressor's memory besides its window
    "min_size": 64,  # messages shorter than this (bytes) are sent uncompressed
}

_RANGES = {
    "server_max_window_bits": (9, 15),  # zlib's raw deflate refuses 8
    "client_max_window_bits": (8, 15),
    "compress_level": (0, 9),
    "mem_level": (1, 9),
}


def deflate_settings(options: Mapping | bool | None) -> dict | None:
    """The full permessage-deflate options that ``options`` means, checked; None for "off".

    ``False``/``None`` is off, ``True`` is :data:`DEFLATE_DEFAULTS`, a mapping
    overrides some of the defaults. Raises ``ValueError`` naming what is wrong.
    """
    if options is None or options is False:
        return None
    if options is True:
        return dict(DEFLATE_DEFAULTS)
    if not isinstance(options, Mapping):
        raise ValueError(f"permessage-deflate options must be True, False or a dict, not {options!r}")
    unknown = sorted(set(options) - set(DEFLATE_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown permessage-deflate option(s) {unknown}; the options are {sorted(DEFLATE_DEFAULTS)}")
    settings = dict(DEFLATE_DEFAULTS, **options)
    for name, (low, high) in _RANGES.items():
        value = settings[name]
        if type(value) is not int or not low <= value <= high:
            raise ValueError(f"permessage-deflate option {name} must be an integer from {low} to {high}, not {value!r}")
    for name in ("server_no_context_takeover", "client_no_context_takeover"):
        if not isinstance(settings[name], bool):
            raise ValueError(f"permessage-deflate option {name} must be True or False, not {settings[name]!r}")
    if type(settings["min_size"]) is not int or settings["min_size"] < 0:
        raise ValueError(f"permessage-deflate option min_size must be an integer >= 0, not {settings['min_size']!r}")
    return settings


@dataclass(frozen=True, slots=True)
class DeflateParams:
    """What a permessage-deflate negotiation agreed on, for :class:`ServerProtocol`.

    ``client_max_window_bits`` is the window the client's messages may use
    (15 when the client did not offer to limit it). Connections that agreed
    on the same thing share one instance.
    """

    server_max_window_bits: int = 12
    client_max_window_bits: int = 15
    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    compress_level: int = 6
    mem_level: int = 5
    min_size: int = 64


_WINDOW_BITS = re.compile(r"[1-9][0-9]?\Z")


def _parse_offer(offer: str) -> tuple[str, dict[str, str | None]] | None:
    """An offer's extension name and parameters, or None if its syntax is broken or a parameter repeats."""
    name, *parts = (part.strip() for part in offer.split(";"))
    params: dict[str, str | None] = {}
    for part in parts:
        key, eq, value = (item.strip() for item in part.partition("="))
        if not key or key in params or (eq and not value):
            return None
        if value.startswith('"'):
            if len(value) < 2 or not value.endswith('"'):
                return None
            value = value[1:-1]
        params[key] = value if eq else None
    return name, params


def _window_bits(value: str | None, low: int) -> int | None:
    """A window-bits parameter's value as an int, or None if it is not a number from ``low`` to 15."""
    if value is None or not _WINDOW_BITS.match(value) or not low <= int(value) <= 15:
        return None
    return int(value)


def _accept_offer(params: dict[str, str | None], settings: dict) -> tuple | None:
    """The agreed (server bits, client bits, client offered its bits, no takeovers) for one offer, or None."""
    server_bits = settings["server_max_window_bits"]
    client_bits = 15
    client_offered = False
    server_no_takeover = settings["server_no_context_takeover"]
    client_no_takeover = settings["client_no_context_takeover"]
    for key, value in params.items():
        if key == "server_no_context_takeover" and value is None:
            server_no_takeover = True
        elif key == "client_no_context_takeover" and value is None:
            client_no_takeover = True
        elif key == "server_max_window_bits":
            # 8 is valid on the wire, but zlib cannot compress with a window
            # that small (it would use 9, which the client could not inflate).
            offered = _window_bits(value, 9)
            if offered is None:
                return None
            server_bits = min(server_bits, offered)
        elif key == "client_max_window_bits":
            offered = 15 if value is None else _window_bits(value, 8)
            if offered is None:
                return None
            client_offered = True
            client_bits = min(offered, settings["client_max_window_bits"])
        else:
            return None  # an unknown parameter, or a value where none belongs: decline the offer
    return server_bits, client_bits, client_offered, server_no_takeover, client_no_takeover


@functools.lru_cache(maxsize=64)
def _agreement(server_bits: int, client_bits: int, client_offered: bool, server_no_takeover: bool,
               client_no_takeover: bool, compress_level: int, mem_level: int,
               min_size: int) -> tuple[str, DeflateParams]:
    """The response header and the (shared) parameters of one agreement."""
    response = ["permessage-deflate"]
    if server_no_takeover:
        response.append("server_no_context_takeover")
    if client_no_takeover:
        response.append("client_no_context_takeover")
    if server_bits < 15:
        response.append(f"server_max_window_bits={server_bits}")
    if client_offered and client_bits < 15:
        response.append(f"client_max_window_bits={client_bits}")
    params = DeflateParams(
        server_max_window_bits=server_bits,
        # zlib compresses with a 9-bit window when asked for 8: inflating
        # with 9 bits reads both.
        client_max_window_bits=max(client_bits, 9),
        server_no_context_takeover=server_no_takeover,
        client_no_context_takeover=client_no_takeover,
        compress_level=compress_level,
        mem_level=mem_level,
        min_size=min_size,
    )
    return "; ".join(response), params


def negotiate_deflate(offer_header: str, options: Mapping | bool | None) -> tuple[str, DeflateParams] | None:
    """Accept the first acceptable permessage-deflate offer of a ``Sec-WebSocket-Extensions`` header.

    Returns the ``Sec-WebSocket-Extensions`` value of the response and the
    agreed :class:`DeflateParams`, or None (no compression: the response has
    no such header) when ``options`` is off or no offer is acceptable.

    An offer is declined, and the next one tried, when it is malformed, has
    an unknown or repeated parameter, or a window size out of range (RFC 7692
    7.1). An accepted offer's ``server_no_context_takeover`` and window sizes
    are honoured; ``client_max_window_bits`` is asked for only from a client
    that offered it. ``options`` is as :func:`deflate_settings` takes it.
    """
    settings = deflate_settings(options)
    if settings is None or not offer_header:
        return None
    for offer in offer_header.split(","):
        parsed = _parse_offer(offer)
        if parsed is None or parsed[0] != "permessage-deflate":
            continue
        agreed = _accept_offer(parsed[1], settings)
        if agreed is not None:
            return _agreement(*agreed, settings["compress_level"], settings["mem_level"], settings["min_size"])
    return None


# ---------------------------------------------------------------------------
# Compression of messages (RFC 7692 7.2)


def compress(payload: bytes, params: DeflateParams, deflater: zlib._Compress | None
             ) -> tuple[bytes, zlib._Compress | None]:
    """One message compressed as ``params`` say, and the compressor to keep for the next (or None)."""
    if deflater is None:
        deflater = zlib.compressobj(params.compress_level, zlib.DEFLATED, -params.server_max_window_bits,
                                    params.mem_level)
    data = deflater.compress(payload) + deflater.flush(zlib.Z_SYNC_FLUSH)
    # Without context takeover the next message starts afresh, so the
    # compressor (tens of KB) is not kept on an idle connection.
    return data[:-4], (None if params.server_no_context_takeover else deflater)  # a sync flush ends with DEFLATE_TAIL


def inflate(data: bytes, fin: bool, room: int, params: DeflateParams, inflater: zlib._Decompress | None
            ) -> tuple[bytes, zlib._Decompress | None]:
    """One frame of a compressed message inflated, to at most ``room + 1`` bytes, and the decompressor to keep.

    A result over ``room`` bytes is over the limit: the caller fails the
    connection. Raises ``zlib.error`` for data that does not inflate.
    """
    if inflater is None:
        inflater = zlib.decompressobj(-params.client_max_window_bits)
    # max_length makes zlib stop one byte past the limit, however
    # much the input would inflate to (a zip bomb costs nothing).
    out = inflater.decompress(data, room + 1)
    if fin and len(out) <= room:
        out += inflater.decompress(DEFLATE_TAIL, room + 1 - len(out))
    if fin and (params.client_no_context_takeover or inflater.eof):
        inflater = None  # the next message starts afresh (eof: the client ended the stream)
    return out, inflater
