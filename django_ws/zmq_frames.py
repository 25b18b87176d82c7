"""Multipart send and receive on the hot paths of the edge and the worker, without pyzmq's per-frame sugar.

Every client message costs the edge and the worker one multipart receive
and one multipart send each way. pyzmq's ``recv_multipart`` asks ``getsockopt(RCVMORE)``
through its Python wrappers for each frame, and ``send_multipart`` checks
each frame's type and combines ``SNDMORE | flags`` as ``IntFlag`` members,
arithmetic that runs in Python. ``zmq.green``'s socket adds, per frame,
``flags & NOBLOCK`` on ``IntFlag`` and a re-read of the socket's state.
Here the flags are plain ints and the calls go to pyzmq's compiled socket
(``zmq.backend.Socket``, the base class of ``zmq.Socket`` and of
``zmq.green.Socket`` alike), which takes bytes and does the same sends and
receives.

Under gevent a send that would block still waits the green way: on EAGAIN
the message goes to the green socket's own ``send_multipart``, after a read
of ``EVENTS`` (which the green socket hooks to refresh its readiness). A
receive never blocks here: the worker's I/O loop polls first and receives
with NOBLOCK. The edge never waits: :func:`send_now` sends or raises.
The names used are checked when this module is imported.
"""

from __future__ import annotations

import typing

import zmq
from zmq.backend import Socket as _CompiledSocket

_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE = int(zmq.SNDMORE)
_RCVMORE = int(zmq.RCVMORE)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)

if not issubclass(zmq.Socket, _CompiledSocket):  # pragma: no cover - a pyzmq that changed its layout
    raise ImportError(f"pyzmq {zmq.__version__}: zmq.Socket no longer derives from zmq.backend.Socket; "
                      "django_ws/zmq_frames.py needs updating")

#: A plain or a green ZeroMQ socket, whatever it carries (pyzmq's Socket is generic in its stubs).
AnySocket: typing.TypeAlias = "zmq.Socket[typing.Any]"

_recv = _CompiledSocket.recv
_send = _CompiledSocket.send
_get = _CompiledSocket.get


def readable(socket: AnySocket) -> bool:
    """Whether a message waits on ``socket`` (an open, plain one): a read of ``EVENTS``, cheaper than a failed receive."""
    events = typing.cast(int, _get(socket, _EVENTS))  # an int option
    return bool(events & _POLLIN)


def _send_parts(socket: AnySocket, frames: typing.Sequence[bytes], start: int, flags: int) -> None:
    """Send ``frames[start:]`` with ``flags``, each but the last with SNDMORE: the rest of one message."""
    last = len(frames) - 1
    for i in range(start, last):
        _send(socket, frames[i], _SNDMORE | flags)
    _send(socket, frames[last], flags)


def receiver(socket: AnySocket) -> typing.Callable[[], list[bytes]]:
    """A callable that receives one multipart message from ``socket`` without blocking.

    It raises ``zmq.Again`` when nothing is waiting, as ``recv_multipart(NOBLOCK)`` does.
    """

    def recv_frames() -> list[bytes]:
        frames = [_recv(socket, _NOBLOCK)]
        while _get(socket, _RCVMORE):
            frames.append(_recv(socket, _NOBLOCK))
        return frames

    return recv_frames


def sender(socket: AnySocket) -> typing.Callable[[list[bytes]], None]:
    """A callable that sends a list of bytes frames on ``socket`` as one message.

    On a plain socket it blocks as ``send_multipart`` would (up to SNDTIMEO,
    then ``zmq.Again``). On a green socket it tries without blocking first
    and, only when the queue is full, waits in the green socket's own
    ``send_multipart``. Either way the first frame decides: once ZeroMQ took
    it, it takes the rest of the message (messages are atomic).
    """
    if type(socket).send is zmq.Socket.send:

        def send_frames(frames: list[bytes]) -> None:
            _send_parts(socket, frames, 0, 0)

        return send_frames

    def send_green(frames: list[bytes]) -> None:
        last = len(frames) - 1
        try:
            _send(socket, frames[0], _SNDMORE | _NOBLOCK if last else _NOBLOCK)
        except zmq.Again:
            socket.get(_EVENTS)  # the green socket re-reads its readiness, then waits for room
            socket.send_multipart(frames)
            return
        if last:  # never blocks (the message is already admitted), and must not block the hub
            _send_parts(socket, frames, 1, _NOBLOCK)

    return send_green


def send_now(socket: AnySocket, identity: bytes, frames: typing.Sequence[bytes]) -> None:
    """``send_multipart([identity, *frames], zmq.DONTWAIT)`` on a ROUTER socket, a frame per compiled call.

    Raises ``zmq.Again`` (the peer's queue is full) or ``zmq.ZMQError``
    (EHOSTUNREACH: no such peer, with ROUTER_MANDATORY) from the first
    frame only: once ZeroMQ took it, it takes the rest of the message.
    """
    if not frames:
        _send(socket, identity, _NOBLOCK)
        return
    _send(socket, identity, _SNDMORE | _NOBLOCK)
    _send_parts(socket, frames, 0, _NOBLOCK)
