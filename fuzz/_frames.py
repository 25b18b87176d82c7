"""Client frames for the protocol targets: masked as a client masks them."""

from __future__ import annotations

import struct

from django_ws.edge.protocol import ServerProtocol, apply_mask


def client_frame(first: int, payload: bytes, key: bytes = b"\x37\xfa\x21\x3d") -> bytes:
    """One masked client frame: ``first`` is FIN|RSV|opcode."""
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", first, 0x80 | size)
    elif size < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, size)
    return head + key + apply_mask(key, payload)


def feed(protocol: ServerProtocol, chunks: list[bytes]) -> tuple[list, bytes]:
    """Every event of ``chunks`` fed one by one, and everything the protocol queued to send."""
    events, out = [], []
    for chunk in chunks:
        events += protocol.receive_data(chunk)
        out.append(protocol.data_to_send())
        check_bounded(protocol)
    return events, b"".join(out)


def check_bounded(protocol: ServerProtocol) -> None:
    """What the protocol holds between reads stays under its limit (a frame header, plus a frame's payload)."""
    limit = protocol._max_size + (protocol._max_size >> 10) + 64 + 14
    held = len(protocol._buffer) + sum(len(p) for p in protocol._parts or ())
    assert held <= limit, f"the protocol holds {held} bytes between reads, over {limit}"
