"""The handshake: a request's header block, its checks, the answer's key, and the permessage-deflate offer.

Any header block Tornado parses must get either a 4xx refusal or an
acceptance with a Sec-WebSocket-Accept; an accepted deflate offer must give
windows and levels zlib takes, and a response header naming what was agreed.
"""

from __future__ import annotations

import zlib

from tornado.httputil import HTTPHeaders, HTTPInputError

from django_ws.edge.deflate import DEFLATE_DEFAULTS, negotiate_deflate
from django_ws.edge.handshake import accept_key, invalid_handshake

_METHODS = ("GET", "POST", "get", "")
_OPTIONS = (True, {"server_no_context_takeover": True, "client_no_context_takeover": True},
            {"server_max_window_bits": 9, "client_max_window_bits": 8})


def test_one_input(data: bytes) -> None:
    if not data:
        return
    method = _METHODS[data[0] % len(_METHODS)]
    options = _OPTIONS[data[0] // len(_METHODS) % len(_OPTIONS)]
    try:
        headers = HTTPHeaders.parse(data[1:].decode("latin-1"))
    except (HTTPInputError, ValueError):
        return  # Tornado answers 400 before the edge sees the request
    refusal = invalid_handshake(method, headers)
    if refusal is not None:
        status, reason, extra = refusal
        assert 400 <= status < 500 and reason and isinstance(extra, dict), refusal
        return
    assert len(accept_key(headers["Sec-WebSocket-Key"])) == 28
    offer = headers.get("Sec-WebSocket-Extensions", "")
    agreed = negotiate_deflate(offer, options)
    if agreed is None:
        return
    response, params = agreed
    assert response.startswith("permessage-deflate"), response
    assert 8 <= params.client_max_window_bits <= 15 and 9 <= params.server_max_window_bits <= 15, params
    zlib.compressobj(params.compress_level, zlib.DEFLATED, -params.server_max_window_bits, params.mem_level)
    zlib.decompressobj(-params.client_max_window_bits)
    if not isinstance(options, dict) or "server_max_window_bits" not in options:
        assert params.server_max_window_bits <= DEFLATE_DEFAULTS["server_max_window_bits"], params
