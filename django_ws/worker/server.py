"""The worker process: its I/O loop around the dispatcher, with a ZeroMQ link (zmq_link.py) per edge."""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid

from django_ws import wire
from django_ws.conf import ws_settings
from django_ws.exceptions import EdgeUnreachable

from .dispatcher import Dispatcher
from .modes import Mode
from .zmq_link import EdgeLink, broadcast, use_worker_route

logger = logging.getLogger("django_ws.worker")


class Worker:
    """Serves handlers for one or more edges until SIGTERM or SIGINT."""

    def __init__(self, mode: Mode, edges: list[tuple[str, str]], worker_id: str | None = None,
                 follower=None):
        self.mode = mode
        # First, while this process has no thread and no ZeroMQ context:
        # --multiprocess forks its fork server here (a fork later would copy
        # libzmq's threads' locks in whatever state they are).
        mode.prepare()
        self.worker_id = worker_id or f"w-{uuid.uuid4().hex[:12]}"
        self.heartbeat_interval = float(ws_settings.WS_HEARTBEAT_INTERVAL)
        self.heartbeat_timeout = float(ws_settings.WS_HEARTBEAT_TIMEOUT)
        self.queue_limit = int(ws_settings.WS_QUEUE_LIMIT)
        self.dispatcher = Dispatcher(mode)
        self.context = mode.zmq.Context()
        self.links = [self._link(push, sub) for push, sub in edges]
        #: Cluster mode without --edge: a broker.discovery.EdgeFollower, and the links it made, by edge id.
        self.follower = follower
        self.followed: dict[str, EdgeLink] = {}
        #: Followed edges whose lease lapsed while they were still heard from (warned once each).
        self.lapsed_but_alive: set[str] = set()
        #: Followed edges that said they were stopping: dropped as soon as a read of the registry lacks them.
        self.withdrawn: set[str] = set()
        self.poller = mode.zmq.Poller()
        self._by_socket: dict = {}
        self.stopping = False
        #: edge id -> connections ended when that edge fell silent (see _edge_seen).
        self.ended_while_away: dict[str, list[str]] = {}
        # Started by run_wsserver: stop when it is gone, even if it died by kill -9.
        parent = os.environ.get("DJANGO_WS_SUPERVISOR_PID")
        self.supervisor_pid = int(parent) if parent and parent.isdigit() else None
        # send_to_group() and friends, called from handlers.
        use_worker_route(self.broadcast, [link.sub_endpoint for link in self.links])
        mode.on_child_exit = self._child_exited
        mode.edges = lambda: [link.sub_endpoint for link in self.links]

    def _link(self, push: str, sub: str) -> EdgeLink:
        """A link to the edge at these endpoints, on this worker's context and id."""
        return EdgeLink(self.mode.zmq, self.context, push, sub, worker_id=self.worker_id, queue_limit=self.queue_limit,
                        heartbeat_timeout=self.heartbeat_timeout, lock=self.mode.lock())

    def _child_exited(self, conn, code: int) -> None:
        """A handler process ended (--multiprocess); a crash closes its connection with 1011."""
        self.dispatcher.finished(conn)
        if code != 0:
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            logger.error("handler process of connection %s died (%s); closing it with 1011", conn.id, how)
            try:
                conn.close(1011, "handler process died")
            except Exception:
                logger.exception("could not tell the edge that %s is closed", conn.id)

    def broadcast(self, message: wire.Message) -> None:
        """Send one message to every edge this worker serves (group sends); see zmq_link.broadcast."""
        broadcast([link.outbox for link in self.links], message)

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
        for link in self.links:
            self._watch(link)
        if self.follower is not None:
            logger.info("worker %s (pid %d, %s) following the edges announced on the broker %s",
                        self.worker_id, os.getpid(), self.mode.describe(), self.follower.config.name)
            self.follower.start()
        else:
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
                if self.follower is not None:
                    self.withdrawn |= self.follower.withdrawn()
                    found = self.follower.changes()
                    if found is not None:
                        self.follow(found)
                try:
                    ready = self.poller.poll(interval_ms)
                except zmq.ZMQError as exc:
                    if exc.errno == getattr(zmq, "EINTR", 4):
                        continue
                    raise
                for sock, _ in ready:
                    link = self._by_socket.get(sock)
                    if link is not None:
                        self._drain(link, zmq)
        finally:
            if self.follower is not None:
                self.follower.stop()
            self._shutdown()

    def _watch(self, link: EdgeLink) -> None:
        self.poller.register(link.events, self.mode.zmq.POLLIN)
        self._by_socket[link.events] = link

    def follow(self, announced: dict[str, dict]) -> None:
        """Serve the edges ``announced`` (id -> announcement): links to new ones, none to those gone.

        An edge that is gone takes its connections here with it, as when it
        falls silent: their handlers' on_close runs. Gone means withdrawn
        (it said so: ``self.withdrawn``) or unannounced and silent: an edge whose
        lease lapsed while its heartbeats still arrive was too busy to renew
        it, and is kept (discovery.py says why).
        """
        now = time.monotonic()
        for edge_id, edge in announced.items():
            self.lapsed_but_alive.discard(edge_id)
            if edge_id not in self.followed:
                link = self._link(edge["push"], edge["sub"])
                self.links.append(link)
                self.followed[edge_id] = link
                self._watch(link)
                logger.info("worker %s: following edge %s at %s (host %s)", self.worker_id, edge_id, edge["push"],
                            edge.get("host"))
        for edge_id in [e for e in self.followed if e not in announced]:
            link = self.followed[edge_id]
            if edge_id not in self.withdrawn and now - link.last_seen <= self.heartbeat_timeout:
                if edge_id not in self.lapsed_but_alive:
                    self.lapsed_but_alive.add(edge_id)
                    logger.warning("worker %s: the lease of edge %s lapsed, but the edge is still heard from; "
                                   "keeping it (raise WS_BROKER_LEASE if its loop is this busy)",
                                   self.worker_id, edge_id)
                continue
            self.lapsed_but_alive.discard(edge_id)
            self.withdrawn.discard(edge_id)
            del self.followed[edge_id]
            ended = self.dispatcher.edge_lost(edge_id)
            self.ended_while_away.pop(edge_id, None)
            self.poller.unregister(link.events)
            self._by_socket.pop(link.events, None)
            self.links.remove(link)
            link.close()
            logger.warning("worker %s: edge %s is no longer announced (withdrawn, or its lease lapsed); "
                           "forgot it and ended its %d connections", self.worker_id, edge_id, len(ended))

    def _drain(self, link: EdgeLink, zmq, limit: int = 1000) -> None:
        """Handle what is waiting on one link, at most ``limit`` messages at a time.

        Returns early when a heartbeat is due: a burst (say, a hundred forks
        in --multiprocess) must not make the edge think this worker is dead.
        """
        recv = link.receive
        for _ in range(limit):
            if time.monotonic() >= self.next_beat:
                return
            try:
                frames = recv()
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
        hello = wire.Hello(self.worker_id, self.mode.capacity, len(self.dispatcher), self.mode.name).encode()
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
