"""The worker process: ZeroMQ links to the edges around the dispatcher.

A worker connects to every edge it serves with two DEALER sockets:

* ``events`` to the edge's push endpoint. The edge's ROUTER addresses the
  worker by its routing id; Connect, Data, Disconnect and Ping arrive here and
  Hello heartbeats go back. Only the I/O loop touches this socket.
* ``replies`` to the edge's sub endpoint. Accept, Deny, Send, Close, Join and
  Leave go out here from any pool thread or greenlet, one at a time
  under a lock, because ZeroMQ sockets are not thread-safe. One socket per
  edge per worker, never one per connection.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid

from django_ws import links, wire
from django_ws.conf import ws_settings
from django_ws.exceptions import EdgeUnreachable
from django_ws.security import secure_client

from .dispatcher import Dispatcher
from .modes import Mode

logger = logging.getLogger("django_ws.worker")


class EdgeLink:
    """The worker's two sockets to one edge, and what it knows of that edge."""

    def __init__(self, worker: "Worker", push_endpoint: str, sub_endpoint: str):
        zmq = worker.mode.zmq
        ctx = worker.context
        self.push_endpoint, self.sub_endpoint = push_endpoint, sub_endpoint
        self._zmq = zmq
        self.events = ctx.socket(zmq.DEALER)
        self.events.setsockopt(zmq.ROUTING_ID, worker.worker_id.encode())
        self.events.setsockopt(zmq.RCVHWM, worker.queue_limit)
        self.events.setsockopt(zmq.SNDHWM, 10)  # heartbeats only: stale ones may wait
        self.events.setsockopt(zmq.LINGER, 0)
        links.keep_alive(self.events)
        curve = secure_client(self.events, push_endpoint)  # CURVE for tcp:// when WS_CURVE is set
        #: Handshake monitors of the tcp:// sockets: a refused worker says why (see _heartbeat).
        self.watches: list[links.HandshakeWatch] = []
        who, said = f"worker {worker.worker_id}", set()
        if push_endpoint.startswith("tcp://"):
            self.watches.append(links.HandshakeWatch(self.events, push_endpoint, curve, who, said))
        self.events.connect(push_endpoint)
        self.open_replies(worker, ctx, identity=worker.worker_id)
        if self.sub_endpoint.startswith("tcp://"):
            self.watches.append(links.HandshakeWatch(self.replies, self.sub_endpoint, curve, who, said))
        self.edge_id: str | None = None
        self.last_seen = 0.0

    def open_replies(self, worker: "Worker", ctx, identity: str | None = None) -> None:
        zmq = self._zmq
        self.replies = ctx.socket(zmq.DEALER)
        if identity:
            # The edge counts replies under this id as signs of life, so a
            # worker busy enough to send its Hello late is not taken for dead.
            self.replies.setsockopt(zmq.ROUTING_ID, identity.encode())
        self.replies.setsockopt(zmq.SNDHWM, worker.queue_limit)
        # A send that cannot be queued within the heartbeat timeout means the
        # edge is gone or stuck; the handler then gets ConnectionClosed.
        self.replies.setsockopt(zmq.SNDTIMEO, int(worker.heartbeat_timeout * 1000))
        self.replies.setsockopt(zmq.LINGER, 1000)
        links.keep_alive(self.replies)
        secure_client(self.replies, self.sub_endpoint)
        self.replies.connect(self.sub_endpoint)
        self.lock = worker.mode.lock()

    def outbox(self, frames: list) -> None:
        """Send one message to the edge; safe from any thread or greenlet.

        Raises EdgeUnreachable if the worker is stopping or the edge took
        nothing within the heartbeat timeout (SNDTIMEO): a lost edge must
        not hang a handler's thread forever.
        """
        with self.lock:
            if self.replies.closed:
                raise EdgeUnreachable("worker stopping")
            try:
                self.replies.send_multipart(frames)
            except self._zmq.Again:
                raise EdgeUnreachable(f"edge at {self.sub_endpoint} took nothing in time") from None

    def close(self) -> None:
        for watch in self.watches:
            watch.close()
        self.events.close(linger=0)
        with self.lock:
            self.replies.close()


class Worker:
    """Serves handlers for one or more edges until SIGTERM or SIGINT."""

    def __init__(self, mode: Mode, edges: list[tuple[str, str]], worker_id: str | None = None):
        self.mode = mode
        self.worker_id = worker_id or f"w-{uuid.uuid4().hex[:12]}"
        self.heartbeat_interval = float(ws_settings.WS_HEARTBEAT_INTERVAL)
        self.heartbeat_timeout = float(ws_settings.WS_HEARTBEAT_TIMEOUT)
        self.queue_limit = int(ws_settings.WS_QUEUE_LIMIT)
        self.dispatcher = Dispatcher(mode)
        self.context = mode.zmq.Context()
        self.links = [EdgeLink(self, push, sub) for push, sub in edges]
        self.stopping = False
        #: edge id -> connections ended when that edge fell silent (see _edge_seen).
        self.ended_while_away: dict[str, list[str]] = {}
        # Started by run_wsserver: stop when it is gone, even if it died by kill -9.
        parent = os.environ.get("DJANGO_WS_SUPERVISOR_PID")
        self.supervisor_pid = int(parent) if parent and parent.isdigit() else None
        from django_ws import sending

        # send_to_group() and friends, called from handlers, use our links.
        sending.use_route(sending.WorkerRoute(self.broadcast, [link.sub_endpoint for link in self.links]))
        if hasattr(mode, "in_child"):  # --multiprocess
            mode.in_child(self._reopen_in_child, self._close_in_child)
            mode.on_child_exit = self._child_exited

    def _reopen_in_child(self) -> None:
        """In a forked handler process: a fresh context and reply sockets.

        The parent's sockets are abandoned, not closed: closing them here
        would act on the parent's context, which must never cross a fork.
        """
        self.context = self.mode.zmq.Context()
        for link in self.links:
            link.events = None
            link.watches = []  # the parent's monitors: the parent reads them
            link.open_replies(self, self.context)

    def _close_in_child(self) -> None:
        for link in self.links:
            link.replies.close(linger=1000)  # deliver what the handler sent
        self.context.term()

    def _child_exited(self, conn, code: int) -> None:
        """Parent side: a handler process ended; a crash closes its connection with 1011."""
        self.dispatcher.finished(conn)
        if code != 0:
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            logger.error("handler process of connection %s died (%s); closing it with 1011", conn.id, how)
            try:
                conn.close(1011, "handler process died")
            except Exception:
                logger.exception("could not tell the edge that %s is closed", conn.id)
    def broadcast(self, message: wire.Message) -> None:
        """Send one message to every edge this worker serves (group sends).

        An unreachable edge does not stop the others from getting it; the
        caller then gets SendError naming what failed.
        """
        frames = message.encode()
        failed = []
        for link in self.links:
            try:
                link.outbox(frames)
            except EdgeUnreachable as exc:
                failed.append(str(exc))
        if failed:
            raise EdgeUnreachable("; ".join(failed))

    def install_signal_handlers(self) -> None:
        def stop(signum, frame):
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        # A worker cannot reload itself: SIGHUP (sent by a terminal or to a
        # whole process group) must not kill it outright. Restart it with
        # SIGTERM and your process manager, or SIGHUP to run_wsserver.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def serve(self) -> None:
        zmq = self.mode.zmq
        poller = zmq.Poller()
        by_socket = {}
        for link in self.links:
            poller.register(link.events, zmq.POLLIN)
            by_socket[link.events] = link
        logger.info(
            "worker %s (pid %d, %s) serving edges %s",
            self.worker_id,
            os.getpid(),
            self.mode.describe(),
            ", ".join(link.push_endpoint for link in self.links),
        )
        self.next_beat = 0.0
        interval_ms = int(self.heartbeat_interval * 1000)
        try:
            while not self.stopping:
                now = time.monotonic()
                if now >= self.next_beat:
                    self._heartbeat(now)
                    self.next_beat = now + self.heartbeat_interval
                try:
                    ready = poller.poll(interval_ms)
                except zmq.ZMQError as exc:
                    if exc.errno == getattr(zmq, "EINTR", 4):
                        continue
                    raise
                for sock, _ in ready:
                    self._drain(by_socket[sock], zmq)
        finally:
            self._shutdown()

    def _drain(self, link: EdgeLink, zmq, limit: int = 1000) -> None:
        """Handle what is waiting on one link, at most ``limit`` messages at a time.

        Returns early when a heartbeat is due: a burst (say, a hundred forks
        in --multiprocess) must not make the edge think this worker is dead.
        """
        recv = link.events.recv_multipart
        for _ in range(limit):
            if time.monotonic() >= self.next_beat:
                return
            try:
                frames = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            link.last_seen = time.monotonic()
            try:
                for message in wire.iter_decode(frames):  # the edge batches client frames
                    self._dispatch(link, message)
            except wire.ProtocolError as exc:
                logger.warning("worker dropped a malformed message from %s: %s", link.push_endpoint, exc)

    def _dispatch(self, link: EdgeLink, message: wire.Message) -> None:
        if isinstance(message, wire.Ping):
            self._edge_seen(link, message.edge_id)
            return
        if link.edge_id is None:
            # Events before the edge's first Ping: it introduced itself
            # through them, which is as good.
            link.edge_id = getattr(message, "conn_id", "").rpartition(".")[0] or None
        try:
            self.dispatcher.dispatch(message, link.edge_id or "", link.outbox)
        except Exception:
            # A bug here must cost one message, not the worker and all its connections.
            logger.exception("worker failed to dispatch %s; dropped it", type(message).__name__)

    def _edge_seen(self, link: EdgeLink, edge_id: str) -> None:
        if link.edge_id is not None and link.edge_id != edge_id:
            # The edge restarted on the same endpoint: the old one's clients are gone.
            n = len(self.dispatcher.edge_lost(link.edge_id))
            logger.warning("edge %s replaced by %s at %s; ended %d connections", link.edge_id, edge_id, link.push_endpoint, n)
        elif link.edge_id is None:
            logger.info("worker %s: edge %s is up at %s", self.worker_id, edge_id, link.push_endpoint)
            # The same edge, back from a hang we took for its death: the
            # connections we ended meanwhile must be closed there too, or
            # their clients would wait for a handler that is gone.
            for conn_id in self.ended_while_away.pop(edge_id, ()):
                try:
                    link.outbox(wire.Close(conn_id, 1012, "worker ended it while the edge was silent").encode())
                except EdgeUnreachable:
                    break
        link.edge_id = edge_id

    def _heartbeat(self, now: float) -> None:
        zmq = self.mode.zmq
        if self.supervisor_pid is not None and os.getppid() != self.supervisor_pid:
            logger.warning("worker %s: run_wsserver (pid %d) is gone; stopping", self.worker_id, self.supervisor_pid)
            self.stopping = True
        hello = wire.Hello(self.worker_id, self.mode.capacity, len(self.dispatcher)).encode()
        for link in self.links:
            for watch in link.watches:
                watch.poll()  # logs a refused handshake, once per cause
            try:
                link.events.send_multipart(hello, zmq.NOBLOCK)
            except zmq.Again:
                pass  # the edge is not there (yet): nothing to tell it
            if link.edge_id is not None and now - link.last_seen > self.heartbeat_timeout:
                ended = self.dispatcher.edge_lost(link.edge_id)
                self.ended_while_away[link.edge_id] = ended
                logger.warning(
                    "edge %s silent for %.1fs; ended its %d connections", link.edge_id, now - link.last_seen, len(ended)
                )
                link.edge_id = None

    def _shutdown(self) -> None:
        timeout = float(ws_settings.WS_SHUTDOWN_TIMEOUT)
        goodbye = wire.Goodbye(self.worker_id).encode()
        for link in self.links:  # first of all: no new connections here
            try:
                link.events.send_multipart(goodbye, self.mode.zmq.NOBLOCK)
            except self.mode.zmq.ZMQError:
                pass
        left = self.dispatcher.shutdown(timeout)
        if left:
            logger.warning("worker %s: %d handlers still running after %.1fs; exiting anyway", self.worker_id, left, timeout)
        for link in self.links:
            link.close()
        self.mode.close()
        self.context.term()
        logger.info("worker %s stopped", self.worker_id)
