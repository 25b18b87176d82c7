"""Everything the edge takes from Tornado beyond its documented API, checked when this module is imported.

The edge speaks WebSocket itself (:mod:`django_ws.edge.protocol`) and uses
Tornado for HTTP and sockets through public calls only: ``RequestHandler``
for the handshake, ``RequestHandler.detach()`` for the stream after the 101,
``IOStream`` to read and write. Two things remain that Tornado does not
document, both gathered here so that a Tornado release that changes them
stops ``run_wsserver`` at start-up with a message naming the version,
instead of a connection misbehaving later:

* ``tornado.speedups.websocket_mask``, the C function that unmasks client
  frames (optional: without it the pure-Python mask of protocol.py is used);
* ``IOStream.max_write_buffer_size``, a constructor argument that the edge
  sets on an open stream to bound what one client that does not read can
  make it hold.
"""

from __future__ import annotations

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
_require("max_write_buffer_size" in tornado.iostream.BaseIOStream.__init__.__code__.co_varnames,
         "IOStream(max_write_buffer_size=...)")

try:
    from tornado.speedups import websocket_mask as _c_mask
except ImportError:  # a pure-Python Tornado build: protocol.py's own mask serves
    _c_mask = None
else:
    _require(_c_mask(b"\x01\x02\x03\x04", b"\x00\x00\x00\x00\x01") == b"\x01\x02\x03\x04\x00",
             "tornado.speedups.websocket_mask(mask, data) with the argument order of Tornado 6")

#: The fastest unmasking function there is: Tornado's C one, or None for protocol.py's default.
websocket_mask: typing.Callable[[bytes, bytes], bytes] | None = _c_mask


def set_write_limit(stream: tornado.iostream.IOStream, limit: int | None) -> None:
    """Bound what ``stream`` buffers for writing; past it, ``write`` raises StreamBufferFullError."""
    stream.max_write_buffer_size = limit


def write_limit(stream: tornado.iostream.IOStream) -> int | None:
    """The stream's current write-buffer bound (None: none)."""
    return stream.max_write_buffer_size
