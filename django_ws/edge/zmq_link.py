"""The edge's ZeroMQ link to its workers and to other Django processes.

The edge binds two ROUTER sockets and never blocks on either:

* on the push endpoint, events for workers (Connect, Data, Disconnect, Ping),
  each addressed to one worker by its routing id: a connection is pinned to
  the worker that accepted it, so its frames stay in order on one pipe.
  Hello heartbeats from workers arrive on the same socket.
* on the sub endpoint, what workers and other Django processes send to
  clients (Accept, Deny, Send, Close, Join, Leave, GroupSend, SendTo,
  CloseConnections, Presence), each carrying a connection id that the core turns into its
  connection with a dict lookup: O(1) per reply.

This module owns the sockets, the edge-triggered FD pump and the batching of
client frames; what the messages mean is the core's business
(:mod:`django_ws.edge.core`). Every send is non-blocking: one that would
block (the worker's queue is at its high-water mark) or cannot be routed
(the worker is gone) is reported back to the core, which closes the affected
connections with a code that says why instead of dropping a frame.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import typing
import uuid

import zmq
import zmq.asyncio

from django_ws import links, security, wire, zmq_frames

if typing.TYPE_CHECKING:  # pragma: no cover
    from .core import Connection, WorkerState

logger = logging.getLogger("django_ws.edge")

#: A batch this long is sent at once instead of at the end of the loop turn.
BATCH_LIMIT = 64


class LinkEvents(typing.Protocol):
    """What the link reports; the edge passes each to the core and carries out the actions."""

    def worker_message(self, identity: bytes, message: wire.Message) -> None: ...
    def reply_message(self, identity: bytes, message: wire.Message) -> None: ...
    def send_failed(self, worker: WorkerState, message: wire.Message | None,
                    connections: typing.Sequence[Connection]) -> None: ...
    def worker_unreachable(self, worker: WorkerState) -> None: ...


class ZmqLink:
    """The two ROUTER sockets of one edge, read from the asyncio loop without a future per message."""

    def __init__(self, push_endpoint: str, sub_endpoint: str, *, queue_limit: int, events: LinkEvents):
        self.push_endpoint, self.sub_endpoint = push_endpoint, sub_endpoint
        self.queue_limit = queue_limit
        self.events = events
        #: worker identity -> client frames waiting for the end of this loop turn.
        self._batches: dict[bytes, _Batch] = {}
        self._flush_scheduled = False
        self.authenticator = None

    def start(self) -> None:
        endpoints = (self.push_endpoint, self.sub_endpoint)
        for endpoint in security.exposed_endpoints(endpoints):
            logger.warning(
                "WARNING: %s is reachable from other hosts and WS_CURVE is not set: anyone who can "
                "connect to it can pose as a worker or send to any client. Set WS_CURVE "
                "(manage.py ws_keygen), or bind to 127.0.0.1 or an ipc:// endpoint.", endpoint)
        # An asyncio context for the ZAP handler; the two sockets themselves
        # are plain ones that _Pump reads from the loop (see there why).
        self.context = zmq.asyncio.Context()
        # Before the binds: a CURVE socket must find the ZAP handler in place.
        self.authenticator = security.start_authenticator(self.context, endpoints)
        self.to_workers = self._bind(zmq.ROUTER, self.push_endpoint)
        # Unroutable sends raise instead of vanishing: that is how a vanished
        # worker is noticed on the very next frame.
        self.to_workers.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.replies = self._bind(zmq.ROUTER, self.sub_endpoint)
        # The running loop, or the one set for this thread (LiveWebSocketServer starts us outside it).
        loop = self._loop = asyncio.get_event_loop()
        self._workers_pump = _Pump(loop, self.to_workers, lambda f: self._decode(f, self.events.worker_message))
        self._replies_pump = _Pump(loop, self.replies, lambda f: self._decode(f, self.events.reply_message))
        #: (socket, its monitor's pump) for each tcp:// endpoint: see _watch_refusals.
        self.refusals = links.RefusalLog()
        self._monitors = [(sock, self._watch_refusals(loop, sock, endpoint))
                          for sock, endpoint in ((self.to_workers, self.push_endpoint), (self.replies, self.sub_endpoint))
                          if endpoint.startswith("tcp://")]

    def _watch_refusals(self, loop: asyncio.AbstractEventLoop, sock: zmq.Socket, endpoint: str) -> _Pump:
        """Log the peers whose handshakes this endpoint refuses (links.RefusalLog)."""
        address = f"inproc://django-ws-monitor-{uuid.uuid4().hex}"
        sock.monitor(address, links.RefusalLog.MONITOR_EVENTS)
        monitor = zmq.Socket(self.context, zmq.PAIR)  # a plain socket, read by a pump like the others
        monitor.connect(address)
        return _Pump(loop, monitor, self.refusals.watch(endpoint, security.uses_curve(endpoint)))

    def _bind(self, kind: int, endpoint: str) -> zmq.Socket:
        sock = zmq.Socket(self.context, kind)
        sock.setsockopt(zmq.SNDHWM, self.queue_limit)
        sock.setsockopt(zmq.RCVHWM, self.queue_limit)
        sock.setsockopt(zmq.LINGER, 500)
        # A worker or sender that reconnects after a partition comes back
        # with the same routing id while the dead connection may linger:
        # the new one takes over instead of waiting for the old to time out.
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        links.keep_alive(sock)
        security.secure_server(sock, endpoint)
        if endpoint.startswith("ipc://"):
            _prepare_ipc_path(endpoint[len("ipc://"):])
        old_umask = os.umask(0o077)  # ipc sockets: only the owner may connect
        try:
            sock.bind(endpoint)
        finally:
            os.umask(old_umask)
        return sock

    def stop(self) -> None:
        self._workers_pump.stop()
        self._replies_pump.stop()
        for sock, pump in self._monitors:
            pump.stop()
            sock.disable_monitor()
            pump.sock.close(linger=0)
        for sock in (self.to_workers, self.replies):
            sock.close(linger=500)
        if self.authenticator is not None:
            self.authenticator.stop()
        self.context.term()

    # -- receiving -----------------------------------------------------------------

    def _decode(self, frames: list, handle: typing.Callable[[bytes, wire.Message], None]) -> None:
        if len(frames) < 2:
            logger.warning("edge dropped a message of %d frames", len(frames))
            return
        identity = frames[0]
        try:
            for message in wire.iter_decode(frames[1:]):
                try:
                    handle(identity, message)
                except Exception:
                    logger.exception("edge failed to handle %s; dropped it", type(message).__name__)
        except wire.ProtocolError as exc:
            logger.warning("edge dropped a malformed message: %s", exc)

    # -- sending -----------------------------------------------------------------------

    def forward(self, worker: WorkerState, conn: Connection, header: bytes, payload: bytes) -> None:
        """Queue one client message for ``worker``.

        It joins the worker's batch, sent when this turn of the loop ends (see
        _flush): every client frame that one turn read goes to a worker in one
        ZeroMQ message.
        """
        batch = self._batches.get(worker.identity)
        if batch is None:
            batch = self._batches[worker.identity] = _Batch(worker)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon(self._flush)
        batch.frames += (header, payload)
        batch.connections.append(conn)
        if len(batch.connections) >= BATCH_LIMIT:
            self._send_batch(self._batches.pop(worker.identity))

    def _flush(self) -> None:
        """End of a loop turn: send each worker its batch of client frames."""
        self._flush_scheduled = False
        batches, self._batches = self._batches, {}
        for batch in batches.values():
            self._send_batch(batch)

    def _send_batch(self, batch: _Batch) -> None:
        if not self._push(batch.worker, batch.frames):
            self.events.send_failed(batch.worker, None, batch.connections)

    def send(self, worker: WorkerState, message: wire.Message) -> None:
        """Send one message to ``worker``, after the client frames batched for it (they came first)."""
        batch = self._batches.pop(worker.identity, None)
        if batch is not None:
            self._send_batch(batch)
        if not self._push(worker, message.encode()):
            self.events.send_failed(worker, message, ())

    def _push(self, worker: WorkerState, frames: list) -> bool:
        """Queue ``frames`` for ``worker`` without blocking; False if it could not.

        A worker whose socket is gone is reported (worker_unreachable) before
        this returns False.
        """
        try:
            zmq_frames.send_now(self.to_workers, worker.identity, frames)
            return True
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            self.events.worker_unreachable(worker)
            return False
        finally:
            self._workers_pump.wake()  # a send, failed or not, may have taken the FD's signal

    def answer(self, identity: bytes, message: wire.Message) -> None:
        """Answer a sender on the sub endpoint (an Ack, a Members); a sender that left is not waited for."""
        try:
            zmq_frames.send_now(self.replies, identity, message.encode())
        except zmq.ZMQError as exc:
            logger.warning("could not answer a sender (%s): %s", type(message).__name__, exc)
        finally:
            self._replies_pump.wake()


class _Batch:
    """Client frames for one worker, gathered during one turn of the loop."""

    __slots__ = ("connections", "frames", "worker")

    def __init__(self, worker: WorkerState):
        self.worker = worker
        self.frames: list[bytes] = []
        self.connections: list[Connection] = []


class _Pump:
    """Reads a ZeroMQ socket from the asyncio loop, with no future per message.

    zmq.asyncio wraps every send and receive in a future, which costs more
    than the send itself on the hot path, and it reports a non-blocking
    send's failure only through that future (so a full queue went unnoticed).
    Here the socket is a plain one: sends are direct calls that raise, and
    this pump drains what arrives.

    ZeroMQ's FD is edge-triggered, and any operation on the socket, a send
    included, may consume its signal while messages wait. So the owner calls
    ``wake()`` after each send on the socket: the pump then drains it once
    more at the next turn of the loop, whether or not the FD fires again.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: zmq.Socket, handle: typing.Callable[[list], None],
                 limit: int = 1000):
        self.loop, self.sock, self.handle, self.limit = loop, sock, handle, limit
        self._fd = sock.FD
        self._receive = zmq_frames.receiver(sock)
        loop.add_reader(self._fd, self._drain)
        self._schedule()  # messages may have arrived before the reader was added

    def _schedule(self) -> None:
        self._scheduled = True
        self.loop.call_soon(self._drain)

    def wake(self) -> None:
        """Called after a send: drain at the next turn if messages wait (checking is cheap)."""
        if not self._scheduled and not self.sock.closed and zmq_frames.readable(self.sock):
            self._schedule()

    def _drain(self) -> None:
        self._scheduled = False
        sock, handle, receive, readable = self.sock, self.handle, self._receive, zmq_frames.readable
        # Asking EVENTS before each read costs less than the zmq.Again that
        # ending each drain with a failed read would raise (pyzmq builds its
        # message in Python).
        for _ in range(self.limit):
            try:
                if sock.closed or not readable(sock):
                    return
                frames = receive()
            except zmq.Again:
                return
            except zmq.ZMQError:
                if sock.closed:
                    return
                raise
            handle(frames)
        self._schedule()  # a long burst: let the loop serve clients, then go on

    def stop(self) -> None:
        self.loop.remove_reader(self._fd)


class EndpointInUse(RuntimeError):
    """Another process is already bound to an endpoint this edge wants."""


def _prepare_ipc_path(path: str) -> None:
    """Make the socket's directory if needed and clear a stale socket file.

    A socket file that still accepts connections belongs to a running
    server: refuse to steal it rather than silently splitting the traffic.
    """
    directory = os.path.dirname(path)
    if directory and not os.path.isdir(directory):
        old_umask = os.umask(0o077)  # every directory made here is its owner's only
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        finally:
            os.umask(old_umask)
    if directory and os.stat(directory).st_uid != os.getuid():
        # In a shared temporary directory, another user could have made it first.
        raise EndpointInUse(f"ipc://{path}: its directory {directory} belongs to another user")
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # stale: left by a server that died
        else:
            raise EndpointInUse(
                f"ipc://{path} is in use by another running server (another run_wsserver of this project?). "
                "Stop it, or give this one endpoints of its own with --push-socket and --sub-socket "
                "(or the WS_PUSH_SOCKET and WS_SUB_SOCKET settings).")
        finally:
            probe.close()
