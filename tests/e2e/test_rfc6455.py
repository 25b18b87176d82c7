"""RFC 6455 (and RFC 7692) end to end: raw frames over a TCP socket against a running run_wsserver.

The Autobahn|Testsuite's case categories are the checklist (1 framing,
2 pings and pongs, 3 reserved bits, 4 opcodes, 5 fragmentation, 6 UTF-8,
7 close, 9 limits, 12/13 permessage-deflate); the suite itself needs
Python 2. Each failure must give the client a close frame with the
documented code and then the end of the TCP connection. The same cases are
unit-tested on bytes in tests/unit/edge/test_protocol.py.

Tornado's own WebSocket code, which the edge used before it spoke the
protocol itself (django_ws.edge.protocol), failed 39 of these: it dropped
the TCP connection without a close frame on most errors, echoed invalid
close codes, accepted unmasked frames and had no permessage-deflate here.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import zlib

import pytest

from django_ws.edge.protocol import accept_key
from django_ws.testing import WebSocketServer
from tests.conftest import ROOT, start_server
from tests.unit.edge.test_protocol import (
    BINARY,
    CLOSE,
    CONT,
    INVALID_CODES,
    INVALID_UTF8,
    PING,
    PONG,
    TEXT,
    VALID_CODES,
    close_frame,
    compress_message,
    frame,
)

LIMIT = 1024 * 1024  # WS_MAX_MESSAGE_SIZE's default, which the test project keeps


@pytest.fixture(scope="module")
def edge(server_db):
    srv = start_server(server_db)
    yield srv
    assert srv.stop() == 0, "run_wsserver did not exit with 0 on SIGTERM"


@pytest.fixture(scope="module")
def compressing_edge(server_db):
    srv = WebSocketServer(settings="tests.project.compression_settings", cwd=ROOT, fail_on_warnings=True,
                          env={"DJANGO_WS_TEST_DB": server_db}).start()
    yield srv
    assert srv.stop() == 0, "run_wsserver did not exit with 0 on SIGTERM"


class RawClient:
    """A WebSocket client that sends whatever bytes it is given, after a handshake done by hand."""

    def __init__(self, server: WebSocketServer, route: str = "echo", extensions: str | None = None,
                 timeout: float = 10.0, early: bytes = b""):
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {server.prefix}/{route} HTTP/1.1", f"Host: 127.0.0.1:{server.port}",
                 "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                 "Sec-WebSocket-Version: 13"]
        if extensions:
            lines.append(f"Sec-WebSocket-Extensions: {extensions}")
        # ``early``: frames in the same packet as the request, before the 101 (as a hasty client may).
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + early)
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            assert chunk, f"the server closed during the handshake: {self.buffer!r}"
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status, *header_lines = head.decode("latin-1").split("\r\n")
        assert status.split()[1] == "101", f"expected 101 Switching Protocols, got {status!r}"
        self.headers = {name.strip().lower(): value.strip()
                        for name, _, value in (line.partition(":") for line in header_lines)}
        assert self.headers.get("sec-websocket-accept") == accept_key(key), f"bad accept in {self.headers}"

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"the server closed the TCP connection with {self.buffer!r} unread")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_frame(self) -> tuple[bool, int, int, bytes]:
        """The server's next frame as (fin, rsv, opcode, payload)."""
        first, second = self._read(2)
        assert not second & 0x80, "a server frame must not be masked"
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", self._read(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", self._read(8))[0]
        return bool(first & 0x80), (first >> 4) & 7, first & 0x0F, self._read(size)

    def expect_close(self, code: int | None) -> None:
        """The next frame is a close frame with ``code`` (None: empty), and then the TCP connection ends."""
        fin, rsv, opcode, payload = self.read_frame()
        assert (fin, rsv, opcode) == (True, 0, CLOSE), f"expected a close frame, got {(fin, rsv, opcode, payload)}"
        received = struct.unpack("!H", payload[:2])[0] if payload else None
        assert received == code, f"expected close code {code}, got {received} ({payload[2:]!r})"
        self.expect_eof()

    def expect_eof(self) -> None:
        try:
            rest = self.sock.recv(65536)
        except ConnectionResetError:
            rest = b""
        assert rest == b"", f"expected the end of the TCP connection after the close frame, got {rest!r}"

    def expect_echo(self, opcode: int, payload: bytes) -> None:
        got = self.read_frame()
        assert got == (True, 0, opcode, payload), f"expected the echo of {opcode}, {payload[:40]!r}: {got[:3]}"

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def client(edge):
    client = RawClient(edge)
    yield client
    client.close()


# --- Autobahn category 1: framing -----------------------------------------------------------

@pytest.mark.parametrize("size", [0, 125, 126, 127, 65535, 65536, LIMIT])
@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_echo_of_each_length(client, opcode, size):
    payload = b"*" * size if opcode == TEXT else os.urandom(size)
    client.send(frame(opcode, payload))
    client.expect_echo(opcode, payload)


def test_unmasked_frame_is_1002(client):
    client.send(frame(TEXT, b"hello", masked=False))
    client.expect_close(1002)


# --- Autobahn category 2: pings and pongs ---------------------------------------------------

@pytest.mark.parametrize("payload", [b"", b"ping", bytes(range(125))])
def test_ping_gets_an_identical_pong(client, payload):
    client.send(frame(PING, payload))
    assert client.read_frame() == (True, 0, PONG, payload)


def test_ping_of_126_bytes_is_1002(client):
    client.send(frame(PING, b"x" * 126))
    client.expect_close(1002)


def test_unsolicited_pong_is_ignored(client):
    client.send(frame(PONG, b"unsolicited") + frame(TEXT, b"after"))
    client.expect_echo(TEXT, b"after")


def test_ping_between_fragments_is_answered_before_the_message(client):
    client.send(frame(TEXT, b"frag", fin=False) + frame(PING, b"between"))
    assert client.read_frame() == (True, 0, PONG, b"between")
    client.send(frame(CONT, b"ment"))
    client.expect_echo(TEXT, b"fragment")


# --- Autobahn category 3: reserved bits -----------------------------------------------------

@pytest.mark.parametrize("rsv", range(1, 8))
def test_reserved_bits_are_1002(client, rsv):
    client.send(frame(TEXT, b"before"))
    client.expect_echo(TEXT, b"before")
    client.send(frame(TEXT, b"x", rsv=rsv))
    client.expect_close(1002)


# --- Autobahn category 4: opcodes -----------------------------------------------------------

@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes_are_1002(client, opcode):
    client.send(frame(opcode, b"x"))
    client.expect_close(1002)


# --- Autobahn category 5: fragmentation -----------------------------------------------------

def test_fragmented_message_with_control_frames_between(client):
    client.send(frame(BINARY, b"a", fin=False) + frame(PONG) + frame(CONT, b"b", fin=False) + frame(CONT, b"c"))
    client.expect_echo(BINARY, b"abc")


@pytest.mark.parametrize("opcode", [PING, PONG])
def test_fragmented_control_frame_is_1002(client, opcode):
    client.send(frame(opcode, b"x", fin=False) + frame(CONT, b"y"))
    client.expect_close(1002)


def test_continuation_with_nothing_to_continue_is_1002(client):
    client.send(frame(CONT, b"orphan"))
    client.expect_close(1002)


def test_new_data_frame_inside_a_fragmented_message_is_1002(client):
    client.send(frame(TEXT, b"open", fin=False) + frame(BINARY, b"new"))
    client.expect_close(1002)


# --- Autobahn category 6: UTF-8 -------------------------------------------------------------

def test_valid_utf8_is_echoed(client):
    payload = "κόσμε 𝄞 €".encode()
    client.send(frame(TEXT, payload[:1], fin=False) + frame(CONT, payload[1:]))
    client.expect_echo(TEXT, payload)


@pytest.mark.parametrize("payload", INVALID_UTF8)
def test_invalid_utf8_is_1007(client, payload):
    client.send(frame(TEXT, payload))
    client.expect_close(1007)


def test_invalid_utf8_fails_at_its_fragment_before_the_message_ends(edge):
    client = RawClient(edge, timeout=5.0)  # the close must come without the rest of the message
    try:
        client.send(frame(TEXT, b"valid", fin=False) + frame(CONT, b"\xed\xa0\x80", fin=False))
        client.expect_close(1007)
    finally:
        client.close()



@pytest.mark.parametrize("bad", [b"\xf4\x90\x80\x80", b"\xf4"], ids=["6.4.3", "6.4.4"])
def test_invalid_utf8_fails_inside_a_frame_before_the_frame_is_complete(edge, bad):
    """Autobahn 6.4.3/6.4.4: one text frame in reads; the close comes though the frame's end never does."""
    client = RawClient(edge, timeout=5.0)
    try:
        data = frame(TEXT, "κόσμε".encode() + b"\xf4\x90\x80\x80" + b"edited")
        head = len(data) - len(b"edited") - 4  # the frame up to its invalid bytes
        client.send(data[:head])
        client.send(data[head:head + len(bad)])  # "\xf4" alone may still be valid: 6.4.4 fails at "\x90"
        if len(bad) == 1:
            client.send(data[head + 1:head + 2])
        client.expect_close(1007)
    finally:
        client.close()


def test_a_character_cut_between_reads_inside_a_frame_is_echoed(client):
    payload = "κόσμε 𝄞 €".encode()
    data = frame(TEXT, payload)
    cut = len(data) - len("𝄞 €".encode()) + 2  # inside the 4 bytes of 𝄞
    client.send(data[:cut])
    client.send(data[cut:])
    client.expect_echo(TEXT, payload)

# --- Autobahn category 7: close -------------------------------------------------------------

@pytest.mark.parametrize("code", VALID_CODES)
def test_valid_close_code_is_echoed(client, code):
    client.send(close_frame(code, b"bye"))
    client.expect_close(code)


def test_empty_close_is_answered_with_an_empty_close(client):
    client.send(close_frame())
    client.expect_close(None)


@pytest.mark.parametrize("code", INVALID_CODES)
def test_invalid_close_code_is_1002(client, code):
    client.send(close_frame(code))
    client.expect_close(1002)


def test_close_with_one_byte_is_1002(client):
    client.send(frame(CLOSE, b"\x03"))
    client.expect_close(1002)


def test_close_reason_not_utf8_is_1007(client):
    client.send(close_frame(1000, b"\xce\xba\xed\xa0\x80"))
    client.expect_close(1007)


def test_frames_after_the_close_are_ignored(client):
    client.send(close_frame(1000) + frame(TEXT, b"after close") + frame(PING, b"after close"))
    client.expect_close(1000)


# --- Autobahn category 9: limits, many frames, any split -------------------------------------

def test_message_over_the_limit_is_1009(client):
    client.send(frame(BINARY, b"x" * (LIMIT + 1)))
    client.expect_close(1009)


def test_fragmented_message_over_the_limit_is_1009(client):
    client.send(frame(BINARY, b"x" * LIMIT, fin=False) + frame(CONT, b"x"))
    client.expect_close(1009)


def test_a_huge_frame_header_is_refused_without_its_payload(client):
    client.send(frame(BINARY, length=1 << 40)[:14])
    client.expect_close(1009)


def test_a_thousand_messages_in_order(client):
    client.send(b"".join(frame(TEXT, b"%d" % i) for i in range(1000)))
    for i in range(1000):
        client.expect_echo(TEXT, b"%d" % i)


def test_frames_sent_with_the_handshake_request_are_read_after_it(edge):
    """What the edge's HTTP server read past the request's headers reaches the WebSocket, first and in order."""
    client = RawClient(edge, early=b"".join(frame(TEXT, b"early %d" % i) for i in range(3)))
    try:
        client.send(frame(TEXT, b"after the 101"))
        for i in range(3):
            client.expect_echo(TEXT, b"early %d" % i)
        client.expect_echo(TEXT, b"after the 101")
    finally:
        client.close()


def test_frames_sent_one_byte_at_a_time(client):
    data = frame(TEXT, b"slow", fin=False) + frame(PING, b"p") + frame(CONT, "κόσμε".encode() * 20)
    for i in range(len(data)):
        client.send(data[i:i + 1])
    assert client.read_frame() == (True, 0, PONG, b"p")
    client.expect_echo(TEXT, b"slow" + "κόσμε".encode() * 20)


# --- Autobahn categories 12 and 13: permessage-deflate ------------------------------------------

def test_compressed_echo_with_context_takeover(compressing_edge):
    client = RawClient(compressing_edge, extensions="permessage-deflate; client_max_window_bits")
    try:
        response = client.headers.get("sec-websocket-extensions", "")
        assert response == "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12", response
        compressor = zlib.compressobj(6, zlib.DEFLATED, -12)
        decompressor = zlib.decompressobj(-12)
        payload = b'{"type": "chat", "text": "hello, compressed world"}' * 4
        for _ in range(3):
            client.send(frame(TEXT, compress_message(payload, compressor), rsv=4))
            fin, rsv, opcode, data = client.read_frame()
            assert (fin, rsv, opcode) == (True, 4, TEXT), "expected a compressed text frame"
            assert decompressor.decompress(data + b"\x00\x00\xff\xff") == payload
    finally:
        client.close()


def test_compressed_zip_bomb_is_1009(compressing_edge):
    client = RawClient(compressing_edge, extensions="permessage-deflate")
    try:
        assert client.headers.get("sec-websocket-extensions", "").startswith("permessage-deflate")
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        zeros = bytes(1 << 20)
        bomb = b"".join(compressor.compress(zeros) for _ in range(100)) + compressor.flush(zlib.Z_SYNC_FLUSH)
        client.send(frame(BINARY, bomb[:-4], rsv=4))
        client.expect_close(1009)
    finally:
        client.close()


def test_without_an_offer_nothing_is_compressed(compressing_edge):
    client = RawClient(compressing_edge)
    try:
        assert "sec-websocket-extensions" not in client.headers
        client.send(frame(TEXT, b"plain " * 20))
        client.expect_echo(TEXT, b"plain " * 20)
    finally:
        client.close()
