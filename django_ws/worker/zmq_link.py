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

from django_ws import links
from django_ws.exceptions import EdgeUnreachable
from django_ws.security import secure_client

if typing.TYPE_CHECKING:  # pragma: no cover
    from .server import Worker


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
