"""Everything the Socket.IO transport takes from python-socketio beyond its documented API, checked at import.

The transport (:mod:`django_ws.edge.transports.socketio`) uses
python-socketio's public API for connections (``on('connect')``,
``on('disconnect')``, ``disconnect()``) and python-engineio's Tornado
handler for HTTP. Three things remain that python-socketio does not expose,
gathered here so that a release that changes them stops ``run_wsserver`` at
start-up with a message naming the version, instead of a client
misbehaving later:

* ``AsyncServer._handle_event(eio_sid, namespace, id, data)``, which
  :class:`EventServer` overrides: the public event handlers do not see the client's
  ack id, and would have to answer at once, while the answer comes from a
  worker later;
* ``AsyncServer._send_packet(eio_sid, packet)`` with ``packet_class``, to
  send one event or acknowledgement in order without the room lookups of
  ``emit()``;
* ``sid_from_eio_sid``, ``eio_sid_from_sid`` and ``is_connected`` of the
  client manager, to find the namespace connection an event belongs to,
  and python-engineio's ``sockets`` and their ``queue``, to see that a
  session is still open and how much waits in it for its client.
"""

from __future__ import annotations

import inspect
import typing

try:
    import engineio
    import socketio
    from engineio.async_drivers import tornado as _engineio_tornado
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError(
        f"WS_SOCKETIO is on, but python-socketio is not importable ({exc}). "
        "Install it with: pip install 'django-ws-edge[socketio]'") from exc


class SocketIOIncompatible(RuntimeError):
    """This python-socketio lacks something the transport relies on; the message says what and which version."""


def _version(module) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:  # pragma: no cover
        return "(unknown version)"


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise SocketIOIncompatible(
            f"django-ws's Socket.IO transport needs {what}, which python-socketio {_version('python-socketio')} / "
            f"python-engineio {_version('python-engineio')} do not have. Install the versions that "
            "django-ws-edge[socketio] asks for.")


def _params(function) -> list[str]:
    return list(inspect.signature(function).parameters)


_server = socketio.AsyncServer
_require(inspect.iscoroutinefunction(getattr(_server, "_handle_event", None))
         and _params(_server._handle_event) == ["self", "eio_sid", "namespace", "id", "data"],
         "AsyncServer._handle_event(eio_sid, namespace, id, data), a coroutine")
_require(inspect.iscoroutinefunction(getattr(_server, "_send_packet", None))
         and _params(_server._send_packet) == ["self", "eio_sid", "pkt"],
         "AsyncServer._send_packet(eio_sid, pkt), a coroutine")
_require(all(hasattr(socketio.AsyncManager, name) for name in ("sid_from_eio_sid", "eio_sid_from_sid", "is_connected")),
         "AsyncManager.sid_from_eio_sid(), eio_sid_from_sid() and is_connected()")
_require(isinstance(getattr(engineio.AsyncServer(), "sockets", None), dict), "engineio.AsyncServer().sockets")
_require(callable(getattr(_engineio_tornado, "get_tornado_handler", None)),
         "engineio.async_drivers.tornado.get_tornado_handler()")
_require(hasattr(engineio.AsyncServer, "reason"), "engineio.AsyncServer.reason (the disconnect reasons, 4.11+)")

class EventServer(socketio.AsyncServer):
    """python-socketio's server, handing every event packet with its ack id to ``on_event(eio_sid, namespace, id, data)``.

    Called in the order the packets were read, one at a time (with
    ``async_handlers=False``); the handlers registered with ``on()`` still
    serve ``connect`` and ``disconnect``.
    """

    def __init__(self, on_event: typing.Callable[[str, str, int | None, typing.Any], None], **options: typing.Any):
        super().__init__(**options)
        self._on_event = on_event

    async def _handle_event(self, eio_sid: str, namespace: str, id: int | None, data: typing.Any) -> None:
        self._on_event(eio_sid, namespace or "/", id, data)


#: python-engineio's Tornado handler class for ``server`` (a socketio.AsyncServer).
tornado_handler = socketio.get_tornado_handler


async def send_event(server: socketio.AsyncServer, eio_sid: str, namespace: str, data: list) -> None:
    """Send the event ``data`` (``[name, *args]``) to one namespace connection of the Engine.IO session ``eio_sid``."""
    await server._send_packet(eio_sid, server.packet_class(socketio.packet.EVENT, data=data, namespace=namespace))


async def send_ack(server: socketio.AsyncServer, eio_sid: str, namespace: str, ack_id: int, args: list) -> None:
    """Acknowledge the client's event ``ack_id`` with ``args``."""
    await server._send_packet(eio_sid, server.packet_class(socketio.packet.ACK, data=args, namespace=namespace,
                                                           id=ack_id))


def connection_of(server: socketio.AsyncServer, eio_sid: str, namespace: str) -> str | None:
    """The sid of the namespace connection ``namespace`` of the Engine.IO session ``eio_sid``, if connected."""
    sid = server.manager.sid_from_eio_sid(eio_sid, namespace)
    if sid is None or not server.manager.is_connected(sid, namespace):
        return None
    return sid


def session_of(server: socketio.AsyncServer, sid: str, namespace: str) -> str:
    """The Engine.IO session that carries the namespace connection ``sid``."""
    return server.manager.eio_sid_from_sid(sid, namespace)


def session_alive(server: socketio.AsyncServer, eio_sid: str) -> bool:
    """Whether the Engine.IO session ``eio_sid`` is still open.

    python-socketio does not report a client that left while its connect
    handler was running (the namespace is only pre-connected then), and
    would mark it connected afterwards: the transport asks before it accepts.
    """
    return eio_sid in server.eio.sockets


def backlog(server: socketio.AsyncServer, eio_sid: str) -> int:
    """How many Engine.IO packets wait in the session ``eio_sid`` for its client to fetch them (0 if it is gone).

    python-engineio queues what is sent without a bound: a long-polling client
    that stops polling makes it grow until the keepalive ends the session.
    """
    socket = server.eio.sockets.get(eio_sid)
    return socket.queue.qsize() if socket is not None else 0
