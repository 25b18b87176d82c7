"""RFC 6455's opening handshake, on a request's method and headers alone (no I/O).

The half of the protocol layer that runs before there is a connection:
what is wrong with a request as a handshake (4.2.1), and the accept key that
answers a good one (4.2.2). ``protocol.py`` is the other half, the frames of
an open connection, and re-exports both names.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping

__all__ = ["accept_key", "invalid_handshake"]

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(sec_websocket_key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value that answers ``Sec-WebSocket-Key`` (RFC 6455 4.2.2)."""
    digest = hashlib.sha1((sec_websocket_key + _GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def invalid_handshake(method: str, headers: Mapping[str, str]) -> tuple[int, str, dict[str, str]] | None:
    """What is wrong with a request as an RFC 6455 opening handshake (4.2.1), or None if nothing is.

    ``headers`` must look names up whatever their case (Tornado's
    ``HTTPHeaders`` does). The answer is the HTTP status to refuse with, its
    reason, and the headers the refusal carries: a 426 names the version this
    server speaks (4.4).
    """
    if headers.get("Upgrade", "").lower() != "websocket":
        return 400, 'Can "Upgrade" only to "WebSocket".', {}
    if "upgrade" not in (token.strip().lower() for token in headers.get("Connection", "").split(",")):
        return 400, 'the "Connection" header must include "Upgrade"', {}
    if method != "GET":
        return 405, "a WebSocket handshake is a GET", {}
    if headers.get("Sec-WebSocket-Version") != "13":
        return 426, "only WebSocket version 13 is supported", {"Sec-WebSocket-Version": "13"}
    key = headers.get("Sec-WebSocket-Key", "")
    try:
        valid_key = len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid_key = False
    if not valid_key:
        return 400, "Sec-WebSocket-Key is missing or not 16 bytes in base64", {}
    if not headers.get("Host"):
        return 400, "the Host header is missing", {}
    return None
