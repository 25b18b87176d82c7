"""Everything the edge takes from Tornado beyond its documented API, checked when this module is imported.

The edge speaks WebSocket itself (:mod:`django_ws.edge.protocol`) and uses
Tornado for HTTP and sockets through public calls only: ``RequestHandler``
for the handshake, ``RequestHandler.detach()`` for the stream after the 101,
``IOStream`` to write the 101. Two things remain that Tornado does not
document, both gathered here so that a Tornado release that changes them
stops ``run_wsserver`` at start-up with a message naming the version,
instead of a connection misbehaving later:

* ``tornado.speedups.websocket_mask``, the C function that unmasks client
  frames (optional: without it the pure-Python mask of protocol.py is used);
* ``IOStream._read_buffer`` and ``_read_buffer_size``: what Tornado read
  past the handshake's headers, which :func:`take_socket` hands on with the
  socket when a WebSocket leaves Tornado for the event loop's own transport.
"""

from __future__ import annotations

import socket
import typing

import tornado
import tornado.iostream
import tornado.web


class TornadoIncompatible(RuntimeError):
    """This Tornado lacks something the edge relies on; the message says what and which version."""


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise TornadoIncompatible(
            f"django-ws's edge needs {what}, which Tornado {tornado.version} does not have. "
            f"Install a Tornado version that django-ws supports (see its requirements).")


_require(callable(getattr(tornado.web.RequestHandler, "detach", None)), "RequestHandler.detach() (Tornado 5.1+)")
_require({"_read_buffer", "_read_buffer_size"} <= set(tornado.iostream.BaseIOStream.__init__.__code__.co_names),
         "IOStream._read_buffer and _read_buffer_size (the bytes read past a request's headers)")

try:
    from tornado.speedups import websocket_mask as _c_mask
except ImportError:  # a pure-Python Tornado build: protocol.py's own mask serves
    _c_mask = None
else:
    _require(_c_mask(b"\x01\x02\x03\x04", b"\x00\x00\x00\x00\x01") == b"\x01\x02\x03\x04\x00",
             "tornado.speedups.websocket_mask(mask, data) with the argument order of Tornado 6")

#: The fastest unmasking function there is: Tornado's C one, or None for protocol.py's default.
websocket_mask: typing.Callable[[bytes, bytes], bytes] | None = _c_mask


def take_socket(stream: tornado.iostream.IOStream) -> tuple[socket.socket, bytes]:
    """Take ``stream``'s socket away from Tornado, with the bytes Tornado read from it and nobody consumed.

    ``stream`` comes from ``RequestHandler.detach()`` and has nothing left
    to write. Its file descriptor leaves Tornado's IOLoop (public API), so
    that the event loop's own transport can watch it; what Tornado's
    reading of the request headers took past them (a client that sent its
    first frames without waiting for the 101) is returned, to be read first.
    """
    sock = stream.socket
    stream.io_loop.remove_handler(sock)
    buffered = bytes(stream._read_buffer[:stream._read_buffer_size])
    stream._read_buffer_size = 0
    del stream._read_buffer[:]
    return sock, buffered
