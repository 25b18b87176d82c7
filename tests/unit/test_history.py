"""Group history and the positions a client presents, on values alone (no sockets, a test clock)."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from django_ws.history import (
    MAX_POSITIONS,
    BadPositions,
    History,
    HistoryBound,
    Position,
    envelope,
    parse_positions,
    parse_settings,
)


@pytest.fixture
def history(clock):
    return History(parse_settings({"chat.*": {"size": 3, "ttl": 10}}), epoch="ep", clock=clock)


def test_only_groups_matching_a_pattern_keep_history_and_the_first_pattern_wins(clock):
    history = History(parse_settings({"a.*": {"size": 1, "ttl": 5}, "*": {"size": 9, "ttl": 5}}), clock=clock)
    assert history.bound_for("a.x").size == 1 and history.bound_for("b").size == 9
    assert History([], clock=clock).record("b", False, b"x") is None, "no pattern: no history, no position"
    assert not History([], clock=clock), "an edge without WS_GROUP_HISTORY skips history entirely"


def test_offsets_grow_by_one_per_message_of_each_group(history):
    assert [history.record("chat.a", False, b"%d" % i).offset for i in range(3)] == [1, 2, 3]
    assert history.record("chat.b", False, b"x").offset == 1, "each group counts its own"
    assert history.record("other", False, b"x") is None


def test_replay_gives_what_follows_a_position_in_order(history):
    for i in range(1, 4):
        history.record("chat.a", False, b"m%d" % i)
    epoch = history.logs["chat.a"].epoch
    entries, here = history.replay("chat.a", epoch, 1)
    assert [e.payload for e in entries] == [b"m2", b"m3"] and here.offset == 3
    assert history.replay("chat.a", epoch, 3)[0] == [], "a client that saw everything gets nothing, and no resync"


def test_a_gap_beyond_size_beyond_ttl_or_from_another_epoch_is_not_covered(history, clock):
    for i in range(1, 6):
        history.record("chat.a", False, b"m%d" % i)
    epoch = history.logs["chat.a"].epoch
    assert history.replay("chat.a", epoch, 1)[0] is None, "messages 2 was evicted by size 3"
    assert [e.payload for e in history.replay("chat.a", epoch, 2)[0]] == [b"m3", b"m4", b"m5"]
    assert history.replay("chat.a", "another", 4)[0] is None, "another epoch"
    assert history.replay("chat.a", epoch, 9)[0] is None, "an offset from the future"
    clock.now += 10
    entries, here = history.replay("chat.a", epoch, 4)
    assert entries is None and here.resync and (here.epoch, here.offset) == (epoch, 5), \
        "message 5 expired by ttl; the resync says where the group stands now"
    assert history.replay("chat.a", epoch, 5)[0] == [], "nothing was missed: nothing is needed"


def test_the_size_bound_holds_whatever_the_messages_weigh(history):
    big = b"x" * 1_000_000
    for _ in range(50):
        history.record("chat.a", True, big)
    log = history.logs["chat.a"]
    assert len(log.entries) == 3 and log.size_bytes == 3_000_000
    assert history.figures()["bytes"] == 3_000_000 and history.figures()["messages"] == 3


def test_a_log_forgotten_after_ttl_without_members_comes_back_under_a_new_epoch(history, clock):
    first = history.record("chat.a", False, b"x")
    clock.now += 5
    assert history.sweep(lambda group: False) == 0, "not silent for ttl yet"
    clock.now += 5
    assert history.sweep(lambda group: True) == 0, "a group with members keeps its log"
    assert history.sweep(lambda group: False) == 1
    again = history.record("chat.a", False, b"y")
    assert again.offset == 1 and again.epoch != first.epoch, "new offsets must not pass for old ones"
    assert history.replay("chat.a", first.epoch, 1)[0] is None


def test_the_envelope_is_a_json_header_line_then_the_payload_untouched():
    position = Position("chat.a", "ep-1", 7)
    frame = envelope(position, b"\xff\x00raw")
    header, _, payload = frame.partition(b"\n")
    assert json.loads(header) == {"g": "chat.a", "e": "ep-1", "o": 7} and payload == b"\xff\x00raw"
    assert envelope(None, b"plain") == b"\nplain", "a message without a position has an empty header"
    assert json.loads(envelope(Position("g\n", "e", 3, resync=True), b"")) == {"resync": "g\n", "e": "e", "o": 3}


def since(value) -> str:
    return "dws=1&dws_since=" + quote(json.dumps(value))


def test_a_client_asks_for_positions_and_presents_the_last_ones_in_the_query():
    assert parse_positions("") is None and parse_positions("room=1&token=x") is None
    assert parse_positions("dws=1").positions == {}
    assert parse_positions(since({"chat.a": ["ep", 4]}) + "&other=1").positions == {"chat.a": ("ep", 4)}


@pytest.mark.parametrize("query, message", [
    ("dws=2", "unsupported dws='2'"),
    ("dws_since=%7B%7D", "dws_since needs dws=1"),
    ("dws=1&dws_since=nope", "dws_since is not JSON"),
    ("dws=1&dws_since=%5B%5D", "must be a JSON object"),
    (since({"g": ["ep", -1]}), "must be [\"epoch\", offset]"),
    (since({"g": ["ep", True]}), "must be [\"epoch\", offset]"),
    (since({"g": [1, 1]}), "must be [\"epoch\", offset]"),
    (since({f"g{i}": ["e", 1] for i in range(MAX_POSITIONS + 1)}), f"at most {MAX_POSITIONS}"),
    ("dws=1&dws_since=%7B%7D&dws_since=%7B%7D", "given 2 times"),
])
def test_what_a_client_presents_wrongly_is_refused_with_a_reason(query, message):
    with pytest.raises(BadPositions) as caught:
        parse_positions(query)
    assert message in str(caught.value)


@pytest.mark.parametrize("value, message", [
    ([("a", 1)], "maps group-name patterns"),
    ({"a": {"size": 0}}, "positive int"),
    ({"a": {"size": 1, "ttl": 0}}, "positive seconds"),
    ({"a": {"size": 1, "ttl": 1, "extra": 1}}, "must be"),
    ({"": {"size": 1}}, "non-empty str"),
])
def test_bad_settings_say_what_is_wrong(value, message):
    with pytest.raises(ValueError) as caught:
        parse_settings(value)
    assert message in str(caught.value)


def test_settings_default_ttl():
    ((pattern, bound),) = parse_settings({"a": {"size": 2}})
    assert pattern == "a" and isinstance(bound, HistoryBound) and bound.ttl == 300


def test_the_handler_sees_the_query_without_the_position_parameters():
    from django_ws.history import without_positions

    assert without_positions("room=1&dws=1&dws_since=%7B%7D&b=a%20b") == "room=1&b=a%20b"
    assert without_positions("a=1") == "a=1"
