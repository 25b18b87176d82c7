"""The edge<->worker wire decoder: any frames decode to a message, or raise wire.ProtocolError, nothing else.

The input is cut into ZeroMQ frames at a separator the fuzzer learns
(``\\x00|\\x00``), so that batches, every message kind and every field count
are reachable. A message that decodes encodes back to frames that
decode to the same message.
"""

from __future__ import annotations

from django_ws import wire

SEPARATOR = b"\x00|\x00"


def test_one_input(data: bytes) -> None:
    frames = data.split(SEPARATOR)
    try:
        messages = list(wire.iter_decode(frames))
    except wire.ProtocolError:
        return
    for message in messages:
        again = wire.decode(message.encode())
        assert again == message, f"{message!r} encodes and decodes to {again!r}"
