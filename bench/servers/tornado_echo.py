"""Plain Tornado, no relay: the ceiling the benchmark compares against.

/socket/echo sends every frame back; /socket/room/<name> sends every frame to
every connection on the same URL, the sender included.

    python bench/servers/tornado_echo.py --port 8899
"""

import asyncio

import tornado.web
import tornado.websocket

from one_file import run  # the directory of this script is on sys.path

rooms: dict[str, set] = {}


class Echo(tornado.websocket.WebSocketHandler):
    def open(self):
        self.set_nodelay(True)

    def on_message(self, message):
        self.write_message(message, binary=isinstance(message, bytes))


class Room(tornado.websocket.WebSocketHandler):
    def open(self, name):
        self.set_nodelay(True)
        self.room = rooms.setdefault(name, set())
        self.room.add(self)

    def on_message(self, message):
        binary = isinstance(message, bytes)
        for conn in list(self.room):
            try:
                conn.write_message(message, binary=binary)
            except tornado.websocket.WebSocketClosedError:
                pass

    def on_close(self):
        getattr(self, "room", set()).discard(self)


async def main(port):
    app = tornado.web.Application([(r"/socket/echo", Echo), (r"/socket/room/(\w+)", Room)])
    # uvicorn's default backlog: the ceiling should not drop SYNs on a burst of handshakes.
    app.listen(port, "127.0.0.1", backlog=2048)
    print(f"Ready: tornado on 127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    run(main)
