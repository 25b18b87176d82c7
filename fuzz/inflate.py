"""permessage-deflate, with and without context takeover: what a client compressed arrives as it was.

Two halves per input. Messages the fuzzer chooses are compressed as a client
would (zlib, the window the agreement allows, takeover or not), cut into
frames the fuzzer chooses: each must arrive equal to what was compressed.
Then the fuzzer's own bytes go out as compressed frames: they inflate as
zlib inflates them, or the connection fails with 1007 (1009 past the limit),
and nothing else escapes.
"""

from __future__ import annotations

import itertools
import zlib

import atheris

from django_ws.edge.deflate import DEFLATE_TAIL, DeflateParams
from django_ws.edge.protocol import Message, ProtocolFailed, ServerProtocol

from ._frames import client_frame, feed

_RSV1, _FIN = 0x40, 0x80


def _frames(fdp: atheris.FuzzedDataProvider, opcode: int, body: bytes) -> list[bytes]:
    """``body`` (compressed) in frames cut where the fuzzer says: RSV1 on the first only."""
    cuts = sorted({fdp.ConsumeIntInRange(0, len(body)) for _ in range(fdp.ConsumeIntInRange(0, 3))})
    bounds = [0, *cuts, len(body)]
    parts = [body[a:b] for a, b in itertools.pairwise(bounds)]
    frames = []
    for index, part in enumerate(parts):
        first = (opcode | _RSV1) if index == 0 else 0
        if index == len(parts) - 1:
            first |= _FIN
        frames.append(client_frame(first, part))
    return frames


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    takeover = fdp.ConsumeBool()
    bits = fdp.ConsumeIntInRange(9, 15)
    params = DeflateParams(client_max_window_bits=bits, client_no_context_takeover=not takeover)
    max_size = 4096
    protocol = ServerProtocol(max_size, params)
    compressor = None
    sent, wire = [], []
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        message = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 5000))
        if compressor is None or not takeover:
            # wbits 8 is refused by zlib for raw deflate; 9 is the smallest a client may use
            compressor = zlib.compressobj(fdp.ConsumeIntInRange(0, 9), zlib.DEFLATED, -bits)
        body = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
        assert body.endswith(DEFLATE_TAIL)
        wire += _frames(fdp, 0x2, body[:-4])
        sent.append(message)
    events, _ = feed(protocol, wire)
    expected = []
    for message in sent:
        if len(message) > max_size:
            expected.append(ProtocolFailed(1009, f"message over {max_size} bytes"))
            break
        expected.append(Message(True, message))
    assert events == expected, f"{events} != {expected}"

    # The fuzzer's own bytes as one compressed message, against zlib's reading of them.
    raw = fdp.ConsumeBytes(fdp.remaining_bytes())
    protocol = ServerProtocol(max_size, params)
    events, _ = feed(protocol, [client_frame(_FIN | _RSV1 | 0x2, raw)])
    reference = zlib.decompressobj(-bits)
    try:
        inflated = reference.decompress(raw + DEFLATE_TAIL, max_size + 1)
    except zlib.error:
        assert events == [ProtocolFailed(1007, "compressed message does not inflate")], events
        return
    if len(inflated) > max_size:
        assert events == [ProtocolFailed(1009, f"message over {max_size} bytes")], events
    else:
        assert events == [Message(True, inflated)], f"{events} != {inflated!r}"
