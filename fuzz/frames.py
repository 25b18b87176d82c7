"""ServerProtocol.receive_data, differential: the same bytes in any split give the same events, in order.

The input's first bytes choose the limit, compression and the cuts; the
rest is what a client sent. Fed whole, then cut where the fuzzer says, then
one byte at a time, the protocol must give equal events, queue the same
bytes, end in the same state, and hold no more than a frame between reads.
"""

from __future__ import annotations

import itertools

import atheris

from django_ws.edge.deflate import DeflateParams
from django_ws.edge.protocol import CloseReceived, Message, ProtocolFailed, ServerProtocol

from ._frames import feed

_DEFLATE = (None, DeflateParams(), DeflateParams(client_no_context_takeover=True, server_no_context_takeover=True))


def run(data: bytes, max_size: int, deflate: DeflateParams | None, cuts: list[int]) -> None:
    whole_events, whole_out = feed(ServerProtocol(max_size, deflate), [data])
    for name, event in enumerate(whole_events):
        if isinstance(event, Message):
            assert len(event.payload) <= max_size, f"a message of {len(event.payload)} bytes passed the limit {max_size}"
            if not event.binary:
                event.payload.decode("utf-8")  # a text message is UTF-8 (raises if not)
        if isinstance(event, (ProtocolFailed, CloseReceived)):
            assert name == len(whole_events) - 1, f"events after the end: {whole_events}"
    splits = [sorted({c % (len(data) + 1) for c in cuts}), range(len(data) if len(data) < 300 else 0)]
    for points in splits:
        bounds = [0, *points, len(data)]
        chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
        protocol = ServerProtocol(max_size, deflate)
        events, out = feed(protocol, chunks)
        assert events == whole_events, f"split {list(points)}: {events} != {whole_events} (whole)"
        assert out == whole_out, f"split {list(points)}: queued {out!r} != {whole_out!r} (whole)"


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    max_size = fdp.ConsumeIntInRange(0, 70000)
    deflate = _DEFLATE[fdp.ConsumeIntInRange(0, 2)]
    cuts = [fdp.ConsumeIntInRange(0, 1 << 16) for _ in range(fdp.ConsumeIntInRange(0, 8))]
    run(fdp.ConsumeBytes(fdp.remaining_bytes()), max_size, deflate, cuts)
