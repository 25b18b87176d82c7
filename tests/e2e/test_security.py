"""Request context, authentication and defences: what a hostile browser, local user or network peer gets.

docs/security.rst is the threat model these tests hold the server to.
"""

import base64
import json
import time
import os
import re
import socket
import struct
import subprocess
import sys
import threading

import pytest
import zmq
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from django_ws import group_members, security, wire
from django_ws.testing.server import free_port
from tests import procinfo
from tests.conftest import ROOT, SETTINGS, Observer, django_script, start_server
from tests.e2e.test_modes import stats, wait_until

# -- helpers ---------------------------------------------------------------------------

LOGIN_SCRIPT = """
from django.contrib.auth import get_user_model
from django.test import Client
User = get_user_model()
user = User.objects.filter(username=USERNAME).first()
if user is None:
    make = User.objects.create_superuser if SUPERUSER else User.objects.create_user
    user = make(USERNAME, password="not-used")
client = Client()
client.force_login(user)
print(client.cookies["sessionid"].value)
"""


def login(server_db, username: str, superuser: bool = False) -> str:
    """Create ``username`` in the servers' database and log it in; return the session key.

    Run in a subprocess: this process's database is pytest-django's, not the
    sqlite file (DJANGO_WS_TEST_DB) the servers use.
    """
    return django_script(server_db, f"USERNAME = {username!r}\nSUPERUSER = {superuser!r}\n{LOGIN_SCRIPT}")


@pytest.fixture(scope="module")
def sessions(server_db):
    return {"alice": login(server_db, "alice"), "root": login(server_db, "root", superuser=True)}


def refused_status(url: str, **kwargs) -> int:
    with pytest.raises(InvalidStatus) as refused:
        connect(url, **kwargs).close()
    return refused.value.response.status_code


class RawClient:
    """A WebSocket client that sends whatever frames it is told, valid or not."""

    def __init__(self, server, path: str = "echo", *, rcvbuf: int | None = None):
        self.sock = socket.socket()
        if rcvbuf:  # before connect, so the TCP window stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", server.port))
        self.sock.settimeout(10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {server.prefix}/{path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        return chunk

    def send_frame(self, opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, mask: bool = True,
                   length: int | None = None) -> None:
        length = len(payload) if length is None else length
        header = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
        bit = 0x80 if mask else 0
        if length < 126:
            header += bytes([bit | length])
        elif length < 65536:
            header += bytes([bit | 126]) + struct.pack("!H", length)
        else:
            header += bytes([bit | 127]) + struct.pack("!Q", length)
        if mask:
            key = os.urandom(4)
            header += key
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + payload)

    def read_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame from the server; EOFError if the socket closed."""
        while len(self.buffer) < 2:
            self.buffer += self._recv()
        opcode, length = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F
        start = 2
        if length == 126:
            start, length = 4, None
        elif length == 127:
            start, length = 10, None
        while len(self.buffer) < start:
            self.buffer += self._recv()
        if length is None:
            length = struct.unpack("!H" if start == 4 else "!Q", self.buffer[2:start])[0]
        while len(self.buffer) < start + length:
            self.buffer += self._recv()
        payload, self.buffer = self.buffer[start:start + length], self.buffer[start + length:]
        return opcode, payload

    def close_code(self) -> int | None:
        """Read until the server's close frame: its code; None if the socket ended without one."""
        try:
            while True:
                opcode, payload = self.read_frame()
                if opcode == 0x8:
                    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        except (EOFError, ConnectionResetError):
            return None

    def close(self) -> None:
        self.sock.close()

    def _recv_or_eof(self) -> bytes:
        return self.buffer or self.sock.recv(65536)


def raw_http(server, request: bytes) -> bytes:
    """Send raw bytes to the HTTP port; return what came back until the server closed or went quiet."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(request)
        sock.settimeout(3)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and answer.startswith(b"HTTP/1.1"):
                    length = re.search(rb"Content-Length: (\d+)", answer)
                    body = answer.split(b"\r\n\r\n", 1)[1]
                    if length is None or len(body) >= int(length[1]):
                        break
        except (TimeoutError, ConnectionResetError):
            pass
        return answer


def assert_still_serving(server, worker_pids) -> None:
    """Faults stay local: the server answers, and no process died or was replaced."""
    with connect(server.url("echo")) as ws:
        ws.send("still serving")
        assert ws.recv(timeout=10) == "still serving"
    assert server.process.poll() is None, "the edge process exited"
    assert server.worker_pids == worker_pids, "a worker was restarted"
    assert all(procinfo.alive(pid) for pid in worker_pids)
    crashes = [line for line in server.lines if "exited" in line or "Traceback" in line or "Uncaught" in line]
    assert not crashes, crashes


@pytest.fixture(scope="module")
def edge(server_db):
    """One threaded server for the defences that live in the edge."""
    srv = start_server(server_db)
    yield srv
    assert srv.stop() == 0


# -- request context ---------------------------------------------------------------------


def test_session_cookie_gives_the_handler_its_user(server, sessions):
    with connect(server.url("whoami"), additional_headers={"Cookie": f"sessionid={sessions['alice']}"}) as ws:
        ws.send("{}")
        assert json.loads(ws.recv(timeout=10))["user"] == "alice"
    with connect(server.url("whoami")) as ws:
        ws.send("{}")
        assert json.loads(ws.recv(timeout=10))["user"] is None  # AnonymousUser
    with connect(server.url("whoami"), additional_headers={"Cookie": "sessionid=forgedforgedforgedforged"}) as ws:
        ws.send("{}")
        assert json.loads(ws.recv(timeout=10))["user"] is None


def test_login_required_refuses_anonymous_clients_with_403(server, sessions):
    assert refused_status(server.url("private")) == 403
    assert refused_status(server.url("private"), additional_headers={"Cookie": "sessionid=forgedforgedforged"}) == 403
    with connect(server.url("private"), additional_headers={"Cookie": f"sessionid={sessions['alice']}"}) as ws:
        ws.send("{}")
        assert json.loads(ws.recv(timeout=10))["user"] == "alice"


def test_permission_required_refuses_users_without_the_permission(server, sessions):
    assert refused_status(server.url("perm")) == 403
    assert refused_status(server.url("perm"), additional_headers={"Cookie": f"sessionid={sessions['alice']}"}) == 403
    with connect(server.url("perm"), additional_headers={"Cookie": f"sessionid={sessions['root']}"}) as ws:
        ws.send("{}")
        assert json.loads(ws.recv(timeout=10))["user"] == "root"


def test_path_query_headers_and_cookies_reach_self_request(server):
    url = server.url("request/tag1") + "?a=1&a=2&b=x%20y&empty="
    headers = {"X-Custom": "custom value", "Cookie": "flavour=mint; other=1", "X_Custom": "smuggled"}
    with connect(url, additional_headers=headers) as ws:
        ws.send("{}")
        info = json.loads(ws.recv(timeout=10))
    assert info["path"] == f"{server.prefix}/request/tag1"
    assert info["GET"] == {"a": ["1", "2"], "b": ["x y"], "empty": [""]}
    assert info["x_custom"] == info["meta_x_custom"] == "custom value"  # not overwritten by X_Custom
    assert info["cookies"] == {"flavour": "mint", "other": "1"}
    assert info["server_name"] == "127.0.0.1"
    assert info["remote_addr"] == "127.0.0.1"
    assert info["scheme"] == "http"


def test_a_client_that_sends_its_headers_too_slowly_is_dropped(make_server):
    import socket

    srv = make_server(env={"DJANGO_WS_HEADER_TIMEOUT": "1"})
    slow = socket.create_connection(("127.0.0.1", srv.port))
    slow.settimeout(30)
    slow.sendall(f"GET {srv.prefix}/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())  # and never the rest
    started = time.monotonic()
    assert slow.recv(1024) == b"", "the edge closed the half-sent handshake"
    assert time.monotonic() - started < 15, "dropped after WS_HEADER_TIMEOUT, not Tornado's hour"
    slow.close()
    with connect(srv.url("echo")) as ws:  # and serves everyone else meanwhile
        ws.send("fine")
        assert ws.recv(timeout=10) == "fine"


def test_proxy_headers_are_believed_only_when_the_setting_says_so(make_server):
    spoof = {"X-Forwarded-For": "6.6.6.6", "X-Scheme": "https"}
    for trusted, expected in ((False, ("127.0.0.1", "http")), (True, ("6.6.6.6", "https"))):
        srv = make_server(env={"DJANGO_WS_TRUST_PROXY_HEADERS": "1"} if trusted else {})
        with connect(srv.url("request/proxy"), additional_headers=spoof) as ws:
            ws.send("{}")
            info = json.loads(ws.recv(timeout=10))
        assert (info["remote_addr"], info["scheme"]) == expected, f"WS_TRUST_PROXY_HEADERS={trusted}"


def test_on_connect_refuses_with_the_status_of_handshake_denied(server):
    assert refused_status(server.url("token")) == 401
    assert refused_status(server.url("token") + "?token=wrong") == 401
    with connect(server.url("token") + "?token=letmein") as ws:
        ws.send("hi")
        assert ws.recv(timeout=10) == "welcome:hi"


def test_the_handler_selects_a_subprotocol_from_the_offered_ones(server):
    with connect(server.url("subprotocol"), subprotocols=["a", "b"]) as ws:
        assert ws.subprotocol == "b"
        ws.send("x")
        assert ws.recv(timeout=10) == "x"
    with connect(server.url("subprotocol") + "?pick=a", subprotocols=["a", "b"]) as ws:
        assert ws.subprotocol == "a"
    with connect(server.url("subprotocol") + "?pick=c", subprotocols=["a", "b"]) as ws:
        assert ws.subprotocol is None
    # A handler that names one the client did not offer is a bug: 500, not a protocol violation.
    assert refused_status(server.url("subprotocol") + "?pick=not-offered", subprotocols=["a", "b"]) == 500


# -- Origin -------------------------------------------------------------------------------

FOREIGN_ORIGINS = [
    "http://evil.example",
    "https://evil.example:443",
    "null",  # sandboxed iframes, file:// pages
    "http://localhost.evil.example",
    "http://127.0.0.1.evil.example",
    "http://localhost@evil.example",
    "http://evil.example/http://localhost",
    "not a url",
]


def test_foreign_origins_get_403_and_never_reach_a_handler(edge):
    observer = Observer(edge)
    refused_before = stats(edge)["refused"].get("403", 0)
    for i, origin in enumerate(FOREIGN_ORIGINS):
        assert refused_status(edge.url(f"connectlog/refused-{i}"), origin=origin) == 403, origin
    # Old clients' Sec-WebSocket-Origin is checked too.
    status = refused_status(edge.url("connectlog/refused-old"), additional_headers={"Sec-WebSocket-Origin": "http://evil.example"})
    assert status == 403
    assert stats(edge)["refused"]["403"] == refused_before + len(FOREIGN_ORIGINS) + 1
    for tag, origin in [("same-host", "http://localhost:8000"), ("ip", "https://127.0.0.1"),
                        ("upper", "HTTP://LOCALHOST"), ("no-origin", None)]:
        with connect(edge.url(f"connectlog/{tag}"), origin=origin) as ws:
            ws.send("x")
            assert ws.recv(timeout=10) == "x"
        observer.wait(event="connect", tag=tag)
    # Had any refused handshake reached a handler, its report would have been
    # written to the observer before the refusal, so before these.
    assert not [r for r in observer.seen if r.get("tag", "").startswith("refused")], observer.seen
    observer.close()


def test_ws_allowed_origins_replaces_allowed_hosts(make_server):
    srv = make_server(env={"DJANGO_WS_ALLOWED_ORIGINS": ".example.com,chat.example.org"})
    for origin in ["https://app.example.com", "http://example.com", "https://chat.example.org:8443", None]:
        with connect(srv.url("echo"), origin=origin) as ws:
            ws.send("ok")
            assert ws.recv(timeout=10) == "ok"
    for origin in ["http://localhost", "http://127.0.0.1", "https://evil.example.org", "https://example.com.evil.net"]:
        assert refused_status(srv.url("echo"), origin=origin) == 403, origin


# -- sizes, slow readers, caps ------------------------------------------------------------


def test_a_message_over_ws_max_message_size_closes_with_1009_before_any_worker(edge):
    bystander = connect(edge.url("echo"))
    bystander.send("before")
    assert bystander.recv(timeout=10) == "before"
    before = stats(edge)
    limit = 1024 * 1024  # WS_MAX_MESSAGE_SIZE's default
    with connect(edge.url("echo"), max_size=None) as ws:
        ws.send("y" * limit)  # the limit itself is fine
        assert len(ws.recv(timeout=10)) == limit
    for message in ["x" * (limit + 1), b"\x00" * (limit + 1), ["x" * (limit // 2)] * 3]:  # the last one fragmented
        with connect(edge.url("echo")) as ws, pytest.raises(ConnectionClosed) as closed:
            ws.send(message)  # the close may already arrive while this sends
            ws.recv(timeout=10)
        assert closed.value.rcvd.code == 1009
        assert closed.value.rcvd.reason == f"message over {limit} bytes"
    after = stats(edge)
    assert after["frames_in"] == before["frames_in"] + 1, "only the message at the limit reached a worker"
    assert after["closed_by_code"].get("1009", 0) == before["closed_by_code"].get("1009", 0) + 3
    bystander.send("after")
    assert bystander.recv(timeout=10) == "after"
    bystander.close()


def test_the_1009_reaches_a_client_that_is_still_sending(edge):
    """Closing a socket with unread input answers with a TCP reset, which can
    destroy the close frame before the client reads it; the edge drains instead."""
    client = RawClient(edge)
    client.send_frame(0x2, os.urandom(8 * 1024 * 1024))  # all of it sent, though the edge stopped at the header
    assert client.close_code() == 1009
    assert client._recv_or_eof() == b"", "the edge closed its side cleanly after the close frame"
    client.close()


def test_a_client_that_stops_reading_is_closed_with_1008_and_memory_stays_bounded(make_server):
    srv = make_server(env={"DJANGO_WS_MAX_BUFFER_SIZE": str(256 * 1024)})
    observer = Observer(srv)
    bystander = connect(srv.url("echo"), max_size=None)
    bystander.send("z" * 1024 * 1024)  # one message over the limit, to a client that reads: written
    assert len(bystander.recv(timeout=10)) == 1024 * 1024
    edge_pid = srv.process.pid
    rss_before = procinfo.status(edge_pid)["rss_kb"]
    peak = [rss_before]
    sampling = threading.Event()

    def sample():
        while not sampling.wait(0.02):
            peak[0] = max(peak[0], procinfo.status(edge_pid)["rss_kb"])

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        slow = RawClient(srv, "flood/slow", rcvbuf=4096)
        slow.send_frame(0x1, b"128")  # "send me 128 MB", then never read
        observer.wait(event="flood-start", tag="slow")
        observer.wait(timeout=30, event="close", tag="slow")  # the handler's send raised: on_close ran
        bystander.send("unaffected")  # the edge's loop never waited on the slow client
        assert bystander.recv(timeout=10) == "unaffected"
    finally:
        sampling.set()
        sampler.join()
    grown = peak[0] - rss_before
    print(f"edge RSS {rss_before} kB, peak +{grown} kB during a 128 MB flood to a client that does not read")
    assert grown < 48 * 1024, f"the edge grew by {grown} kB for one client that does not read"
    assert not [r for r in observer.seen if r.get("event") == "flood-done"], "the whole flood was accepted"
    assert stats(srv)["closed_by_code"].get("1008") == 1
    srv.wait_for("the client stopped reading")  # logged (or this raises)
    slow.close()
    bystander.close()
    observer.close()


def test_max_connections_refuses_with_503_past_the_limit(make_server):
    srv = make_server(extra_args=("--max-connections=2",))
    held = [connect(srv.url("echo")) for _ in range(2)]
    assert refused_status(srv.url("echo")) == 503
    assert stats(srv)["refused"]["503"] == 1
    held[0].close()
    wait_until(lambda: stats(srv)["connections"] == 1, 10, "a slot is free again")
    with connect(srv.url("echo")) as ws:
        ws.send("room again")
        assert ws.recv(timeout=10) == "room again"
    held[1].close()


def test_handshakes_waiting_for_a_worker_count_toward_max_connections(make_server, tmp_path):
    srv = make_server(extra_args=("--max-connections=2",))
    gate = tmp_path / "gate"
    url = srv.url("gated") + f"?gate={gate}"
    results = []

    def handshake():
        with connect(url, open_timeout=20) as ws:
            ws.send("in")
            results.append(ws.recv(timeout=10))

    threads = [threading.Thread(target=handshake) for _ in range(2)]
    for thread in threads:
        thread.start()
    wait_until(lambda: stats(srv)["handshakes_pending"] == 2, 10, "two handshakes wait in on_connect")
    assert refused_status(srv.url("echo")) == 503  # 0 open + 2 pending: full
    gate.touch()
    for thread in threads:
        thread.join(20)
    assert results == ["in", "in"]


# -- protocol garbage ---------------------------------------------------------------------


def test_invalid_utf8_closes_with_1007(edge):
    worker_pids = edge.worker_pids
    client = RawClient(edge)
    client.send_frame(0x1, "fine ✓".encode())
    assert client.read_frame() == (0x1, "fine ✓".encode())
    client.send_frame(0x1, b"caf\xe9")  # Latin-1, not UTF-8
    assert client.close_code() == 1007
    client.close()
    # Split across fragments, and in a close frame's reason.
    client = RawClient(edge)
    client.send_frame(0x1, b"\xe2\x9c", fin=False)
    client.send_frame(0x0, b"\x93")  # completes "✓": valid
    assert client.read_frame() == (0x1, "✓".encode())
    client.send_frame(0x1, b"\xe2\x9c", fin=False)
    client.send_frame(0x0, b"!")
    assert client.close_code() == 1007
    client.close()
    client = RawClient(edge)
    client.send_frame(0x8, struct.pack("!H", 1000) + b"\xff\xfe")
    assert client.close_code() == 1007
    client.close()
    assert stats(edge)["closed_by_code"]["1007"] == 3
    assert_still_serving(edge, worker_pids)


BAD_FRAMES = {
    # name: (kwargs of send_frame, the close code the client gets before the TCP close)
    "reserved bits set": ({"opcode": 0x1, "payload": b"x", "rsv": 0b100}, 1002),
    "unknown opcode 3": ({"opcode": 0x3, "payload": b"x"}, 1002),
    "control frame over 125 bytes": ({"opcode": 0x9, "payload": b"p" * 126}, 1002),
    "fragmented ping": ({"opcode": 0x9, "payload": b"p", "fin": False}, 1002),
    "continuation without a start": ({"opcode": 0x0, "payload": b"x"}, 1002),
    "length of 2**63": ({"opcode": 0x2, "payload": b"", "length": 2**63}, 1002),
}


@pytest.mark.parametrize("name", list(BAD_FRAMES))
def test_malformed_frames_end_only_their_connection(edge, name):
    worker_pids = edge.worker_pids
    kwargs, expected = BAD_FRAMES[name]
    client = RawClient(edge)
    client.send_frame(**kwargs)
    assert client.close_code() == expected
    client.close()
    assert_still_serving(edge, worker_pids)


def test_close_frames_and_pings_are_answered(edge):
    client = RawClient(edge)
    client.send_frame(0x9, b"ping!")
    assert client.read_frame() == (0xA, b"ping!")
    client.send_frame(0x8, struct.pack("!H", 4321) + b"bye")
    assert client.close_code() == 4321  # echoed, as RFC 6455 says
    client.close()
    wait_until(lambda: stats(edge)["closed_by_code"].get("4321") == 1, 10, "the edge counted the client's code")


KEY = base64.b64encode(b"0123456789abcdef").decode()
HANDSHAKE = ("GET /socket/connectlog/{tag} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + KEY + "\r\n")
BAD_HANDSHAKES = {
    # name: (raw request, the HTTP status it gets or None for a closed socket)
    "missing Sec-WebSocket-Key": (HANDSHAKE.replace("Sec-WebSocket-Key: " + KEY + "\r\n", "") + "\r\n", 400),
    "short Sec-WebSocket-Key": (HANDSHAKE.replace(KEY, "c2hvcnQ=") + "\r\n", 400),
    "version 8": (HANDSHAKE.replace("Version: 13", "Version: 8") + "\r\n", 426),
    "no version": (HANDSHAKE.replace("Sec-WebSocket-Version: 13\r\n", "") + "\r\n", 426),
    "Connection: close": (HANDSHAKE.replace("Connection: Upgrade", "Connection: close") + "\r\n", 400),
    "Upgrade: h2c": (HANDSHAKE.replace("Upgrade: websocket", "Upgrade: h2c") + "\r\n", 400),
    "POST": (HANDSHAKE.replace("GET", "POST") + "Content-Length: 0\r\n\r\n", 405),
    "garbage request line": ("GARBAGE\r\n\r\n", 400),
    "HTTP/0.9": ("GET /socket/echo\r\n\r\n", 400),
    "headers over 64 KB": (HANDSHAKE + "X-Big: " + "a" * 70_000 + "\r\n\r\n", None),
    "10000 headers": (HANDSHAKE + "X-Many: 1\r\n" * 10_000 + "\r\n", None),
    "header without a colon": (HANDSHAKE + "NoColonHere\r\n\r\n", 400),
    "percent-encoded invalid UTF-8 in the path": (HANDSHAKE.replace("{tag}", "%ff{tag}") + "\r\n", 400),
    "raw byte 0xff in the path": (HANDSHAKE.replace("connectlog/{tag}", "echo\udcff") + "\r\n", 404),
    "binary noise": ("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + "\x00\r\n" * 40 + "\r\n", 400),
}


@pytest.mark.parametrize("name", list(BAD_HANDSHAKES))
def test_broken_handshakes_get_an_http_error_or_a_closed_socket(edge, name):
    request, expected = BAD_HANDSHAKES[name]
    worker_pids = edge.worker_pids
    observer = Observer(edge)
    tag = re.sub(r"\W", "-", name)
    answer = raw_http(edge, request.replace("{tag}", tag).encode("utf-8", "surrogateescape"))
    if expected is None:
        assert answer == b"", answer[:200]
    else:
        assert answer.startswith(f"HTTP/1.1 {expected} ".encode()), answer[:200]
    if expected == 426:
        assert b"Sec-Websocket-Version: 13" in answer
    with connect(edge.url("connectlog/control")):  # see test_foreign_origins_get_403...
        observer.wait(event="connect", tag="control")
    assert not [r for r in observer.seen if r.get("tag") == tag], "a broken handshake reached on_connect"
    observer.close()
    assert_still_serving(edge, worker_pids)


def envelope(kind: bytes, *fields: bytes, payload: bytes | None = None, version: bytes = wire.VERSION) -> list:
    """Frames laid out as django_ws.wire lays them out, whatever they hold."""
    header = version + kind + b"".join(struct.pack("!I", len(field)) + field for field in fields)
    return [header] if payload is None else [header, payload]


GARBAGE_ENVELOPES = [
    [b"\x80\x04\x95pickle"],  # a pickle, where a header goes
    [b"DWS4"],  # a header too short for a kind
    envelope(b"S", b"c.1", b"0", payload=b"x", version=b"DWS9"),  # unknown version
    envelope(b"Z", b"x"),  # unknown kind
    envelope(b"S", b"c.1", b"maybe", payload=b"x"),  # a bool that is not one
    envelope(b"S", b"c.1", payload=b"x"),  # too few fields
    envelope(b"S", b"c.1", b"0"),  # no payload frame
    envelope(b"S", b"\xff\xfe", b"0", payload=b"x"),  # a str that is not UTF-8
    [wire.VERSION + b"S" + struct.pack("!I", 2**32 - 1) + b"c.1", b"x"],  # a length past the end
    [envelope(b"S", b"c.1", b"0")[0] + b"trailing", b"x"],  # bytes after the last field
    envelope(b"M", b"ref", b"edge", b"[" * 100_000),  # JSON nested past the recursion limit
    envelope(b"M", b"ref", b"edge", b"cos\nsystem\n(S'echo pwned'\ntR."),  # a pickle where JSON goes
    envelope(b"H", b"w", b"1e9", b"0"),  # Hello with a non-integer capacity
    envelope(b"C", b"c.1", b"echo", b"[1, 2]"),  # Connect whose request is not a JSON object
    # Well-formed, for connections that do not exist:
    wire.Send("nosuchedge.1", False, b"x" * 5_000_000).encode(),
    wire.Close("nosuchedge.2", 1000, "bye").encode(),
]


def test_garbage_on_the_edge_zmq_endpoints_is_logged_and_dropped(edge):
    worker_pids = edge.worker_pids
    workers_before = len(stats(edge)["workers"])
    start = len(edge.lines)
    ctx = zmq.Context()
    try:
        for endpoint in (edge.push_socket, edge.sub_socket):
            dealer = ctx.socket(zmq.DEALER)
            dealer.linger = 1000
            dealer.connect(endpoint)
            for frames in GARBAGE_ENVELOPES:
                dealer.send_multipart(frames)
            # Last, a well-formed message of the wrong kind for each endpoint:
            dealer.send_multipart(wire.Accept("nosuchedge.3", "").encode()
                                  if endpoint == edge.push_socket else wire.Ping("edge").encode())
            dealer.close()
        # Each endpoint's messages are handled in order: its last one's line means all are done.
        edge.wait_for("unexpected Accept on the push endpoint", start=start)
        edge.wait_for("unexpected Ping on the sub endpoint", start=start)
    finally:
        ctx.destroy(linger=0)
    dropped = [line for line in edge.lines[start:] if "edge dropped" in line]
    # Every envelope was logged, on both endpoints, but the Send and Close
    # for unknown connections on the sub endpoint: right there, and ignored.
    assert len(dropped) == 2 * (len(GARBAGE_ENVELOPES) + 1) - 2, "\n".join(dropped)
    assert len(stats(edge)["workers"]) == workers_before, "garbage registered a worker"
    assert_still_serving(edge, worker_pids)


def test_garbage_from_a_fake_edge_does_not_hurt_a_worker(server_db, tmp_path):
    """A worker connects to its edges; bind a fake edge and feed the worker nonsense."""
    ctx = zmq.Context()
    push, sub = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
    push.bind(f"ipc://{tmp_path}/push")
    sub.bind(f"ipc://{tmp_path}/sub")
    env = dict(os.environ, DJANGO_SETTINGS_MODULE=SETTINGS, DJANGO_WS_TEST_DB=server_db, PYTHONPATH=ROOT)
    worker = subprocess.Popen([sys.executable, "-m", "django_ws.worker", "--threaded", "--push-socket",
                               f"ipc://{tmp_path}/push", "--sub-socket", f"ipc://{tmp_path}/sub"],
                              env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        assert push.poll(20_000), "the worker never said Hello"
        identity, *frames = push.recv_multipart()
        assert isinstance(wire.decode(frames), wire.Hello)
        garbage = [*GARBAGE_ENVELOPES,
                   wire.Accept("fake.1", "").encode(),  # a kind only edges receive
                   wire.Data("fake.404", "echo", False, b"for nobody").encode(),
                   wire.Connect("fake.2", "../../etc/passwd", {}).encode(),
                   wire.Connect("fake.3", "echo", {"headers": "not a list", "subprotocols": 5}).encode()]
        for message in garbage:
            push.send_multipart([identity, *message])
        push.send_multipart([identity, *wire.Ping("fake").encode()])
        # The refusals come back, and a real connection is served after all that.
        answers = {}  # (it may also tell the fake edge to close fake.404, which it does not know)
        while not {"fake.2", "fake.3"} <= set(answers):
            assert sub.poll(10_000), f"the worker stopped answering; got {answers}"
            message = wire.decode(sub.recv_multipart()[1:])
            answers[message.conn_id] = message
        assert answers["fake.2"] == wire.Deny("fake.2", 404, "no route")
        assert answers["fake.3"].status == 500
        push.send_multipart([identity, *wire.Connect("fake.4", "echo", {}).encode()])
        push.send_multipart([identity, *wire.Data("fake.4", "echo", False, b"hello").encode()])
        replies = []
        while len(replies) < 2:
            assert sub.poll(10_000), f"the worker stopped answering; got {replies}"
            message = wire.decode(sub.recv_multipart()[1:])
            if message.conn_id == "fake.4":
                replies.append(message)
        assert replies == [wire.Accept("fake.4", ""), wire.Send("fake.4", False, b"hello")]
        assert worker.poll() is None, "the worker died"
    finally:
        worker.terminate()
        _, stderr = worker.communicate(timeout=20)
        push.close(0)
        sub.close(0)
        ctx.destroy(linger=0)
    assert stderr.count("worker dropped a malformed message") >= 10, stderr
    # The one traceback is the log of fake.3's failed handshake (a 500 for that client alone).
    assert stderr.count("Traceback") == stderr.count("handshake of connection fake.3") == 1, stderr


# -- transport ----------------------------------------------------------------------------


def test_ipc_socket_files_are_private_to_their_owner(edge):
    for endpoint in (edge.push_socket, edge.sub_socket):
        mode = os.stat(endpoint[len("ipc://"):]).st_mode
        assert mode & 0o077 == 0, f"{endpoint} is mode {oct(mode & 0o777)}: others could connect"


def _monitored_dealer(ctx, endpoint, keys=None):
    """A DEALER to ``endpoint`` (a CURVE client if ``keys``) and a monitor of its handshakes."""
    dealer = ctx.socket(zmq.DEALER)
    dealer.linger = 0
    if keys:
        dealer.curve_serverkey = keys["server_public"].encode()
        dealer.curve_publickey = keys["client_public"].encode()
        dealer.curve_secretkey = keys["client_secret"].encode()
    monitor = dealer.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                                        | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
    dealer.connect(endpoint)
    return dealer, monitor


def _try_send(dealer, frames) -> None:
    """Queue a message if the socket will take it: after a failed handshake it may have no pipe to queue on."""
    try:
        dealer.send_multipart(frames, zmq.NOBLOCK)
    except zmq.Again:
        pass


def _handshake_event(monitor) -> int:
    from zmq.utils.monitor import recv_monitor_message

    assert monitor.poll(10_000), "no ZeroMQ handshake happened"
    return recv_monitor_message(monitor)["event"]


def test_curve_secures_tcp_endpoints_end_to_end(make_server):
    require_curve()
    keys = security.generate_curve()
    push, sub = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    srv = make_server(push_socket=push, sub_socket=sub, env={"DJANGO_WS_CURVE": json.dumps(keys)})
    # Workers (started by run_wsserver with the same settings) joined through CURVE: Ready was printed.
    with connect(srv.url("room/curve")) as ws:
        ws.send("{}")
        conn_id = json.loads(ws.recv(timeout=10))["id"]
        with override_settings(WS_CURVE=keys, WS_EDGES=[sub]):  # a sender elsewhere in Django
            assert group_members("room.curve") == [conn_id]
    ctx = zmq.Context()
    try:
        presence = wire.Presence("probe", "room.curve").encode()
        keyed, keyed_monitor = _monitored_dealer(ctx, sub, keys)
        assert _handshake_event(keyed_monitor) == zmq.EVENT_HANDSHAKE_SUCCEEDED
        keyed.send_multipart(presence)
        assert keyed.poll(10_000), "a client with the keys got no answer"
        assert isinstance(wire.decode(keyed.recv_multipart()), wire.Members)

        wrong = dict(keys)
        wrong["client_public"], wrong["client_secret"] = (k.decode() for k in zmq.curve_keypair())
        plain, plain_monitor = _monitored_dealer(ctx, sub)  # no CURVE at all
        stranger, stranger_monitor = _monitored_dealer(ctx, sub, wrong)  # knows the server, not the client key
        assert _handshake_event(plain_monitor) in (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
                                                   zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
        assert _handshake_event(stranger_monitor) == zmq.EVENT_HANDSHAKE_FAILED_AUTH
        for dealer in (plain, stranger):
            _try_send(dealer, presence)
        assert not plain.poll(1000) and not stranger.poll(10), "a peer without the client key got an answer"
        assert srv.wait_for("unknown CURVE key " + wrong["client_public"])
        # Nor can such a peer pose as a worker on the push endpoint.
        fake_worker, fake_monitor = _monitored_dealer(ctx, push, wrong)
        _try_send(fake_worker, wire.Hello("w-fake", 0, 0, "threaded").encode())
        assert _handshake_event(fake_monitor) == zmq.EVENT_HANDSHAKE_FAILED_AUTH
        assert all(w["id"] != "w-fake" for w in stats(srv)["workers"])
        for sock in (keyed, plain, stranger, fake_worker, keyed_monitor, plain_monitor, stranger_monitor, fake_monitor):
            sock.close(0)
    finally:
        ctx.destroy(linger=0)
    # And the unkeyed sender gives up with SendError instead of hanging.
    from django_ws import SendError

    outcome = []

    def unkeyed_send():
        try:
            outcome.append(group_members("room.curve", timeout=1))
        except SendError as exc:
            outcome.append(exc)

    with override_settings(WS_CURVE=None, WS_EDGES=[sub]):
        thread = threading.Thread(target=unkeyed_send)  # its own _EdgeClient: sockets are per thread
        thread.start()
        thread.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], SendError), outcome
    assert "no websocket edge reachable" in str(outcome[0])


@pytest.mark.parametrize("mode", ["gevent", "multiprocess"])
def test_curve_links_work_in_every_worker_mode(make_server, mode):
    """Greenlet sockets and forked handler processes set the CURVE options too."""
    require_curve()
    keys = security.generate_curve()
    push, sub = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    srv = make_server(mode=mode, push_socket=push, sub_socket=sub, env={"DJANGO_WS_CURVE": json.dumps(keys)})
    with connect(srv.url("room/modes")) as a, connect(srv.url("room/modes")) as b:
        for ws in (a, b):
            ws.send("{}")
            assert json.loads(ws.recv(timeout=10))["joined"] == "modes"
        a.send(json.dumps({"hello": mode}))  # a handler's send_to_group, over its CURVE link
        assert json.loads(b.recv(timeout=10)) == {"hello": mode}


def test_a_tcp_endpoint_reachable_from_other_hosts_without_curve_warns(make_server):
    push = f"tcp://0.0.0.0:{free_port()}"
    srv = make_server(edge_only=True, push_socket=push, sub_socket=f"tcp://127.0.0.1:{free_port()}")
    line = srv.wait_for("reachable from other hosts")
    assert push in line and "WS_CURVE" in line
    assert sum("reachable from other hosts" in line for line in srv.lines) == 1, "only the exposed one warns"


@pytest.mark.parametrize("endpoint, exposed", [
    ("tcp://127.0.0.1:5555", False), ("tcp://localhost:5555", False), ("tcp://[::1]:5555", False),
    ("tcp://lo:5555", False), ("tcp://127.8.9.10:5555", False), ("ipc:///tmp/x", False), ("inproc://x", False),
    ("tcp://*:5555", True), ("tcp://0.0.0.0:5555", True), ("tcp://10.0.0.5:5555", True),
    ("tcp://eth0:5555", True), ("tcp://edge.example.com:5555", True), ("tcp://[::]:5555", True),
])
def test_which_endpoints_count_as_exposed(endpoint, exposed):
    with override_settings(WS_CURVE=None):
        assert security.exposed_endpoints([endpoint]) == ([endpoint] if exposed else [])
    require_curve()
    with override_settings(WS_CURVE=security.generate_curve()):
        assert security.exposed_endpoints([endpoint]) == []


def require_curve():
    from tests.conftest import require

    require(zmq.has("curve"), "this libzmq has no CURVE")


def manage(*args):
    return subprocess.run([sys.executable, "-m", "django", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False, env=dict(os.environ, DJANGO_SETTINGS_MODULE=SETTINGS, PYTHONPATH=ROOT))


def test_ws_keygen_prints_a_setting_that_works():
    require_curve()
    result = manage("ws_keygen")
    assert result.returncode == 0, result.stderr
    namespace = {}
    exec(result.stdout, namespace)  # noqa: S102 -- "ready to paste" means exactly this
    keys = namespace["WS_CURVE"]
    assert sorted(keys) == sorted(security.KEY_NAMES)
    for side in ("server", "client"):
        assert zmq.curve_public(keys[f"{side}_secret"].encode()) == keys[f"{side}_public"].encode()
    with override_settings(WS_CURVE=keys):
        assert security.curve_keys().client_public == keys["client_public"].encode()
    as_json = json.loads(manage("ws_keygen", "--json").stdout)
    assert sorted(as_json) == sorted(keys) and as_json != keys, "every run makes new keys"


def test_a_wrong_ws_curve_fails_early_and_says_how_to_fix_it():
    require_curve()
    good = security.generate_curve()
    other = security.generate_curve()
    cases = [
        ("not a dict", "must be a dict"),
        ({**good, "server_key": "x"}, "unknown keys ['server_key']"),
        ({**good, "server_public": "short"}, "40-character Z85 key"),
        ({**good, "client_public": "\x00" * 40}, "not a valid Z85 key"),
        ({**good, "server_public": other["server_public"]}, "server_public is not the public key of server_secret"),
        ({k: v for k, v in good.items() if k != "client_public"}, "'client_public'"),
    ]
    for value, message in cases:
        with override_settings(WS_CURVE=value), pytest.raises(ImproperlyConfigured, match=re.escape(message)):
            security.curve_keys()
    # A worker's settings need not hold the server's secret, nor an edge's the client's...
    with override_settings(WS_CURVE={k: v for k, v in good.items() if k != "server_secret"}):
        assert security.curve_keys().server_secret is None
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        try:
            assert security.secure_client(sock, "tcp://10.0.0.1:5555")
            assert not security.secure_client(sock, "ipc:///tmp/x")
            # ...but an edge cannot serve CURVE without it.
            with pytest.raises(ImproperlyConfigured, match="no server_secret"):
                security.secure_server(sock, "tcp://127.0.0.1:5555")
        finally:
            sock.close(0)
            ctx.destroy(linger=0)


def test_nothing_on_the_wire_is_unpickled_or_evaluated():
    import django_ws

    package = os.path.dirname(django_ws.__file__)  # the package as imported: installed under tests/run.sh
    forbidden = re.compile(r"\b(pickle|cPickle|marshal|shelve|dill|cloudpickle|jsonpickle)\b|\beval\(|\bexec\("
                           r"|yaml\.(unsafe_)?load\(|recv_pyobj|send_pyobj|recv_serialized|literal_eval")
    hits, read = [], 0
    for directory, _, files in os.walk(package):
        for name in files:
            if name.endswith(".py"):
                read += 1
                path = os.path.join(directory, name)
                with open(path, encoding="utf-8") as f:
                    for number, line in enumerate(f, 1):
                        code = line.split("#", 1)[0]
                        if forbidden.search(code):
                            hits.append(f"{os.path.relpath(path, package)}:{number}: {line.strip()}")
    assert read > 40, f"only {read} modules read under {package}"
    assert not hits, "\n".join(hits)
    # The codec itself: a pickle is just bytes that do not decode.
    with pytest.raises(wire.ProtocolError):
        wire.decode(envelope(b"M", b"ref", b"edge", b"\x80\x04\x95\x00\x00\x00\x00."))
