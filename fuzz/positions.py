"""``dws`` and ``dws_since``: positions parsed, or a BadPositions for a 400; nothing else escapes.

The query string is the raw bytes as a client sends them (percent-encoding
and all); parsed positions are groups mapped to an (epoch, offset >= 0).
"""

from __future__ import annotations

from django_ws.history import MAX_POSITIONS, BadPositions, parse_positions, without_positions


def test_one_input(data: bytes) -> None:
    query = data.decode("latin-1")
    try:
        positions = parse_positions(query)
    except BadPositions as exc:
        assert str(exc)
        return
    without_positions(query)
    if positions is None:
        return
    assert len(positions.positions) <= MAX_POSITIONS
    for group, (epoch, offset) in positions.positions.items():
        assert isinstance(group, str) and isinstance(epoch, str), (group, epoch)
        assert type(offset) is int and offset >= 0, offset
