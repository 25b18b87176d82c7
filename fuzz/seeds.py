"""``python -m fuzz.seeds``: write the seed corpus of every target into fuzz/corpus/ (deterministic).

The seeds are inputs a fuzzer would take long to find: valid frames of each
kind, a compressed message, a full handshake, positions, tokens, one wire
message of every kind, routes, Socket.IO events. The fuzzer mutates them.
"""

from __future__ import annotations

import hashlib
import os
import zlib

from django_ws import wire

from ._frames import client_frame

HERE = os.path.dirname(os.path.abspath(__file__))


def _frames() -> list[bytes]:
    prefix = b"\x00\xff\x00\x00\x03\x01\x02\x03"  # limit, compression, cuts (FuzzedDataProvider)
    text = client_frame(0x81, "héllo wörld".encode())
    frag = client_frame(0x01, b"fra") + client_frame(0x89, b"ping") + client_frame(0x80, "g€".encode())
    compressed = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = compressed.compress(b"a compressed message" * 4) + compressed.flush(zlib.Z_SYNC_FLUSH)
    return [
        prefix + text,
        prefix + frag,
        prefix + client_frame(0x82, bytes(range(256)) * 2),
        prefix + client_frame(0x81, b"x" * 300)[:2] + b"\x7f" + (70000).to_bytes(8, "big") + b"\x00" * 20,
        prefix + client_frame(0x88, b"\x03\xe8bye"),
        prefix + client_frame(0x8A, b"pong") + client_frame(0x81, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"),
        b"\x00\xff\x01\x01\x01" + client_frame(0xC1, body[:-4]),
    ]


def _inflate() -> list[bytes]:
    return [b"\x01\x0f\x02" + b"\x00\x20" + b"some message " * 20 + b"\x01\x02",
            b"\x00\x09\x01" + b"\x10\x00" + bytes(range(200)), b"\x01\x0c\x00" + zlib.compress(b"raw" * 50)[2:-4]]


def _handshake() -> list[bytes]:
    base = ("Host: example.com\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
    offers = ["permessage-deflate; client_max_window_bits",
              "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9, permessage-deflate",
              'permessage-deflate; server_no_context_takeover; client_no_context_takeover; x="y"']
    return [b"\x00" + base.encode()] + [bytes([n]) + (base + f"Sec-WebSocket-Extensions: {o}\r\n").encode()
                                        for n, o in enumerate(offers)]


def _positions() -> list[bytes]:
    return [b"dws=1", b"dws=1&dws_since=%7B%22room%22%3A%5B%22e1%22%2C3%5D%7D", b'dws=1&dws_since={"a":["x",0],"b":["y",9]}',
            b"a=b&dws=2", b"dws_since={}"]


def _tokens() -> list[bytes]:
    return [b"\x0bBearer abc~def" + b"\x00" + b"\x00" + b'{"u": "1", "e": 99999999999}',
            b"\x00\x1edjango-ws.token.abc.def.ghi\x0ctoken=a~b~c" + b'{"u": "1", "e": 1, "s": "chat"}',
            b"\x00\x00\x00" + b'{"u": "nobody", "e": 99999999999, "s": null}']


def _wire() -> list[bytes]:
    messages = [
        wire.Ping("e1"), wire.Connect("c1", "echo", {"path": "/echo", "headers": [["a", "b"]]}),
        wire.Data("c1", "echo", False, b"hi"), wire.Event("c1", "echo", "chat", 3, b"[1]"),
        wire.Disconnect("c1", "echo", 1000, "bye"), wire.Hello("w", 0, 3, "threaded"), wire.Goodbye("w"),
        wire.Accept("c1", ""), wire.Deny("c1", 403, "no"), wire.Send("c1", True, b"\x00"),
        wire.Close("c1", 4000, "x"), wire.Join("c1", "g"), wire.Leave("c1", "g"),
    ]
    seeds = []
    for message in messages:
        try:
            seeds.append(b"\x00|\x00".join(message.encode()))
        except TypeError:
            continue
    seeds.append(b"\x00|\x00".join(wire.encode_batch(messages[2:5])))
    return seeds


def _routing() -> list[bytes]:
    return [b"echo", b"room/lobby", b"files/a/b/../c%2F", b"shop/cart/0123abcd", b"shop/items/12/a-b", b"room/\xc3\xa9"]


def _socketio() -> list[bytes]:
    return [b'42/sio,["message","hi"]', b'42/sio,1["chat",{"a":[1,2]}]', b'42/sio,["message",{"x":null}]\x1e4',
            b'42/sio,["message",1,2,3]', b"42/sio,[]", b'42/sio,["\\ud800"]', b'42/sio,7["message","\\u00e9"]']


SEEDS = {"frames": _frames, "inflate": _inflate, "handshake": _handshake, "positions": _positions,
         "tokens": _tokens, "wire": _wire, "routing": _routing, "socketio": _socketio}


def main() -> None:
    for target, make in SEEDS.items():
        directory = os.path.join(HERE, "corpus", target)
        os.makedirs(directory, exist_ok=True)
        for seed in make():
            name = hashlib.sha1(seed).hexdigest()
            with open(os.path.join(directory, name), "wb") as f:
                f.write(seed)


if __name__ == "__main__":
    main()
