"""The worker's ZeroMQ link to one edge: its two sockets, and what it knows of that edge.

A worker connects to every edge it serves with two DEALER sockets:

* ``events`` to the edge's push endpoint. The edge's ROUTER addresses the
  worker by its routing id; Connect, Data, Disconnect and Ping arrive here and
  Hello heartbeats go back. Only the worker's I/O loop touches this socket.
* ``replies`` to the edge's sub endpoint. Accept, Deny, Send, Close, Join and
  Leave go out here from any pool thread or greenlet, one at a time
  under a lock, because ZeroMQ sockets are not thread-safe. One socket per
  edge per worker, never one per connection.
"""

from __future__ import annotations

import typing

from django_ws import links, wire, zmq_frames
from django_ws.exceptions import EdgeUnreachable
from django_ws.security import secure_client


class ReplySocket:
    """A DEALER socket to one edge's sub endpoint, called to send one message: ``replies(frames)``.

    Built from explicit arguments, so that a handler process of
    ``--multiprocess`` opens its own on a context of its own (multiprocess.py).
    """

    def __init__(self, zmq, ctx, endpoint: str, *, queue_limit: int, send_timeout: float, lock,
                 identity: str | None = None):
        self._zmq = zmq
        self.endpoint = endpoint
        self.lock = lock
        self.socket = ctx.socket(zmq.DEALER)
        if identity:
            # The edge counts replies under this id as signs of life, so a
            # worker busy enough to send its Hello late is not taken for dead.
            self.socket.setsockopt(zmq.ROUTING_ID, identity.encode())
        self.socket.setsockopt(zmq.SNDHWM, queue_limit)
        # A send that cannot be queued within the heartbeat timeout means the
        # edge is gone or stuck; the handler then gets ConnectionClosed.
        self.socket.setsockopt(zmq.SNDTIMEO, int(send_timeout * 1000))
        self.socket.setsockopt(zmq.LINGER, 1000)
        links.keep_alive(self.socket)
        secure_client(self.socket, endpoint)
        self.socket.connect(endpoint)
        self._send = zmq_frames.sender(self.socket)

    def __call__(self, frames: list) -> None:
        """Send one message to the edge; safe from any thread or greenlet.

        Raises EdgeUnreachable if the worker is stopping or the edge took
        nothing within the heartbeat timeout (SNDTIMEO): a lost edge must
        not hang a handler's thread forever.
        """
        with self.lock:
            if self.socket.closed:
                raise EdgeUnreachable("worker stopping")
            try:
                self._send(frames)
            except self._zmq.Again:
                raise EdgeUnreachable(f"edge at {self.endpoint} took nothing in time") from None

    def close(self, linger: int | None = None) -> None:
        """Close the socket; what was sent is still delivered for ``linger`` ms (default: 1 s)."""
        with self.lock:
            self.socket.close(linger=linger)


def broadcast(outboxes: typing.Iterable[ReplySocket], message: wire.Message) -> None:
    """Send one message to every edge (a group send).

    An unreachable edge does not stop the others from getting it; the caller
    then gets EdgeUnreachable naming what failed (SendError to a handler).
    """
    frames = message.encode()
    failed = []
    for outbox in outboxes:
        try:
            outbox(frames)
        except EdgeUnreachable as exc:
            failed.append(str(exc))
    if failed:
        raise EdgeUnreachable("; ".join(failed))


def use_worker_route(broadcast_to_edges: typing.Callable[[wire.Message], None], endpoints: list[str]) -> None:
    """How handlers' send_to_group() and friends travel, in a worker or a handler process.

    In cluster mode (WS_BROKER), one publish each; else on this process's
    own links to its edges (``broadcast_to_edges``), fire-and-forget.
    """
    from django_ws import sending
    from django_ws.conf import ws_settings

    if ws_settings.WS_BROKER:
        from django_ws.broker.route import BrokerRoute

        sending.use_route(BrokerRoute())
    else:
        sending.use_route(sending.WorkerRoute(broadcast_to_edges, endpoints))


class EdgeLink:
    """The worker's two sockets to one edge, and what it knows of that edge."""

    def __init__(self, zmq, ctx, push_endpoint: str, sub_endpoint: str, *, worker_id: str, queue_limit: int,
                 heartbeat_timeout: float, lock):
        self.push_endpoint, self.sub_endpoint = push_endpoint, sub_endpoint
        self.events = ctx.socket(zmq.DEALER)
        self.events.setsockopt(zmq.ROUTING_ID, worker_id.encode())
        self.events.setsockopt(zmq.RCVHWM, queue_limit)
        self.events.setsockopt(zmq.SNDHWM, 10)  # heartbeats only: stale ones may wait
        self.events.setsockopt(zmq.LINGER, 0)
        links.keep_alive(self.events)
        curve = secure_client(self.events, push_endpoint)  # CURVE for tcp:// when WS_CURVE is set
        #: Handshake monitors of the tcp:// sockets: a refused worker says why (see _heartbeat).
        self.watches: list[links.HandshakeWatch] = []
        who, said = f"worker {worker_id}", set()
        if push_endpoint.startswith("tcp://"):
            self.watches.append(links.HandshakeWatch(self.events, push_endpoint, curve, who, said))
        self.events.connect(push_endpoint)
        #: Receives one message from ``events`` without blocking (zmq.Again: nothing waits).
        self.receive = zmq_frames.receiver(self.events)
        #: Called with a message's frames to send it to the edge (Accept, Send, Close, ...).
        self.outbox = ReplySocket(zmq, ctx, sub_endpoint, queue_limit=queue_limit, send_timeout=heartbeat_timeout,
                                  lock=lock, identity=worker_id)
        if self.sub_endpoint.startswith("tcp://"):
            self.watches.append(links.HandshakeWatch(self.outbox.socket, self.sub_endpoint, curve, who, said))
        self.edge_id: str | None = None
        self.last_seen = 0.0

    def close(self) -> None:
        for watch in self.watches:
            watch.close()
        self.events.close(linger=0)
        self.outbox.close()
