"""Coverage-guided fuzzing of the parsers that read what strangers send (atheris, libFuzzer).

One module per target, each with ``test_one_input(data: bytes)``: it feeds
the bytes to a parser and raises (an AssertionError, or an exception the
parser must never let escape) only when the parser is wrong. A seed
corpus per target lives in ``fuzz/corpus/<target>/``.

Run a target as long as you like::

    python -m fuzz frames --seconds 600
    python -m fuzz --list

tests/unit/test_fuzz.py runs each target a few seconds in CI; a crash
found here becomes a regression test in tests/unit next to the parser's
own tests, and a fix.
"""

from __future__ import annotations

#: target -> what it feeds (the module fuzz/<target>.py).
TARGETS = {
    "frames": "ServerProtocol.receive_data: the same bytes in any split give the same events, in bounded memory",
    "inflate": "permessage-deflate frames, with and without context takeover, against zlib's own reading",
    "handshake": "the handshake's request checks and the Sec-WebSocket-Extensions negotiation",
    "positions": "dws and dws_since query parameters (history.parse_positions)",
    "tokens": "tokens from a request (header, subprotocol, query) and their verification",
    "wire": "the edge<->worker wire decoder: only wire.ProtocolError escapes",
    "routing": "routes with hostile paths through the mount's resolver",
    "socketio": "Engine.IO payloads and Socket.IO packets as the edge receives them",
}
