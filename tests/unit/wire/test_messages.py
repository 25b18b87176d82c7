"""The edge <-> worker wire format, checked on bytes alone (no sockets)."""

import pytest

from django_ws import wire

NON_UTF8 = b"\xff\xfe\x00\x80binary"

MESSAGES = [
    wire.Ping("edge-1"),
    wire.Connect("e.1", "chat/lobby", {"path": "/socket/chat/lobby", "headers": [["Cookie", "a=1"]], "secure": False}),
    wire.Data("e.1", "chat/lobby", False, b"hello"),
    wire.Data("e.1", "chat/lobby", True, NON_UTF8),
    wire.Data("e.1", "", True, b""),
    wire.Refresh("e.1", "chat/lobby", "a.b.c"),
    wire.Credentials("e.1", "42", "9f86d081884c7d65", 300000),
    wire.Credentials("e.1", "", "", 0),
    wire.Event("e.1", "chat/lobby", "move", 7, b'[{"x":1}]'),
    wire.Event("e.1", "chat/lobby", "héllo", -1, b"[]"),
    wire.Disconnect("e.1", "chat/lobby", 1001, "going away"),
    wire.Recovery("e.1", "chat.lobby", True),
    wire.Recovery("e.1", "chat.lobby", False),
    wire.PresenceDiff("e.1", "chat.lobby", {"joined": ["e.2"], "left": []}),
    wire.Hello("worker-7", 0, 12, "gevent"),
    wire.UserPresenceDiff("e.1", "chat.lobby", {"joined": {"7": {"username": "alice"}}, "left": ["8"]}),
    wire.Goodbye("worker-7"),
    wire.Accept("e.1", ""),
    wire.Accept("e.1", "graphql-ws"),
    wire.Deny("e.1", 403, "Forbidden"),
    wire.Send("e.1", False, "héllo ✓".encode()),
    wire.Send("e.1", True, NON_UTF8),
    wire.EventAck("e.1", 7, b"[42]"),
    wire.Close("e.1", 4000, "bye"),
    wire.Join("e.1", "room.lobby"),
    wire.JoinAs("e.1", "room.lobby", "7", {"username": "alice"}),
    wire.Leave("e.1", "room.lobby"),
    wire.Watch("e.1", "room.lobby", True),
    wire.GroupSend("room.lobby", "e.1", False, b"to all but e.1", "ref-1"),
    wire.GroupSend("room.lobby", "", True, b"", ""),
    wire.SendTo("e.2", True, NON_UTF8, "ref-2"),
    wire.CloseConnections("e.2", "", 4003, "banned", "ref-5"),
    wire.CloseConnections("", "room.lobby", 1000, "", ""),
    wire.Ack("ref-2", "edge-1", 3),
    wire.Presence("ref-3", "room.lobby"),
    wire.PresenceQuery("ref-4", "room.lobby", "users", 100, "7"),
    wire.Members("ref-3", "edge-1", {"ids": ["e.1", "e.2"]}),
    wire.Members("ref-4", "edge-1", {}),
    wire.Inspect("ref-6", {"groups": 20, "group": "room.lobby", "offset": 0, "limit": 50}),
    wire.Report("ref-6", "edge-1", {"connections": 3, "largest_groups": [{"name": "room.lobby", "size": 2}]}),
]


def test_every_message_class_is_covered_by_the_round_trip_cases():
    classes = {cls for cls in vars(wire).values() if isinstance(cls, type) and issubclass(cls, wire.Message)}
    classes.discard(wire.Message)
    assert classes == {type(m) for m in MESSAGES}


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_encode_then_decode_round_trips(message):
    frames = message.encode()
    assert all(type(frame) is bytes for frame in frames)
    assert frames[0][:5] == wire.VERSION + type(message).KIND
    decoded = wire.decode(frames)
    assert type(decoded) is type(message)
    assert decoded == message


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_decode_accepts_memoryview_frames(message):
    frames = [memoryview(frame) for frame in message.encode()]
    assert wire.decode(frames) == message


def test_each_kind_is_one_distinct_ascii_letter_or_sign():
    kinds = [type(m).KIND for m in MESSAGES]
    assert all(len(kind) == 1 and kind.isascii() for kind in kinds)
    assert len(set(kinds)) == len({type(m) for m in MESSAGES})


def test_join_and_leave_share_fields_but_decode_to_their_own_class():
    assert wire.decode(wire.Join("e.1", "g").encode()) != wire.Leave("e.1", "g")
    assert isinstance(wire.decode(wire.Leave("e.1", "g").encode()), wire.Leave)


# -- exact frames ----------------------------------------------------------------


def header(kind: bytes, *fields: bytes, version: bytes = b"DWS4") -> bytes:
    """A header frame built by hand: version, kind, then each field as 4-byte length + bytes."""
    return version + kind + b"".join(len(f).to_bytes(4, "big") + f for f in fields)


def test_data_frames_exactly():
    assert wire.Data("e.1", "chat/x", False, b"hi").encode() == [
        b"DWS4D" + b"\x00\x00\x00\x03e.1" + b"\x00\x00\x00\x06chat/x" + b"\x00\x00\x00\x010",
        b"hi",
    ]


def test_binary_send_frames_exactly():
    assert wire.Send("e.1", True, b"\x00\x01").encode() == [header(b"S", b"e.1", b"1"), b"\x00\x01"]


def test_payload_is_the_second_frame_wherever_it_sits_among_the_fields():
    assert wire.GroupSend("g", "e.2", False, b"hi", "ref").encode() == [
        header(b"G", b"g", b"e.2", b"0", b"ref", b"0", b""), b"hi"]
    assert wire.SendTo("e.1", True, b"\xff", "", 1765000000123456, "00-ab-cd-01").encode() == [
        header(b"T", b"e.1", b"1", b"", b"1765000000123456", b"00-ab-cd-01"), b"\xff"]


def test_close_frames_exactly_with_int_as_ascii_decimal_and_str_as_utf8():
    assert wire.Close("e.1", 1011, "café").encode() == [header(b"Q", b"e.1", b"1011", "café".encode("utf-8"))]


def test_connect_frames_exactly_with_compact_json():
    frames = wire.Connect("e.1", "echo", {"path": "/socket/echo", "n": 1}).encode()
    assert frames == [header(b"C", b"e.1", b"echo", b'{"path":"/socket/echo","n":1}')]


def test_hello_and_ack_frames_exactly():
    assert wire.Hello("w", 0, 5, "threaded").encode() == [header(b"H", b"w", b"0", b"5", b"threaded")]
    assert wire.Ack("r", "edge", 2).encode() == [header(b"K", b"r", b"edge", b"2")]


def test_decode_literal_frames():
    assert wire.decode([header(b"X", b"e.1", b"chat/x", b"1000", b"")]) == wire.Disconnect("e.1", "chat/x", 1000, "")
    assert wire.decode([header(b"N", b"e.9", b"403", b"no")]) == wire.Deny("e.9", 403, "no")


# -- payloads ----------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"", b"\x00", NON_UTF8, b"plain text", bytes(range(256)), b"x" * 100_000])
def test_payload_bytes_pass_through_untouched(payload):
    frames = wire.Data("e.1", "r", True, payload).encode()
    assert len(frames) == 2 and frames[1] is payload  # not even copied
    assert wire.decode(frames).payload == payload
    assert type(wire.decode(frames).payload) is bytes


def test_payload_from_memoryview_decodes_to_bytes():
    decoded = wire.decode([memoryview(f) for f in wire.SendTo("e.1", False, b"abc", "r").encode()])
    assert decoded.payload == b"abc"
    assert type(decoded.payload) is bytes


def test_negative_int_round_trips():
    assert wire.decode(wire.Close("e.1", -1, "").encode()).code == -1


# -- malformed input ---------------------------------------------------------------


def test_protocol_error_is_a_value_error():
    assert issubclass(wire.ProtocolError, ValueError)


def H(kind, *fields, **kw):
    return [header(kind, *fields, **kw)]


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param([], id="no-frames"),
        pytest.param([b"DWS4"], id="version-only"),
        pytest.param([b"DWS"], id="short-header"),
        pytest.param(H(b"P", b"edge", version=b"DWS9"), id="wrong-version"),
        pytest.param(H(b"P", b"edge", version=b"dws1"), id="version-case"),
        pytest.param(H(b"Z", b"edge"), id="unknown-kind"),
        pytest.param(H(b"P"), id="too-few-fields"),
        pytest.param(H(b"D", b"e.1", b"r", b"0"), id="data-missing-payload-frame"),
        pytest.param(H(b"P", b"edge") + [b"extra"], id="extra-frame"),
        pytest.param(H(b"P", b"edge", b"extra"), id="too-many-fields"),
        pytest.param([header(b"P", b"edge")[:-1]], id="field-runs-past-header"),
        pytest.param([header(b"P", b"edge") + b"\x00\x00"], id="trailing-bytes"),
        pytest.param([b"DWS4P\x00\x00"], id="truncated-length"),
        pytest.param(H(b"D", b"e.1", b"r", b"0", b"hi"), id="payload-in-header"),
        pytest.param(H(b"H", b"w", b" 12", b"0"), id="int-leading-space"),
        pytest.param(H(b"H", b"w", b"12 ", b"0"), id="int-trailing-space"),
        pytest.param(H(b"H", b"w", b"1_0", b"0"), id="int-underscore"),
        pytest.param(H(b"H", b"w", b"abc", b"0"), id="int-letters"),
        pytest.param(H(b"H", b"w", b"+3", b"0"), id="int-plus-sign"),
        pytest.param(H(b"H", b"w", b"", b"0"), id="int-empty"),
        pytest.param(H(b"H", b"w", b"-", b"0"), id="int-bare-minus"),
        pytest.param(H(b"H", b"w", b"1.5", b"0"), id="int-float"),
        pytest.param(H(b"H", b"w", "١٢".encode(), b"0"), id="int-non-ascii-digits"),
        pytest.param(H(b"D", b"e.1", b"r", b"2") + [b"hi"], id="bool-2"),
        pytest.param(H(b"D", b"e.1", b"r", b"true") + [b"hi"], id="bool-word"),
        pytest.param(H(b"D", b"e.1", b"r", b"") + [b"hi"], id="bool-empty"),
        pytest.param(H(b"P", b"\xff\xfe"), id="str-invalid-utf8"),
        pytest.param(H(b"Q", b"e.1", b"1000", b"caf\xe9"), id="str-latin1"),
        pytest.param(H(b"C", b"e.1", b"r", b"[1, 2]"), id="dict-json-array"),
        pytest.param(H(b"C", b"e.1", b"r", b'"text"'), id="dict-json-string"),
        pytest.param(H(b"C", b"e.1", b"r", b"null"), id="dict-json-null"),
        pytest.param(H(b"C", b"e.1", b"r", b"3"), id="dict-json-number"),
        pytest.param(H(b"C", b"e.1", b"r", b"{not json"), id="dict-not-json"),
        pytest.param(H(b"C", b"e.1", b"r", b""), id="dict-empty"),
        pytest.param(H(b"C", b"e.1", b"r", b"\xff{}"), id="dict-invalid-utf8"),
        pytest.param(H(b"M", b"ref", b"edge", b"[]"), id="members-json-array"),
    ],
)
def test_malformed_frames_raise_protocol_error(frames):
    with pytest.raises(wire.ProtocolError):
        wire.decode(frames)


def test_wrong_version_error_names_the_versions():
    # DWS1 is the version before batches: a worker or edge still on it fails loudly.
    with pytest.raises(wire.ProtocolError, match="DWS1.*DWS4"):
        wire.decode(H(b"P", b"edge", version=b"DWS1"))


def test_frame_count_error_names_the_message_class():
    with pytest.raises(wire.ProtocolError, match="Data takes 2 frames, got 1"):
        wire.decode(H(b"D", b"e.1", b"r", b"0"))


def test_field_count_error_names_the_message_class():
    with pytest.raises(wire.ProtocolError, match="Hello takes 4 header fields, got 2"):
        wire.decode(H(b"H", b"w", b"0"))


def test_deeply_nested_json_in_a_dict_field_raises_protocol_error():
    nested = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(wire.ProtocolError):
        wire.decode(H(b"C", b"e.1", b"r", nested))


# -- batches: several messages in one ZeroMQ message ----------------------------


def test_a_batch_of_every_message_decodes_to_the_same_messages_in_order():
    frames = wire.encode_batch(MESSAGES)
    assert len(frames) == sum(len(m.encode()) for m in MESSAGES)
    assert list(wire.iter_decode(frames)) == MESSAGES


def test_a_batch_is_the_messages_frames_back_to_back():
    first, second = wire.Data("e.1", "r", False, b"a"), wire.Close("e.2", 1000, "")
    assert wire.encode_batch([first, second]) == first.encode() + second.encode()


def test_one_message_is_a_batch_of_one():
    message = wire.Send("e.1", False, b"x")
    assert list(wire.iter_decode(message.encode())) == [message]


def test_a_payload_that_looks_like_a_header_stays_a_payload():
    inner = wire.Hello("w", 0, 0, "threaded").encode()[0]
    batch = [wire.Send("e.1", True, inner), wire.Ping("edge")]
    assert list(wire.iter_decode(wire.encode_batch(batch))) == batch


def test_a_malformed_message_in_a_batch_raises_after_the_good_ones_before_it():
    good = wire.Data("e.1", "r", False, b"kept")
    frames = good.encode() + [b"DWS4D\x00\x00"] + wire.Ping("lost").encode()
    decoded = []
    with pytest.raises(wire.ProtocolError):
        for message in wire.iter_decode(frames):
            decoded.append(message)
    assert decoded == [good]


def test_a_batch_cut_before_its_last_payload_raises():
    frames = wire.encode_batch([wire.Ping("p"), wire.Data("e.1", "r", False, b"x")])[:-1]
    with pytest.raises(wire.ProtocolError, match="Data takes 2 frames, got 1"):
        list(wire.iter_decode(frames))


def test_an_empty_batch_raises():
    with pytest.raises(wire.ProtocolError):
        list(wire.iter_decode([]))
