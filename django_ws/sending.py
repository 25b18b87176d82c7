"""Reaching clients from anywhere in Django: groups, single connections, presence.

``send_to_group``, ``send_to_connection``, ``group_size`` and
``group_members`` work the same in a view, a management command, a Celery
task or a handler. They find the edges through the WS_EDGES setting (the sub
endpoint of every edge; default: WS_SUB_SOCKET, the one local edge).

* Inside a worker process the sends travel on the worker's own links to its
  edges, fire-and-forget, so a handler broadcasting to its room costs one
  message per edge.
* Anywhere else each call waits until every edge has confirmed it (an Ack),
  at most ``timeout`` seconds (WS_SEND_TIMEOUT, default 2). An edge that is
  down or does not answer in time raises :class:`~django_ws.SendError`, so a
  view can catch it and carry on; nothing is left queued to arrive later.
"""

from __future__ import annotations

import os
import threading
import uuid

from django_ws import wire
from django_ws.conf import ws_settings
from django_ws.exceptions import SendError
from django_ws.security import secure_client

__all__ = ["group_members", "group_size", "send_to_connection", "send_to_group"]

#: Set by a worker process: a callable taking one wire message, sending it to every edge.
_worker_broadcast = None
#: Set by a worker process: the sub endpoints of the edges it serves.
_worker_edges: list[str] | None = None


def _encode(data) -> tuple[bool, bytes]:
    if isinstance(data, str):
        return False, data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return True, bytes(data)
    raise TypeError(f"send str (a text frame) or bytes (a binary frame), not {type(data).__name__}")


def send_to_group(group: str, data: str | bytes, *, exclude: str | None = None, timeout: float | None = None) -> int | None:
    """Send ``data`` to every connection in ``group`` except ``exclude`` (a connection id).

    Returns how many clients it was written to, or None inside a worker,
    where it does not wait to find out.
    """
    binary, payload = _encode(data)
    if _worker_broadcast is not None:
        _worker_broadcast(wire.GroupSend(group, exclude or "", binary, payload, ""))
        return None
    acks = _client().request(lambda ref: wire.GroupSend(group, exclude or "", binary, payload, ref), timeout)
    return sum(ack.delivered for ack in acks)


def send_to_connection(connection_id: str, data: str | bytes, *, timeout: float | None = None) -> bool:
    """Send ``data`` to one connection; True if an edge held it and wrote it."""
    binary, payload = _encode(data)
    if _worker_broadcast is not None:
        _worker_broadcast(wire.SendTo(connection_id, binary, payload, ""))
        return True
    acks = _client().request(lambda ref: wire.SendTo(connection_id, binary, payload, ref), timeout)
    return any(ack.delivered for ack in acks)


def group_members(group: str, *, timeout: float | None = None) -> list[str]:
    """The connection ids in ``group``, across every edge."""
    replies = _client().request(lambda ref: wire.Presence(ref, group), timeout)
    return sorted(conn_id for reply in replies for conn_id in reply.members.get("ids", []))


def group_size(group: str, *, timeout: float | None = None) -> int:
    """How many connections ``group`` has, across every edge."""
    return len(group_members(group, timeout=timeout))


def edge_endpoints() -> list[str]:
    """Where the edges are: the worker's own edges inside a worker, else WS_EDGES."""
    if _worker_edges is not None:
        return list(_worker_edges)
    edges = ws_settings.WS_EDGES
    return list(edges) if edges else [ws_settings.WS_SUB_SOCKET]


class _EdgeClient:
    """One thread's DEALER sockets to the edges, for request/acknowledge.

    Sockets are per thread (ZeroMQ sockets are not thread-safe) and per
    process (they must not cross a fork, as in gunicorn's preload).
    ``IMMEDIATE`` keeps a message from queueing for an edge that is not
    connected: it is refused at once instead of arriving minutes later.
    """

    def __init__(self):
        import zmq

        self.zmq = zmq
        self.pid = os.getpid()
        self.context = zmq.Context.instance()
        self.sockets = {}

    def _socket(self, endpoint: str):
        sock = self.sockets.get(endpoint)
        if sock is None:
            zmq = self.zmq
            sock = self.context.socket(zmq.DEALER)
            sock.setsockopt(zmq.IMMEDIATE, 1)
            sock.setsockopt(zmq.LINGER, 0)
            secure_client(sock, endpoint)  # CURVE for tcp:// when WS_CURVE is set
            sock.connect(endpoint)
            self.sockets[endpoint] = sock
        return sock

    def request(self, make, timeout: float | None) -> list:
        zmq = self.zmq
        timeout = float(ws_settings.WS_SEND_TIMEOUT if timeout is None else timeout)
        ref = uuid.uuid4().hex
        frames = make(ref).encode()
        waiting = {}
        poller = zmq.Poller()
        for endpoint in edge_endpoints():
            sock = self._socket(endpoint)
            # POLLOUT with IMMEDIATE: the connection to the edge is up.
            if not sock.poll(int(timeout * 1000), zmq.POLLOUT):
                raise SendError(f"no websocket edge reachable at {endpoint} within {timeout}s")
            try:
                sock.send_multipart(frames, zmq.DONTWAIT)
            except zmq.Again:
                raise SendError(f"the websocket edge at {endpoint} is not accepting messages") from None
            waiting[sock] = endpoint
            poller.register(sock, zmq.POLLIN)
        replies = []
        deadline = _now() + timeout
        while waiting:
            left = deadline - _now()
            if left <= 0:
                raise SendError(f"no answer from the websocket edge at {', '.join(waiting.values())} within {timeout}s")
            for sock, _ in poller.poll(int(left * 1000) + 1):
                try:
                    message = wire.decode(sock.recv_multipart())
                except wire.ProtocolError:
                    continue
                if getattr(message, "ref", None) == ref:
                    replies.append(message)
                    waiting.pop(sock, None)
                    poller.unregister(sock)
        return replies


def _now() -> float:
    import time

    return time.monotonic()


_local = threading.local()


def _client() -> _EdgeClient:
    client = getattr(_local, "client", None)
    if client is None or client.pid != os.getpid():
        client = _local.client = _EdgeClient()
    return client
