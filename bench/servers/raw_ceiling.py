"""No framework at all: RFC 6455 on the event loop's transports, in one file. What the machine and client allow.

Echo sends every frame back; /socket/room/<name> writes every frame, framed
once, to every connection on the same URL, the sender included. Nothing is
checked that a real server must check (no Origin, no limits, no close
handshake beyond answering one, no fragmented messages): it only shows how
many round trips or deliveries the client and the kernel leave room for,
so that a server's figure can be read as bound by itself or by them.

    python bench/servers/raw_ceiling.py --port 8899
"""

import asyncio
import base64
import hashlib
import socket
import struct

from one_file import run  # the directory of this script is on sys.path
from tornado.speedups import websocket_mask

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

rooms: dict[bytes, list] = {}


def frame(opcode: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        return bytes((0x80 | opcode, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, size) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, size) + payload


class Connection(asyncio.Protocol):
    def connection_made(self, transport):
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport, self.buffer, self.room = transport, b"", None
        self.open = False

    def data_received(self, data):
        buffer = self.buffer + data
        if not self.open:
            head, found, buffer = buffer.partition(b"\r\n\r\n")
            if not found:
                self.buffer = head
                return
            lines = head.split(b"\r\n")
            path = lines[0].split(b" ")[1]
            headers = dict(line.split(b":", 1) for line in lines[1:])
            key = {k.strip().lower(): v.strip() for k, v in headers.items()}[b"sec-websocket-key"]
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            self.open = True
            if path.startswith(b"/socket/room/"):
                self.room = rooms.setdefault(path, [])
                self.room.append(self)
        while len(buffer) >= 6:
            size, start = buffer[1] & 0x7F, 6
            if size == 126:
                size, start = struct.unpack_from("!H", buffer, 2)[0], 8
            elif size == 127:
                size, start = struct.unpack_from("!Q", buffer, 2)[0], 14
            if len(buffer) < start + size:
                break
            opcode = buffer[0] & 0x0F
            payload = websocket_mask(buffer[start - 4:start], buffer[start:start + size])
            buffer = buffer[start + size:]
            if opcode == 0x8:
                self.transport.write(frame(0x8, payload[:2]))
                self.transport.close()
                return
            if opcode == 0x9:
                self.transport.write(frame(0xA, payload))
            elif opcode in (0x1, 0x2):
                out = frame(opcode, payload)
                for member in (self.room if self.room is not None else (self,)):
                    member.transport.write(out)
        self.buffer = buffer

    def connection_lost(self, exc):
        if self.room is not None:
            self.room.remove(self)


async def main(port):
    server = await asyncio.get_running_loop().create_server(Connection, "127.0.0.1", port, backlog=2048)
    print(f"Ready: raw ceiling on 127.0.0.1:{port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    run(main)
