"""The server's RFC 6455 / RFC 7692 protocol core, checked on bytes alone (no sockets).

The groups follow the case categories of the Autobahn|Testsuite (1 framing,
2 pings and pongs, 3 reserved bits, 4 opcodes, 5 fragmentation, 6 UTF-8,
7 close, 9 limits and performance, 12/13 permessage-deflate); the same
categories run end to end against a real server in tests/e2e/test_rfc6455.py.
"""

from __future__ import annotations

import gc
import itertools
import os
import struct
import subprocess
import sys
import tracemalloc
import zlib

import pytest
from tornado.speedups import websocket_mask

from django_ws.edge.deflate import DEFLATE_DEFAULTS, DeflateParams, deflate_settings, negotiate_deflate
from django_ws.edge.protocol import (
    CloseReceived,
    Message,
    Ping,
    Pong,
    ProtocolFailed,
    ProtocolState,
    ServerProtocol,
    accept_key,
    apply_mask,
)

LIMIT = 1 << 20
TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0
KEY = b"\x37\xfa\x21\x3d"


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, masked: bool = True,
          length: int | None = None) -> bytes:
    """A client frame: masked with KEY unless ``masked`` is False; ``length`` overrides the header's."""
    size = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if masked else 0
    if size < 126:
        header = struct.pack("!BB", first, mask_bit | size)
    elif size < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, size)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, size)
    if not masked:
        return header + payload
    return header + KEY + websocket_mask(KEY, payload)


def close_frame(code: int | None = None, reason: bytes = b"") -> bytes:
    return frame(CLOSE, b"" if code is None else struct.pack("!H", code) + reason)


def server_frames(data: bytes) -> list[tuple[bool, int, int, bytes]]:
    """Parse the server's output into (fin, rsv, opcode, payload); server frames are never masked."""
    frames = []
    while data:
        first, second = data[0], data[1]
        assert not second & 0x80, "a server frame must not be masked"
        size, offset = second & 0x7F, 2
        if size == 126:
            size, offset = struct.unpack("!H", data[2:4])[0], 4
        elif size == 127:
            size, offset = struct.unpack("!Q", data[2:10])[0], 10
        assert len(data) >= offset + size, f"truncated server frame: {data[:20]!r}"
        frames.append((bool(first & 0x80), (first >> 4) & 7, first & 0x0F, data[offset:offset + size]))
        data = data[offset + size:]
    return frames


def close_code_of(data: bytes) -> int | None:
    """The code of the single close frame in ``data`` (None for an empty one)."""
    frames = server_frames(data)
    assert len(frames) == 1 and frames[0][2] == CLOSE, f"expected one close frame, got {frames}"
    payload = frames[0][3]
    return struct.unpack("!H", payload[:2])[0] if payload else None


def feed(protocol: ServerProtocol, data: bytes, chunk: int | None = None) -> list:
    """Feed ``data`` whole, or in pieces of ``chunk`` bytes; all the events."""
    if chunk is None:
        return protocol.receive_data(data)
    events = []
    for i in range(0, len(data), chunk):
        events += protocol.receive_data(data[i:i + chunk])
    return events


def assert_fails(data: bytes, code: int, *, protocol: ServerProtocol | None = None, chunk: int | None = None):
    """``data`` fails the connection with a close frame carrying ``code``, and nothing else is queued."""
    protocol = protocol or ServerProtocol(LIMIT)
    events = feed(protocol, data, chunk)
    assert events and isinstance(events[-1], ProtocolFailed), f"expected a failure with {code}, got {events}"
    assert events[-1].code == code, f"expected close code {code}, got {events[-1]}"
    assert not protocol.close_expected(), "the close frame must be flushed before TCP is closed"
    assert close_code_of(protocol.data_to_send()) == code
    assert protocol.close_expected(), "after the close frame of a failure, the TCP connection should close"
    assert protocol.state is ProtocolState.CLOSED
    assert protocol.close_sent[0] == code
    assert protocol.receive_data(frame(TEXT, b"more")) == [], "input after a failure must be ignored"
    assert protocol.data_to_send() == b""
    return events


def test_the_module_imports_no_io_library():
    code = ("import sys, django_ws.edge.protocol; "
            "print(sorted(m for m in ('tornado', 'zmq', 'asyncio', 'django', 'socket') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"django_ws.edge.protocol imported {out.strip()}"


def test_accept_key_is_the_rfc_example():
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 125, 4096, 65537])
def test_apply_mask_matches_tornado_speedups(size):
    data = os.urandom(size)
    assert apply_mask(KEY, data) == websocket_mask(KEY, data)


# --- Autobahn category 1: framing -----------------------------------------------------------

SIZES = [0, 1, 125, 126, 127, 65535, 65536, 1 << 20]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("opcode", [TEXT, BINARY])
@pytest.mark.parametrize("mask", [apply_mask, websocket_mask], ids=["python-mask", "tornado-mask"])
def test_a_message_of_each_length_arrives_whole(size, opcode, mask):
    payload = (b"*" * size) if opcode == TEXT else os.urandom(size)
    protocol = ServerProtocol(LIMIT, mask=mask)
    assert protocol.receive_data(frame(opcode, payload)) == [Message(opcode == BINARY, payload)]
    assert protocol.data_to_send() == b""
    assert protocol.state is ProtocolState.OPEN and not protocol.close_expected()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("binary", [False, True])
def test_send_message_frames_each_length(size, binary):
    payload = os.urandom(size)
    data = ServerProtocol(LIMIT).send_message(binary, payload)
    assert server_frames(data) == [(True, 0, BINARY if binary else TEXT, payload)]
    header = {True: 2, False: 4 if size < 65536 else 10}[size < 126]
    assert len(data) == header + size, "the shortest length encoding is used"


def test_a_group_message_is_framed_once_for_every_member_that_compresses_nothing():
    payload = b"to everyone" * 20
    plain = [ServerProtocol(LIMIT) for _ in range(3)]
    compressing = ServerProtocol(LIMIT, DeflateParams(min_size=0))
    frames = [p.send_message(False, payload) for p in plain]
    assert frames[0] is frames[1] is frames[2], "one frame, written to each"
    assert server_frames(frames[0]) == [(True, 0, TEXT, payload)]
    assert compressing.send_message(False, payload) is not frames[0], "a compressing member frames its own"
    assert server_frames(plain[0].send_message(True, payload)) == [(True, 0, BINARY, payload)], "not the text frame"
    same_bytes_other_object = bytes(bytearray(payload))
    assert plain[0].send_message(False, same_bytes_other_object) == frames[0]
    plain[1].send_close(1000)
    assert plain[1].send_message(False, payload) == b"", "a closing member gets nothing, cached or not"


def test_unmasked_client_frame_is_a_protocol_error():
    assert_fails(frame(TEXT, b"hello", masked=False), 1002)


def test_frames_before_an_error_are_delivered_and_frames_after_it_ignored():
    events = assert_fails(frame(TEXT, b"one") + frame(3) + frame(TEXT, b"two"), 1002)
    assert events[0] == Message(False, b"one")
    assert len(events) == 2


# --- Autobahn category 2: pings and pongs ---------------------------------------------------

@pytest.mark.parametrize("payload", [b"", b"x", b"\x00\xff" * 10, bytes(range(125))])
def test_a_ping_is_answered_with_an_identical_pong(payload):
    protocol = ServerProtocol(LIMIT)
    assert protocol.receive_data(frame(PING, payload)) == [Ping(payload)]
    assert server_frames(protocol.data_to_send()) == [(True, 0, PONG, payload)]


def test_a_ping_of_126_bytes_is_a_protocol_error():
    assert_fails(frame(PING, b"x" * 126), 1002)


def test_an_unsolicited_pong_is_reported_and_not_answered():
    protocol = ServerProtocol(LIMIT)
    assert protocol.receive_data(frame(PONG, b"unsolicited")) == [Pong(b"unsolicited")]
    assert protocol.data_to_send() == b""


def test_ten_pings_get_ten_pongs_in_order():
    protocol = ServerProtocol(LIMIT)
    data = b"".join(frame(PING, b"%d" % i) for i in range(10))
    assert protocol.receive_data(data) == [Ping(b"%d" % i) for i in range(10)]
    assert [f[3] for f in server_frames(protocol.data_to_send())] == [b"%d" % i for i in range(10)]


def test_a_ping_between_fragments_is_answered_before_the_message_completes():
    protocol = ServerProtocol(LIMIT)
    assert protocol.receive_data(frame(TEXT, b"frag", fin=False) + frame(PING, b"between")) == [Ping(b"between")]
    assert server_frames(protocol.data_to_send()) == [(True, 0, PONG, b"between")]
    assert protocol.receive_data(frame(CONT, b"ment")) == [Message(False, b"fragment")]


def test_send_ping():
    protocol = ServerProtocol(LIMIT)
    assert server_frames(protocol.send_ping(b"keepalive")) == [(True, 0, PING, b"keepalive")]
    with pytest.raises(ValueError, match="125"):
        protocol.send_ping(b"x" * 126)


# --- Autobahn category 3: reserved bits -----------------------------------------------------

@pytest.mark.parametrize("rsv", range(1, 8))
@pytest.mark.parametrize("opcode", [TEXT, BINARY, PING, CLOSE])
def test_reserved_bits_without_an_extension_are_a_protocol_error(rsv, opcode):
    assert_fails(frame(opcode, b"x" if opcode != CLOSE else b"\x03\xe8", rsv=rsv), 1002)


@pytest.mark.parametrize("rsv", [1, 2, 3, 5, 6, 7])  # all but RSV1 alone (4)
def test_rsv2_and_rsv3_are_a_protocol_error_even_with_deflate(rsv):
    assert_fails(frame(TEXT, b"x", rsv=rsv), 1002, protocol=ServerProtocol(LIMIT, DeflateParams()))


def test_rsv1_with_deflate_is_allowed_only_on_the_first_frame_of_a_data_message():
    params = DeflateParams()
    assert_fails(frame(PING, b"x", rsv=4), 1002, protocol=ServerProtocol(LIMIT, params))
    first = compress_message(b"hello")
    assert_fails(frame(TEXT, first, fin=False, rsv=4) + frame(CONT, b"", rsv=4), 1002,
                 protocol=ServerProtocol(LIMIT, params))


# --- Autobahn category 4: opcodes -----------------------------------------------------------

@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_a_reserved_opcode_is_a_protocol_error(opcode):
    events = assert_fails(frame(TEXT, b"before") + frame(opcode, b"x") + frame(PING), 1002)
    assert events[0] == Message(False, b"before")


# --- Autobahn category 5: fragmentation -----------------------------------------------------

def test_a_message_in_many_fragments_arrives_whole():
    protocol = ServerProtocol(LIMIT)
    data = frame(BINARY, b"0", fin=False) + b"".join(frame(CONT, b"%d" % i, fin=False) for i in range(1, 9))
    data += frame(CONT, b"9")
    assert protocol.receive_data(data) == [Message(True, b"0123456789")]


def test_empty_fragments_make_an_empty_message():
    protocol = ServerProtocol(LIMIT)
    assert protocol.receive_data(frame(TEXT, fin=False) + frame(CONT, fin=False) + frame(CONT)) == [
        Message(False, b"")]


def test_control_frames_between_fragments_are_handled_in_order():
    protocol = ServerProtocol(LIMIT)
    data = (frame(TEXT, b"fr", fin=False) + frame(PONG, b"p") + frame(CONT, b"ag", fin=False)
            + frame(PING, b"q") + frame(CONT, b"ment"))
    assert protocol.receive_data(data) == [Pong(b"p"), Ping(b"q"), Message(False, b"fragment")]
    assert server_frames(protocol.data_to_send()) == [(True, 0, PONG, b"q")]


def test_a_close_between_fragments_ends_the_connection_without_the_message():
    protocol = ServerProtocol(LIMIT)
    events = protocol.receive_data(frame(TEXT, b"frag", fin=False) + close_frame(1000))
    assert events == [CloseReceived(1000, "")]


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
def test_a_fragmented_control_frame_is_a_protocol_error(opcode):
    assert_fails(frame(opcode, b"", fin=False) + frame(CONT, b""), 1002)


@pytest.mark.parametrize("fin", [True, False])
def test_a_continuation_with_nothing_to_continue_is_a_protocol_error(fin):
    assert_fails(frame(CONT, b"orphan", fin=fin), 1002)


def test_a_continuation_after_a_complete_message_is_a_protocol_error():
    assert_fails(frame(TEXT, b"whole") + frame(CONT, b"more"), 1002)


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_a_new_data_frame_inside_a_fragmented_message_is_a_protocol_error(opcode):
    assert_fails(frame(TEXT, b"open", fin=False) + frame(opcode, b"new"), 1002)


# --- Autobahn category 6: UTF-8 -------------------------------------------------------------

VALID_UTF8 = ["", "hello", "κόσμε", "\u0080", "\u07ff", "\u0800", "\uffff", "\U00010000", "\U0010ffff",
              "\ufeff BOM", "mixed ascii and €uro and 𝄞"]
INVALID_UTF8 = [
    b"\xff", b"\xfe", b"\x80", b"\xbf",  # bytes that never appear / lone continuation
    b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf",  # overlong encodings of "/"
    b"\xed\xa0\x80", b"\xed\xbf\xbf",  # UTF-16 surrogates
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",  # autobahn 6.3.1
    b"\xce",  # a sequence cut by the end of the message
    b"hello\xe2\x82",
]


@pytest.mark.parametrize("text", VALID_UTF8)
def test_valid_utf8_text_is_delivered_as_bytes(text):
    payload = text.encode()
    protocol = ServerProtocol(LIMIT)
    assert protocol.receive_data(frame(TEXT, payload)) == [Message(False, payload)]


@pytest.mark.parametrize("payload", INVALID_UTF8)
def test_invalid_utf8_text_is_1007(payload):
    assert_fails(frame(TEXT, payload), 1007)


@pytest.mark.parametrize("payload", INVALID_UTF8)
def test_invalid_utf8_in_fragmented_text_is_1007(payload):
    data = frame(TEXT, payload[:1], fin=False) + frame(CONT, payload[1:], fin=False) + frame(CONT, b"")
    assert_fails(data, 1007)


def test_binary_is_not_checked_for_utf8():
    protocol = ServerProtocol(LIMIT)
    assert protocol.receive_data(frame(BINARY, b"\xff\xfe")) == [Message(True, b"\xff\xfe")]


def test_invalid_fragmented_text_fails_at_the_fragment_that_breaks_it():
    protocol = ServerProtocol(LIMIT)
    assert protocol.receive_data(frame(TEXT, "κόσ".encode(), fin=False)) == []
    events = protocol.receive_data(frame(CONT, b"\xed\xa0\x80", fin=False))
    assert events == [ProtocolFailed(1007, "text message is not valid UTF-8")], "fail fast, before FIN"
    assert close_code_of(protocol.data_to_send()) == 1007


def test_a_code_point_split_across_fragments_is_valid_at_every_split():
    payload = "κόσμε 𝄞 €".encode()
    for cut in range(len(payload) + 1):
        protocol = ServerProtocol(LIMIT)
        data = frame(TEXT, payload[:cut], fin=False) + frame(CONT, payload[cut:])
        assert protocol.receive_data(data) == [Message(False, payload)], f"split at byte {cut}"


def test_text_in_one_byte_fragments():
    payload = "κόσμε 𝄞".encode()
    data = frame(TEXT, payload[:1], fin=False) + b"".join(frame(CONT, bytes([b]), fin=False) for b in payload[1:])
    protocol = ServerProtocol(LIMIT)
    assert protocol.receive_data(data + frame(CONT)) == [Message(False, payload)]



# Autobahn 6.4.3 and 6.4.4: one text frame in three reads, the invalid bytes in the middle one.
SPLIT_FRAMES = {
    "6.4.3": ["κόσμε".encode(), b"\xf4\x90\x80\x80", b"edited"],
    "6.4.4": ["κόσμε".encode() + b"\xf4", b"\x90", b"\x80\x80edited"],
}


@pytest.mark.parametrize("case", sorted(SPLIT_FRAMES))
def test_invalid_utf8_fails_at_the_read_that_brings_it_before_the_frame_is_complete(case):
    parts = SPLIT_FRAMES[case]
    data = frame(TEXT, b"".join(parts))
    header = len(data) - len(b"".join(parts))
    first, second = header + len(parts[0]), header + len(parts[0]) + len(parts[1])
    protocol = ServerProtocol(LIMIT)
    assert protocol.receive_data(data[:first]) == [], "valid so far: nothing to say"
    assert protocol.data_to_send() == b""
    events = protocol.receive_data(data[first:second])
    assert events == [ProtocolFailed(1007, "text message is not valid UTF-8")], (
        f"the read with the invalid bytes fails the connection, not the frame's last one: {events}")
    assert close_code_of(protocol.data_to_send()) == 1007
    assert protocol.receive_data(data[second:]) == [], "the rest of the frame is ignored"


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7])
@pytest.mark.parametrize("fragmented", [False, True])
def test_valid_text_in_reads_cut_anywhere_is_delivered_once_whole(chunk, fragmented):
    payload = "ascii first, then κόσμε 𝄞 € and ascii again".encode()
    if fragmented:  # the message's second frame is the one arriving read by read
        data = frame(TEXT, payload[:10], fin=False) + frame(CONT, payload[10:])
    else:
        data = frame(TEXT, payload)
    protocol = ServerProtocol(LIMIT)
    assert feed(protocol, data, chunk) == [Message(False, payload)], f"reads of {chunk} bytes"
    assert protocol.data_to_send() == b""
    # The connection carries on: the next message, in one read, is checked from scratch.
    assert protocol.receive_data(frame(TEXT, "é".encode())) == [Message(False, "é".encode())]


def test_a_code_point_cut_between_two_reads_is_valid_at_every_cut():
    payload = "κόσμε 𝄞 €".encode()
    data = frame(TEXT, payload)
    for cut in range(len(data) + 1):
        protocol = ServerProtocol(LIMIT)
        events = protocol.receive_data(data[:cut]) + protocol.receive_data(data[cut:])
        assert events == [Message(False, payload)], f"split at byte {cut}"


@pytest.mark.parametrize("payload", [p for p in INVALID_UTF8 if len(p) > 1])
def test_invalid_utf8_in_reads_of_one_byte_fails_before_the_frame_is_complete(payload):
    data = frame(TEXT, payload + b"-and more after it")
    protocol = ServerProtocol(LIMIT)
    for i in range(len(data)):
        events = protocol.receive_data(data[i:i + 1])
        if events:
            break
    assert events == [ProtocolFailed(1007, "text message is not valid UTF-8")]
    assert i < len(data) - 1, "failed by the bytes that made it invalid, not by the frame's end"


def test_invalid_utf8_in_a_continuation_frame_fails_at_its_read():
    protocol = ServerProtocol(LIMIT)
    assert protocol.receive_data(frame(TEXT, "κό".encode(), fin=False)) == []
    data = frame(CONT, b"\xce\xbc" + b"\xff" + b"x" * 100)
    assert protocol.receive_data(data[:6 + 2]) == []
    assert protocol.receive_data(data[6 + 2:6 + 3]) == [ProtocolFailed(1007, "text message is not valid UTF-8")]


def test_a_text_frame_in_many_reads_is_unmasked_and_decoded_in_one_pass():
    """Each read checks only its own bytes: a big frame in small reads costs linear time, not quadratic."""
    unmasked = []

    def counting_mask(key, data):
        unmasked.append(len(data))
        return websocket_mask(key, data)

    payload = ("é" * 32768).encode()
    protocol = ServerProtocol(LIMIT, mask=counting_mask)
    assert feed(protocol, frame(TEXT, payload), 1000) == [Message(False, payload)]
    # Once read by read, once more when the frame is whole (the message is those bytes).
    assert sum(unmasked) <= 2 * len(payload), f"{sum(unmasked)} bytes unmasked for a payload of {len(payload)}"


def test_binary_frames_in_many_reads_are_not_checked():
    protocol = ServerProtocol(LIMIT)
    assert feed(protocol, frame(BINARY, b"\xff\xfe" * 50), 7) == [Message(True, b"\xff\xfe" * 50)]


def test_a_compressed_text_frame_in_many_reads_is_checked_once_inflated():
    protocol = ServerProtocol(LIMIT, DeflateParams())
    data = frame(TEXT, compress_message(b"ok \xed\xa0\x80 and more"), rsv=4)
    assert feed(protocol, data[:-1], 3) == [], "compressed bytes are not UTF-8: nothing to check before inflating"
    assert protocol.receive_data(data[-1:]) == [ProtocolFailed(1007, "text message is not valid UTF-8")]

# --- Autobahn category 7: close -------------------------------------------------------------

VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


@pytest.mark.parametrize("code", VALID_CODES)
def test_a_valid_close_is_answered_with_the_same_code(code):
    protocol = ServerProtocol(LIMIT)
    assert protocol.receive_data(close_frame(code, b"bye")) == [CloseReceived(code, "bye")]
    assert protocol.state is ProtocolState.CLOSED
    assert protocol.close_received == (code, "bye") and protocol.close_sent == (code, "")
    assert not protocol.close_expected(), "the reply must go out before TCP closes"
    assert close_code_of(protocol.data_to_send()) == code
    assert protocol.close_expected()


def test_an_empty_close_is_answered_with_an_empty_close():
    protocol = ServerProtocol(LIMIT)
    assert protocol.receive_data(close_frame()) == [CloseReceived(1005, "")]
    assert server_frames(protocol.data_to_send()) == [(True, 0, CLOSE, b"")]
    assert protocol.close_expected()


@pytest.mark.parametrize("code", INVALID_CODES)
def test_an_invalid_close_code_is_a_protocol_error(code):
    assert_fails(close_frame(code), 1002)


def test_a_close_frame_with_one_byte_is_a_protocol_error():
    assert_fails(frame(CLOSE, b"\x03"), 1002)


def test_a_close_reason_that_is_not_utf8_is_1007():
    assert_fails(close_frame(1000, b"\xce\xba\xed\xa0\x80"), 1007)


def test_a_close_reason_of_123_bytes_is_valid():
    protocol = ServerProtocol(LIMIT)
    assert protocol.receive_data(close_frame(1000, b"r" * 123)) == [CloseReceived(1000, "r" * 123)]


def test_data_after_the_close_is_ignored():
    protocol = ServerProtocol(LIMIT)
    events = protocol.receive_data(close_frame(1000) + frame(TEXT, b"late") + frame(PING))
    assert events == [CloseReceived(1000, "")]
    assert protocol.receive_data(frame(PING, b"later")) == []
    assert close_code_of(protocol.data_to_send()) == 1000
    assert protocol.send_message(False, b"late reply") == b"" and protocol.send_ping() == b""


def test_server_initiated_close_completes_with_the_clients_close():
    protocol = ServerProtocol(LIMIT)
    assert close_code_of(protocol.send_close(4000, "bye")) == 4000
    assert protocol.state is ProtocolState.CLOSING and protocol.close_sent == (4000, "bye")
    assert not protocol.close_expected(), "wait for the client's close"
    # Messages the client sent before it saw the close are still delivered; a ping is not answered.
    assert protocol.receive_data(frame(TEXT, b"in flight") + frame(PING)) == [Message(False, b"in flight"), Ping(b"")]
    assert protocol.receive_data(close_frame(4000)) == [CloseReceived(4000, "")]
    assert protocol.data_to_send() == b"", "no second close frame"
    assert protocol.state is ProtocolState.CLOSED and protocol.close_expected()
    assert protocol.send_close(1000) == b""


def test_a_protocol_error_after_this_side_closed_sends_no_second_close():
    protocol = ServerProtocol(LIMIT)
    protocol.send_close(1001)
    assert protocol.receive_data(frame(5)) == [ProtocolFailed(1002, "reserved opcode 0x5")]
    assert protocol.data_to_send() == b"" and protocol.close_expected()


def test_send_close_refuses_codes_that_may_not_be_sent_and_cuts_long_reasons():
    protocol = ServerProtocol(LIMIT)
    for code in (999, 1004, 1006, 1015, 2000, 5000):
        with pytest.raises(ValueError, match=str(code)):
            protocol.send_close(code)
    assert protocol.state is ProtocolState.OPEN
    data = protocol.send_close(1000, "é" * 100)
    payload = server_frames(data)[0][3]
    assert len(payload) <= 125 and payload[2:].decode() == "é" * 61
    assert protocol.close_sent == (1000, "é" * 61)


def test_send_close_1005_sends_an_empty_close():
    protocol = ServerProtocol(LIMIT)
    assert server_frames(protocol.send_close(1005)) == [(True, 0, CLOSE, b"")]


def test_eof_without_a_close_frame():
    protocol = ServerProtocol(LIMIT)
    assert protocol.receive_data(frame(TEXT, b"part", fin=False) + frame(CONT, b"rest")[:3]) == []
    protocol.receive_eof()
    assert protocol.state is ProtocolState.CLOSED and protocol.close_received is None
    assert protocol.close_expected() and protocol.receive_data(frame(TEXT, b"x")) == []


# --- Autobahn category 9: limits, large messages, many frames, every split ----------------------

STREAM = b"".join([
    frame(TEXT, "κόσμε".encode()),
    frame(PING, b"p1"),
    frame(BINARY, os.urandom(126)),
    frame(TEXT, b"a" * 65536),
    frame(BINARY, b"frag", fin=False), frame(PING, b"p2"), frame(CONT, os.urandom(300), fin=False), frame(CONT, b"end"),
    frame(TEXT, "𝄞".encode()[:2], fin=False), frame(CONT, "𝄞".encode()[2:]),
    frame(PONG, b"unsolicited"),
    frame(BINARY, b""),
    close_frame(1000, b"done"),
])


def reference_stream() -> tuple[list, bytes]:
    """The events and the output of STREAM fed at once."""
    protocol = ServerProtocol(LIMIT)
    return protocol.receive_data(STREAM), protocol.data_to_send()


def test_the_reference_stream():
    events, out = reference_stream()
    assert [type(e) for e in events] == [Message, Ping, Message, Message, Ping, Message, Message, Pong, Message,
                                         CloseReceived]
    assert events[-1] == CloseReceived(1000, "done")
    assert [f[2] for f in server_frames(out)] == [PONG, PONG, CLOSE]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 125, 4096, 65536])
def test_the_same_events_whatever_the_chunks(chunk):
    expected_events, expected_out = reference_stream()
    protocol = ServerProtocol(LIMIT)
    assert feed(protocol, STREAM, chunk) == expected_events
    assert protocol.data_to_send() == expected_out


def test_the_same_events_at_every_split_in_two():
    expected_events, expected_out = reference_stream()
    head = STREAM[:400]  # every frame type and header size is in the first 400 bytes but the 64 KB one
    for cut in itertools.chain(range(len(head)), range(len(STREAM) - 400, len(STREAM))):
        protocol = ServerProtocol(LIMIT)
        events = protocol.receive_data(STREAM[:cut]) + protocol.receive_data(STREAM[cut:])
        assert events == expected_events, f"split at byte {cut}"
        assert protocol.data_to_send() == expected_out


@pytest.mark.parametrize("chunk", [None, 65536, 1 << 20])
def test_a_16_mb_message(chunk):
    payload = os.urandom(1 << 24)
    protocol = ServerProtocol(1 << 24)
    assert feed(protocol, frame(BINARY, payload), chunk) == [Message(True, payload)]


def test_a_message_in_1000_fragments_and_10000_small_messages():
    protocol = ServerProtocol(LIMIT)
    data = frame(BINARY, b"x" * 100, fin=False) + frame(CONT, b"x" * 100, fin=False) * 998 + frame(CONT, b"x" * 100)
    assert protocol.receive_data(data) == [Message(True, b"x" * 100_000)]
    many = b"".join(frame(TEXT, b"%d" % i) for i in range(10_000))
    assert feed(protocol, many, 4096) == [Message(False, b"%d" % i) for i in range(10_000)]


def test_a_message_of_exactly_the_limit_is_accepted():
    protocol = ServerProtocol(1000)
    assert protocol.receive_data(frame(BINARY, b"x" * 1000)) == [Message(True, b"x" * 1000)]
    data = frame(BINARY, b"x" * 500, fin=False) + frame(CONT, b"x" * 500)
    assert protocol.receive_data(data) == [Message(True, b"x" * 1000)]


def test_a_frame_over_the_limit_is_refused_from_its_header_alone():
    # 14 bytes announcing 2 GB: refused at once, nothing of the payload is awaited or buffered.
    header = frame(BINARY, length=1 << 31)[:14]
    assert_fails(header, 1009, protocol=ServerProtocol(LIMIT))
    assert_fails(frame(BINARY, length=1001)[:8], 1009, protocol=ServerProtocol(1000))


def test_a_fragmented_message_over_the_limit_is_1009_at_the_fragment_that_crosses_it():
    protocol = ServerProtocol(1000)
    assert protocol.receive_data(frame(TEXT, b"x" * 600, fin=False)) == []
    assert_fails(frame(CONT, length=401)[:8], 1009, protocol=protocol)


def test_a_64_bit_length_with_the_top_bit_set_is_a_protocol_error():
    assert_fails(struct.pack("!BBQ", 0x82, 0xFF, 1 << 63) + KEY, 1002, protocol=ServerProtocol(LIMIT))


def test_an_idle_protocol_is_small():
    protocol_count = 2000
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        protocols = [ServerProtocol(LIMIT) for _ in range(protocol_count)]
        for protocol in protocols:  # a message in, a message out, a ping: then idle
            protocol.receive_data(frame(TEXT, b"hello") + frame(PING))
            protocol.data_to_send()
            protocol.send_message(False, b"hi")
        per_connection = (tracemalloc.get_traced_memory()[0] - before) / protocol_count
    finally:
        tracemalloc.stop()
    assert len(protocols) == protocol_count
    print(f"\nidle ServerProtocol: {per_connection:.0f} bytes")  # docs/websocket.rst quotes it (run with -s)
    assert per_connection < 512, f"an idle ServerProtocol should hold < 512 bytes, holds {per_connection:.0f}"


# --- Autobahn categories 12 and 13: permessage-deflate ------------------------------------------

def compress_message(payload: bytes, compressor=None, wbits: int = 15) -> bytes:
    """What a client sends for one compressed message (RFC 7692 7.2.1)."""
    compressor = compressor or zlib.compressobj(6, zlib.DEFLATED, -wbits)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


def inflate_message(payload: bytes, decompressor=None, wbits: int = 15) -> bytes:
    decompressor = decompressor or zlib.decompressobj(-wbits)
    return decompressor.decompress(payload + b"\x00\x00\xff\xff")


@pytest.mark.parametrize("offer,response,expected", [
    ("permessage-deflate", "permessage-deflate; server_max_window_bits=12", DeflateParams()),
    ("permessage-deflate; client_max_window_bits",
     "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
     DeflateParams(client_max_window_bits=12)),
    ("permessage-deflate; client_max_window_bits=10",
     "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10",
     DeflateParams(client_max_window_bits=10)),
    ('permessage-deflate; client_max_window_bits="14"',
     "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
     DeflateParams(client_max_window_bits=12)),
    ("permessage-deflate; server_max_window_bits=10", "permessage-deflate; server_max_window_bits=10",
     DeflateParams(server_max_window_bits=10)),
    ("permessage-deflate; server_max_window_bits=15", "permessage-deflate; server_max_window_bits=12",
     DeflateParams()),
    ("permessage-deflate; server_no_context_takeover",
     "permessage-deflate; server_no_context_takeover; server_max_window_bits=12",
     DeflateParams(server_no_context_takeover=True)),
    ("permessage-deflate;client_no_context_takeover",
     "permessage-deflate; client_no_context_takeover; server_max_window_bits=12",
     DeflateParams(client_no_context_takeover=True)),
    # A browser's offer.
    ("permessage-deflate; client_max_window_bits, x-webkit-deflate-frame",
     "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
     DeflateParams(client_max_window_bits=12)),
    # Offers this server declines are skipped for the next one.
    ("x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=8, permessage-deflate",
     "permessage-deflate; server_max_window_bits=12", DeflateParams()),
    ("permessage-deflate; unknown=1, permessage-deflate; server_no_context_takeover",
     "permessage-deflate; server_no_context_takeover; server_max_window_bits=12",
     DeflateParams(server_no_context_takeover=True)),
])
def test_negotiation(offer, response, expected):
    assert negotiate_deflate(offer, True) == (response, expected)


@pytest.mark.parametrize("offer", [
    "", "x-webkit-deflate-frame", "permessage-deflate; unknown", "permessage-deflate; server_max_window_bits",
    "permessage-deflate; server_max_window_bits=8", "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; server_max_window_bits=09", "permessage-deflate; client_max_window_bits=7",
    "permessage-deflate; client_max_window_bits=abc", "permessage-deflate; server_no_context_takeover=1",
    "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
    'permessage-deflate; client_max_window_bits="10', "permessage-deflate; client_max_window_bits=",
    "permessage-deflate; ; ",
])
def test_negotiation_declines_malformed_offers(offer):
    assert negotiate_deflate(offer, True) is None


def test_negotiation_is_off_unless_enabled_and_honours_options():
    assert negotiate_deflate("permessage-deflate", False) is None
    assert negotiate_deflate("permessage-deflate", None) is None
    response, params = negotiate_deflate("permessage-deflate; client_max_window_bits", {
        "server_max_window_bits": 15, "client_max_window_bits": 15, "server_no_context_takeover": True,
        "client_no_context_takeover": True, "compress_level": 1, "mem_level": 9, "min_size": 0})
    assert response == "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    assert params == DeflateParams(15, 15, True, True, 1, 9, 0)
    assert negotiate_deflate("permessage-deflate", {"min_size": 10})[1] is negotiate_deflate(
        "permessage-deflate", {"min_size": 10})[1], "connections that agree on the same thing share the params"


@pytest.mark.parametrize("options,message", [
    ({"window_bits": 10}, "unknown permessage-deflate option"),
    ({"server_max_window_bits": 8}, "from 9 to 15"),
    ({"client_max_window_bits": 16}, "from 8 to 15"),
    ({"mem_level": 0}, "from 1 to 9"),
    ({"compress_level": "9"}, "from 0 to 9"),
    ({"server_no_context_takeover": 1}, "True or False"),
    ({"min_size": -1}, "min_size"),
    ("yes", "True, False or a dict"),
])
def test_bad_options_are_refused_with_the_reason(options, message):
    with pytest.raises(ValueError, match=message):
        deflate_settings(options)


def test_defaults():
    assert deflate_settings(True) == DEFLATE_DEFAULTS and deflate_settings(True) is not DEFLATE_DEFAULTS
    assert deflate_settings({}) == DEFLATE_DEFAULTS


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65536, 300_000])
def test_a_compressed_message_is_inflated(size):
    payload = os.urandom(size // 2) + b"a" * (size - size // 2)
    protocol = ServerProtocol(LIMIT, DeflateParams())
    assert protocol.receive_data(frame(BINARY, compress_message(payload), rsv=4)) == [Message(True, payload)]


def test_a_compressed_message_in_fragments_and_an_uncompressed_one_between():
    payload = "compressed κόσμε ".encode() * 50
    data = compress_message(payload)
    protocol = ServerProtocol(LIMIT, DeflateParams())
    wire_data = (frame(TEXT, data[:3], fin=False, rsv=4) + frame(PING, b"p") + frame(CONT, data[3:10], fin=False)
                 + frame(CONT, data[10:]) + frame(TEXT, b"plain"))
    assert feed(protocol, wire_data, 5) == [Ping(b"p"), Message(False, payload), Message(False, b"plain")]


def test_context_takeover_on_the_clients_messages():
    client = zlib.compressobj(6, zlib.DEFLATED, -15)
    protocol = ServerProtocol(LIMIT, DeflateParams())
    payload = b"the same sentence, again and again. " * 10
    first, second = compress_message(payload, client), compress_message(payload, client)
    assert len(second) < len(first) / 4, "the second message refers to the first"
    assert protocol.receive_data(frame(BINARY, first, rsv=4) + frame(BINARY, second, rsv=4)) == [
        Message(True, payload)] * 2


def test_client_no_context_takeover():
    protocol = ServerProtocol(LIMIT, DeflateParams(client_no_context_takeover=True))
    payload = b"each message on its own " * 10
    for _ in range(3):
        assert protocol.receive_data(frame(BINARY, compress_message(payload), rsv=4)) == [Message(True, payload)]


@pytest.mark.parametrize("server_no_context_takeover", [False, True])
def test_server_compression_and_its_context_takeover(server_no_context_takeover):
    params = DeflateParams(server_max_window_bits=10, server_no_context_takeover=server_no_context_takeover)
    protocol = ServerProtocol(LIMIT, params)
    payload = b'{"type": "chat", "text": "hello, everybody"}' * 5
    client = zlib.decompressobj(-10)
    sizes = []
    for _ in range(3):
        [(fin, rsv, opcode, data)] = server_frames(protocol.send_message(False, payload))
        assert (fin, rsv, opcode) == (True, 4, TEXT), "RSV1 set on a compressed message"
        if server_no_context_takeover:  # each message inflates with a fresh decompressor
            assert inflate_message(data, wbits=10) == payload
        else:
            assert inflate_message(data, client) == payload
        sizes.append(len(data))
    if server_no_context_takeover:
        assert sizes[0] == sizes[1] == sizes[2]
    else:
        assert sizes[1] < sizes[0] / 4, "with context takeover the second message refers to the first"


def test_messages_under_min_size_are_sent_uncompressed():
    protocol = ServerProtocol(LIMIT, DeflateParams(min_size=64))
    assert server_frames(protocol.send_message(True, b"x" * 63)) == [(True, 0, BINARY, b"x" * 63)]
    [(_, rsv, _, data)] = server_frames(protocol.send_message(True, b"x" * 64))
    assert rsv == 4 and inflate_message(data, wbits=12) == b"x" * 64
    empty = ServerProtocol(LIMIT, DeflateParams(min_size=0)).send_message(True, b"")
    [(_, rsv, _, data)] = server_frames(empty)
    assert rsv == 4 and inflate_message(data) == b""


def test_compressed_text_that_is_not_utf8_is_1007():
    protocol = ServerProtocol(LIMIT, DeflateParams())
    assert_fails(frame(TEXT, compress_message(b"ok \xed\xa0\x80"), rsv=4), 1007, protocol=protocol)


def test_data_that_does_not_inflate_is_1007():
    protocol = ServerProtocol(LIMIT, DeflateParams())
    assert_fails(frame(BINARY, b"\xff\xff\xff\xff not deflate", rsv=4), 1007, protocol=protocol)


def test_a_compressed_message_that_inflates_past_the_limit_is_1009():
    payload = b"x" * 1001
    assert_fails(frame(BINARY, compress_message(payload), rsv=4), 1009, protocol=ServerProtocol(1000, DeflateParams()))
    protocol = ServerProtocol(1000, DeflateParams())
    assert protocol.receive_data(frame(BINARY, compress_message(b"x" * 1000), rsv=4)) == [Message(True, b"x" * 1000)]
    data = compress_message(payload)
    assert_fails(frame(BINARY, data[:5], fin=False, rsv=4) + frame(CONT, data[5:]), 1009,
                 protocol=ServerProtocol(1000, DeflateParams()))


def test_compressed_bytes_on_the_wire_are_bounded_too():
    # Empty stored blocks inflate to nothing: a message of them must still end.
    empty_blocks = b"\x00\x00\x00\xff\xff" * 300
    protocol = ServerProtocol(1000, DeflateParams())
    assert_fails(frame(BINARY, empty_blocks, rsv=4), 1009, protocol=protocol)


def test_a_zip_bomb_costs_nothing():
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(1 << 20)
    bomb = b"".join(compressor.compress(zeros) for _ in range(100)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    bomb = bomb[:-4]
    assert len(bomb) < 200_000, f"100 MB of zeros compress to {len(bomb)} bytes"
    data = frame(BINARY, bomb, rsv=4)
    del zeros
    protocol = ServerProtocol(LIMIT, DeflateParams())
    gc.collect()
    tracemalloc.start()
    try:
        events = protocol.receive_data(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert events == [ProtocolFailed(1009, f"message over {LIMIT} bytes")]
    assert peak < 4 * LIMIT, f"inflating a 100 MB bomb against a 1 MB limit peaked at {peak} bytes"


def idle_bytes(params: DeflateParams, count: int = 200) -> float:
    """Memory per idle connection after one compressed message each way."""
    message = frame(BINARY, compress_message(b"hello, compressed world " * 10, wbits=params.client_max_window_bits),
                    rsv=4)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        protocols = [ServerProtocol(LIMIT, params) for _ in range(count)]
        for protocol in protocols:
            assert protocol.receive_data(message)[0].binary
            protocol.send_message(True, b"a reply long enough to be compressed " * 4)
        return (tracemalloc.get_traced_memory()[0] - before) / len(protocols)
    finally:
        tracemalloc.stop()


def test_without_context_takeover_an_idle_connection_holds_no_zlib_state():
    params = DeflateParams(server_no_context_takeover=True, client_no_context_takeover=True)
    per_connection = idle_bytes(params)
    print(f"\nidle connection, compression without context takeover: {per_connection:.0f} bytes")
    assert per_connection < 512, f"no zlib state should stay on an idle connection: {per_connection:.0f} bytes"


def test_with_context_takeover_an_idle_connection_keeps_its_zlib_state():
    # The figures docs/websocket.rst quotes come from here (print them with -s).
    default = idle_bytes(DeflateParams(client_max_window_bits=12))
    zlib_default = idle_bytes(DeflateParams(server_max_window_bits=15, client_max_window_bits=15, mem_level=8))
    print(f"\nidle connection with context takeover: defaults {default:.0f} bytes, "
          f"zlib's defaults (15 bits, memLevel 8) {zlib_default:.0f} bytes")
    assert 20_000 < default < 100_000, f"expected tens of KB with the defaults, got {default:.0f}"
    assert zlib_default > 250_000, f"expected over 250 KB with zlib's defaults, got {zlib_default:.0f}"
