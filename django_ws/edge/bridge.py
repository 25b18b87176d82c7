"""The edge's side of ZeroMQ: the worker pool, handshakes, replies and groups.

The edge binds two ROUTER sockets and never blocks on either:

* on the push endpoint, events for workers (Connect, Data, Disconnect, Ping),
  each addressed to one worker by its routing id: a connection is pinned to
  the worker that accepted it, so its frames stay in order on one pipe.
  Hello heartbeats from workers arrive on the same socket.
* on the sub endpoint, what workers and other Django processes send to
  clients (Accept, Deny, Send, Close, Join, Leave, GroupSend), each carrying
  a connection id that a dict lookup turns into its connection: O(1) per
  reply, whatever the number of connections.

Every send is non-blocking. A send that would block (the worker's queue is
at its high-water mark) or cannot be routed (the worker is gone) closes the
affected connection with a code that says why, instead of dropping a frame.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import time
import typing
import uuid

import zmq
import zmq.asyncio

from django_ws import links, security, wire
from django_ws.handlers import CloseCode

if typing.TYPE_CHECKING:  # pragma: no cover
    from .handler import EdgeWebSocketHandler

logger = logging.getLogger("django_ws.edge")

#: What handshake() returns when workers are up but every one is at capacity.
AT_CAPACITY = "at capacity"


class WorkerState:
    """What the edge knows of one worker: liveness, capacity, its connections."""

    __slots__ = ("identity", "worker_id", "capacity", "load", "last_seen", "connections", "backlog")

    def __init__(self, identity: bytes, hello: wire.Hello):
        self.identity = identity
        self.worker_id = hello.worker_id
        self.connections: set[str] = set()
        #: Disconnects its full queue refused: retried each heartbeat, so the
        #: worker still runs on_close for connections the edge closed meanwhile.
        self.backlog: list[wire.Disconnect] = []
        self.update(hello)

    def update(self, hello: wire.Hello) -> None:
        self.capacity = hello.capacity
        self.load = hello.load
        self.last_seen = time.monotonic()

    @property
    def placement_load(self) -> int:
        # The worker's own count lags by a heartbeat; ours is exact for this
        # edge. Use whichever is larger so a burst of handshakes spreads out.
        return max(self.load, len(self.connections))

    def has_room(self) -> bool:
        return not self.capacity or self.placement_load < self.capacity


class Stats:
    """Counters for the stats endpoint and the shutdown report."""

    def __init__(self):
        self.frames_in = 0
        self.frames_out = 0
        self.connections_total = 0
        self.refused = collections.Counter()
        self.closed_by_code = collections.Counter()


class Bridge:
    """One edge's ZeroMQ endpoints and the state they share with the handlers."""

    def __init__(self, push_endpoint: str, sub_endpoint: str, *, heartbeat_interval: float,
                 heartbeat_timeout: float, handshake_timeout: float, queue_limit: int, send_key_ttl: float = 60.0):
        self.edge_id = uuid.uuid4().hex[:16]
        self.push_endpoint, self.sub_endpoint = push_endpoint, sub_endpoint
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.handshake_timeout = handshake_timeout
        self.queue_limit = queue_limit
        self._next_id = 0
        self.connections: dict[str, EdgeWebSocketHandler] = {}
        self.pending: dict[str, asyncio.Future] = {}
        #: Handshakes under way: a worker's Close may overtake the upgrade.
        self.upgrading: dict[str, EdgeWebSocketHandler] = {}
        self.workers: dict[bytes, WorkerState] = {}
        self.groups: dict[str, set[str]] = {}
        self.stats = Stats()
        self.on_worker_change: typing.Callable[[str, WorkerState], None] | None = None
        self._tasks: list[asyncio.Task] = []
        self.authenticator = None
        #: worker identity -> client frames waiting for the end of this loop turn.
        self._batches: dict[bytes, _Batch] = {}
        self._flush_scheduled = False
        #: Idempotency keys of recent sends (their ref) -> (expiry, clients reached): see _once.
        self._recent_sends: collections.OrderedDict[str, tuple[float, int]] = collections.OrderedDict()
        self.send_key_ttl = send_key_ttl

    # -- lifecycle -------------------------------------------------------------

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
        self.events = self._bind(zmq.ROUTER, self.push_endpoint)
        # Unroutable sends raise instead of vanishing: that is how a vanished
        # worker is noticed on the very next frame.
        self.events.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.replies = self._bind(zmq.ROUTER, self.sub_endpoint)
        # The running loop, or the one set for this thread (LiveWebSocketServer starts us outside it).
        loop = self._loop = asyncio.get_event_loop()
        self._events_pump = _Pump(loop, self.events, lambda frames: self._handle_safely(self._on_worker_event, frames))
        self._replies_pump = _Pump(loop, self.replies, lambda frames: self._handle_safely(self._on_reply, frames))
        #: (socket, its monitor's pump) for each tcp:// endpoint: see _watch_refusals.
        self.refusals = links.RefusalLog()
        self._monitors = [(sock, self._watch_refusals(loop, sock, endpoint))
                          for sock, endpoint in ((self.events, self.push_endpoint), (self.replies, self.sub_endpoint))
                          if endpoint.startswith("tcp://")]
        self._tasks = [asyncio.ensure_future(self._heartbeat())]

    def _watch_refusals(self, loop, sock, endpoint: str) -> "_Pump":
        """Log the peers whose handshakes this endpoint refuses (links.RefusalLog)."""
        address = f"inproc://django-ws-monitor-{uuid.uuid4().hex}"
        sock.monitor(address, links.RefusalLog.MONITOR_EVENTS)
        monitor = zmq.Socket(self.context, zmq.PAIR)  # a plain socket, read by a pump like the others
        monitor.connect(address)
        return _Pump(loop, monitor, self.refusals.watch(endpoint, security.uses_curve(endpoint)))

    def _bind(self, kind: int, endpoint: str):
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
        for task in self._tasks:
            task.cancel()
        self._events_pump.stop()
        self._replies_pump.stop()
        for sock, pump in self._monitors:
            pump.stop()
            sock.disable_monitor()
            pump.sock.close(linger=0)
        for sock in (self.events, self.replies):
            sock.close(linger=500)
        if self.authenticator is not None:
            self.authenticator.stop()
        self.context.term()

    # -- connections -------------------------------------------------------------

    def new_conn_id(self) -> str:
        self._next_id += 1
        return f"{self.edge_id}.{self._next_id:x}"

    def pick_worker(self) -> WorkerState | None:
        """The least-loaded live worker with room, or None."""
        best = None
        for worker in self.workers.values():
            if worker.has_room() and (best is None or worker.placement_load < best.placement_load):
                best = worker
        return best

    async def handshake(self, conn: EdgeWebSocketHandler, route: str, request: dict):
        """Ask a worker to take ``conn``; return its Accept or Deny, or None.

        A worker that vanishes mid-handshake (killed, or leaving on SIGTERM)
        does not fail the client: the next least-loaded worker is asked.
        """
        self.upgrading[conn.conn_id] = conn
        answer = None
        try:
            for _ in range(3):
                worker = self.pick_worker()
                if worker is None:
                    return AT_CAPACITY if self.workers else None
                conn.worker = worker
                future = asyncio.get_running_loop().create_future()
                self.pending[conn.conn_id] = future
                worker.connections.add(conn.conn_id)
                try:
                    if not self._to_worker(worker, wire.Connect(conn.conn_id, route, request)):
                        worker.connections.discard(conn.conn_id)
                        continue
                    answer = await asyncio.wait_for(future, self.handshake_timeout)
                except asyncio.TimeoutError:
                    logger.warning("worker %s did not answer the handshake of %s in %.1fs", worker.worker_id,
                                   conn.conn_id, self.handshake_timeout)
                    return None
                finally:
                    self.pending.pop(conn.conn_id, None)
                if answer is not None or worker.identity in self.workers:
                    return answer
            return None
        finally:
            if not isinstance(answer, wire.Accept):
                self.upgrading.pop(conn.conn_id, None)

    def opened(self, conn: EdgeWebSocketHandler) -> None:
        self.upgrading.pop(conn.conn_id, None)
        self.connections[conn.conn_id] = conn
        self.stats.connections_total += 1
        for binary, payload in conn.early_sends:
            self.stats.frames_out += 1
            conn.deliver(binary, payload)
        conn.early_sends.clear()

    def forward(self, conn: EdgeWebSocketHandler, binary: bool, payload: bytes) -> bool:
        """Pass one client message to the connection's worker; False if it has none.

        The message joins the worker's batch, sent when this turn of the loop
        ends (see _flush): every client frame that one turn read goes to a
        worker in one ZeroMQ message. A worker that cannot take the batch
        gets each of its connections closed with 1013 there.
        """
        worker = conn.worker
        if worker is None:
            return False
        self.stats.frames_in += 1
        headers = conn.data_headers
        if headers is None:
            # The Data header of a connection never changes but for the
            # binary flag: encode it once, not once per frame.
            text, bin_ = (wire.Data(conn.conn_id, conn.route, flag, b"").encode()[0] for flag in (False, True))
            headers = conn.data_headers = (text, bin_)
        batch = self._batches.get(worker.identity)
        if batch is None:
            batch = self._batches[worker.identity] = _Batch(worker)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon(self._flush)
        batch.frames += (headers[binary], payload)
        batch.connections.append(conn)
        if len(batch.connections) >= _BATCH_LIMIT:
            self._send_batch(self._batches.pop(worker.identity))
        return True

    def _flush(self) -> None:
        """End of a loop turn: send each worker its batch of client frames."""
        self._flush_scheduled = False
        batches, self._batches = self._batches, {}
        for batch in batches.values():
            self._send_batch(batch)

    def _send_batch(self, batch: "_Batch") -> None:
        worker = batch.worker
        if self.workers.get(worker.identity) is not worker:
            return  # lost meanwhile: _worker_lost has closed its connections
        if not self._push(worker, batch.frames) and worker.identity in self.workers:
            logger.warning("worker %s is %d messages behind; closing the %d connections that sent it more",
                           worker.worker_id, self.queue_limit, len(batch.connections))
            for conn in batch.connections:
                conn.close(CloseCode.TRY_AGAIN_LATER, "worker unavailable")

    def release(self, conn: EdgeWebSocketHandler, code: int, reason: str) -> None:
        """The client connection has ended: tell its worker, forget its groups. Idempotent."""
        conn_id = conn.conn_id
        if conn_id is None or conn.released:
            return
        conn.released = True
        self.connections.pop(conn_id, None)
        self.upgrading.pop(conn_id, None)
        self.stats.closed_by_code[code] += 1
        for group in conn.groups:
            members = self.groups.get(group)
            if members is not None:
                members.discard(conn_id)
                if not members:
                    del self.groups[group]
        conn.groups.clear()
        worker = conn.worker
        if worker is not None and worker.identity in self.workers:
            worker.connections.discard(conn_id)
            disconnect = wire.Disconnect(conn_id, conn.route or "", code, reason)
            if not self._to_worker(worker, disconnect, quiet=True) and self.workers.get(worker.identity) is worker:
                worker.backlog.append(disconnect)

    # -- sending to workers --------------------------------------------------------

    def _to_worker(self, worker: WorkerState, message: wire.Message, quiet: bool = False) -> bool:
        batch = self._batches.pop(worker.identity, None)
        if batch is not None:  # what the clients sent first goes first
            self._send_batch(batch)
            if worker.identity not in self.workers:
                return False
        if self._push(worker, message.encode()):
            return True
        if not quiet and worker.identity in self.workers:
            logger.warning("worker %s is %d messages behind; refusing more for it", worker.worker_id,
                           self.queue_limit)
        return False

    def _push(self, worker: WorkerState, frames: list) -> bool:
        """Queue ``frames`` for ``worker`` without blocking; False if it could not.

        False with the worker still in ``self.workers``: its queue is full.
        A worker whose socket is gone is handled here: _worker_lost closes
        its connections with 1012.
        """
        try:
            self.events.send_multipart([worker.identity, *frames], flags=zmq.DONTWAIT, copy=False)
            return True
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            self._worker_lost(worker, "its socket disconnected")
            return False
        finally:
            self._events_pump.wake()  # a send, failed or not, may have taken the FD's signal

    # -- receiving -------------------------------------------------------------------

    def _handle_safely(self, handle, frames: list) -> None:
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

    def _on_worker_event(self, identity: bytes, message: wire.Message) -> None:
        if isinstance(message, wire.Goodbye):
            worker = self.workers.get(identity)
            if worker is not None:
                self._worker_lost(worker, "it is stopping")
            return
        if not isinstance(message, wire.Hello):
            logger.warning("edge dropped an unexpected %s on the push endpoint", type(message).__name__)
            return
        worker = self.workers.get(identity)
        if worker is None:
            worker = self.workers[identity] = WorkerState(identity, message)
            logger.info("worker %s joined (capacity %s)", worker.worker_id, worker.capacity or "unlimited")
            self._to_worker(worker, wire.Ping(self.edge_id), quiet=True)
            if self.on_worker_change:
                self.on_worker_change("joined", worker)
        else:
            worker.update(message)

    def _on_reply(self, identity: bytes, message: wire.Message) -> None:
        worker = self.workers.get(identity)
        if worker is not None:
            # Any reply is a sign of life: under a burst the worker's own Hello
            # may come late, and it must not be taken for dead meanwhile.
            worker.last_seen = time.monotonic()
        if isinstance(message, wire.Send):
            conn = self.connections.get(message.conn_id)
            if conn is not None:
                self.stats.frames_out += 1
                conn.deliver(message.binary, message.payload)
            elif message.conn_id in self.upgrading:
                # Sent from on_connect: the client gets it first thing after the upgrade.
                self.upgrading[message.conn_id].early_sends.append((message.binary, message.payload))
            else:
                logger.debug("send to gone connection %s dropped", message.conn_id)
        elif isinstance(message, wire.GroupSend):
            if message.ref:
                delivered = self._once(message.ref, lambda: self._group_send(message))
                self._answer(identity, wire.Ack(message.ref, self.edge_id, delivered))
            else:
                self._group_send(message)
        elif isinstance(message, wire.SendTo):
            if message.ref:
                delivered = self._once(message.ref, lambda: self._send_to(message))
                self._answer(identity, wire.Ack(message.ref, self.edge_id, delivered))
            else:
                self._send_to(message)
        elif isinstance(message, wire.Presence):
            members = sorted(self.groups.get(message.group, ()))
            self._answer(identity, wire.Members(message.ref, self.edge_id, {"ids": members}))
        elif isinstance(message, (wire.Accept, wire.Deny)):
            future = self.pending.get(message.conn_id)
            if future is not None and not future.done():
                future.set_result(message)
        elif isinstance(message, wire.Close):
            conn = self.connections.get(message.conn_id)
            if conn is not None:
                conn.close(message.code, message.reason)
            elif message.conn_id in self.upgrading:
                # Closed by the worker right after accepting (it was full, or
                # on_connect's handler failed at once): close on open.
                self.upgrading[message.conn_id]._refuse_after_upgrade = (message.code, message.reason)
        elif isinstance(message, wire.Join):
            conn = self.connections.get(message.conn_id) or self.upgrading.get(message.conn_id)
            if conn is not None:
                self.groups.setdefault(message.group, set()).add(message.conn_id)
                conn.groups.add(message.group)
        elif isinstance(message, wire.Leave):
            conn = self.connections.get(message.conn_id) or self.upgrading.get(message.conn_id)
            members = self.groups.get(message.group)
            if conn is not None and members is not None:
                members.discard(message.conn_id)
                conn.groups.discard(message.group)
                if not members:
                    del self.groups[message.group]
        else:
            logger.warning("edge dropped an unexpected %s on the sub endpoint", type(message).__name__)

    def _send_to(self, message: wire.SendTo) -> int:
        conn = self.connections.get(message.conn_id)
        if conn is None:
            return 0
        self.stats.frames_out += 1
        conn.deliver(message.binary, message.payload)
        return 1

    def _once(self, ref: str, deliver: typing.Callable[[], int]) -> int:
        """Deliver a sender's message unless its ref was seen within ``send_key_ttl``; return clients reached.

        A sender's ref is its idempotency key: a retry with the same key (or
        the original, arriving late after a partition) is acknowledged with
        the first delivery's count and not delivered twice.
        """
        now = time.monotonic()
        recent = self._recent_sends
        while recent and (next(iter(recent.values()))[0] <= now or len(recent) > _RECENT_SENDS_LIMIT):
            recent.popitem(last=False)  # oldest first: every entry lives the same ttl
        seen = recent.get(ref)
        if seen is not None:
            return seen[1]
        delivered = deliver()
        if self.send_key_ttl > 0:
            recent[ref] = (now + self.send_key_ttl, delivered)
        return delivered

    def _group_send(self, message: wire.GroupSend) -> int:
        members = self.groups.get(message.group)
        if not members:
            return 0
        delivered = 0
        connections = self.connections
        for conn_id in list(members):
            if conn_id != message.exclude:
                conn = connections.get(conn_id)
                if conn is not None:
                    conn.deliver(message.binary, message.payload)
                    delivered += 1
        self.stats.frames_out += delivered
        return delivered

    def _answer(self, identity: bytes, message: wire.Message) -> None:
        try:
            self.replies.send_multipart([identity, *message.encode()], flags=zmq.DONTWAIT)
        except zmq.ZMQError as exc:
            logger.warning("could not answer a sender (%s): %s", type(message).__name__, exc)
        finally:
            self._replies_pump.wake()

    # -- heartbeats --------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        while True:
            now = time.monotonic()
            for worker in list(self.workers.values()):
                if now - worker.last_seen > self.heartbeat_timeout:
                    self._worker_lost(worker, f"silent for {now - worker.last_seen:.1f}s")
                    continue
                self._to_worker(worker, wire.Ping(self.edge_id), quiet=True)
                while worker.backlog and self._to_worker(worker, worker.backlog[0], quiet=True):
                    worker.backlog.pop(0)
            await asyncio.sleep(self.heartbeat_interval)

    def _worker_lost(self, worker: WorkerState, why: str) -> None:
        if self.workers.pop(worker.identity, None) is None:
            return
        logger.warning("worker %s lost (%s); closing its %d connections with 1012", worker.worker_id, why,
                       len(worker.connections))
        for conn_id in list(worker.connections):
            future = self.pending.get(conn_id)
            if future is not None and not future.done():
                future.set_result(None)
            conn = self.connections.get(conn_id)
            if conn is not None:
                conn.worker = None
                conn.close(CloseCode.SERVICE_RESTART, "worker lost")
            elif conn_id in self.upgrading:  # accepted, upgrade still under way
                self.upgrading[conn_id]._refuse_after_upgrade = (CloseCode.SERVICE_RESTART, "worker lost")
        worker.connections.clear()
        if self.on_worker_change:
            self.on_worker_change("lost", worker)


#: A batch this long is sent at once instead of at the end of the loop turn.
_BATCH_LIMIT = 64
#: Most idempotency keys an edge remembers, whatever WS_SEND_KEY_TTL says.
_RECENT_SENDS_LIMIT = 100_000


class _Batch:
    """Client frames for one worker, gathered during one turn of the loop."""

    __slots__ = ("worker", "frames", "connections")

    def __init__(self, worker: WorkerState):
        self.worker = worker
        self.frames: list[bytes] = []
        self.connections: list[EdgeWebSocketHandler] = []


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
        loop.add_reader(self._fd, self._drain)
        self._schedule()  # messages may have arrived before the reader was added

    def _schedule(self) -> None:
        self._scheduled = True
        self.loop.call_soon(self._drain)

    def wake(self) -> None:
        """Called after a send: drain at the next turn if messages wait (checking is cheap)."""
        if not self._scheduled and not self.sock.closed and self.sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            self._schedule()

    def _drain(self) -> None:
        self._scheduled = False
        recv, handle = self.sock.recv_multipart, self.handle
        for _ in range(self.limit):
            try:
                frames = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError:
                if self.sock.closed:
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
        os.makedirs(directory, mode=0o700, exist_ok=True)
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # stale: left by a server that died
        else:
            raise EndpointInUse(f"ipc://{path} is in use by another running server")
        finally:
            probe.close()
