"""python-socketio on its own under Tornado, echoing in namespace /echo: the baseline of bench/socketio_bench.py.

    python bench/servers/socketio_echo.py PORT

No relay, no Django: a plain async handler that sends each ``message`` event
back. Same Engine.IO settings as the edge's defaults, on uvloop when it is
installed (as the edge's "auto").
"""

import asyncio
import sys

import socketio
import tornado.web


async def main(port: int) -> None:
    sio = socketio.AsyncServer(async_mode="tornado", logger=False, engineio_logger=False,
                               cors_allowed_origins="*", max_http_buffer_size=1024 * 1024)

    @sio.on("message", namespace="/echo")
    async def echo(sid, data):
        await sio.send(data, to=sid, namespace="/echo")

    app = tornado.web.Application([(r"/socket/socket\.io/", socketio.get_tornado_handler(sio))])
    app.listen(port, "127.0.0.1", backlog=4096)
    print(f"listening on {port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        uvloop = None
    if uvloop is not None:
        uvloop.install()
    asyncio.run(main(int(sys.argv[1])))
