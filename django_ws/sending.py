"""Reaching clients from anywhere in Django: groups, single connections, presence, closing.

``send_to_group``, ``send_to_connection``, ``close_group``,
``close_connection``, ``group_size`` and ``group_members`` work the same in
a view, a management command, a Celery task or a handler. They find the edges through the WS_EDGES setting (the sub
endpoint of every edge; default: WS_SUB_SOCKET, the one local edge).

* Inside a worker process the sends travel on the worker's own links to its
  edges, fire-and-forget, so a handler broadcasting to its room costs one
  message per edge.
* Anywhere else each call sends to every edge at once and waits until each
  has confirmed (an Ack), at most ``timeout`` seconds overall
  (WS_SEND_TIMEOUT, default 2). An edge that is down, refuses this process
  or does not answer in time does not keep the others from the message;
  the call then raises :class:`~django_ws.SendError`, which says which
  edges were not reached and how many clients were, so a view can catch it
  and carry on. Nothing is queued for an edge that is not connected.
* With ``WS_BROKER`` set (cluster mode, docs/cluster.rst), in every process,
  a worker's too, each call is one round trip to Redis: a send is one
  publish, presence one script; Redis unreachable raises SendError within
  the timeout.

Sends and closes return a :class:`SendResult`, whose ``delivered`` is how
many connections the message reached (or were closed), or None where that
is not known: inside a worker (fire-and-forget) and for a group in cluster
mode (one publish; Redis does not count clients).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import typing
import uuid
import weakref

from django_ws import links, tracing, wire
from django_ws.codes import is_valid_close_code
from django_ws.conf import ws_settings
from django_ws.exceptions import SendError
from django_ws.presence import check_page, merge_pages
from django_ws.security import curve_keys, secure_client

__all__ = ["SendResult", "close_connection", "close_group", "group_members", "group_presence", "group_size",
           "group_user_count", "send_to_connection", "send_to_group"]


@dataclasses.dataclass(frozen=True, eq=False)
class SendResult:
    """What a send or a close reached: ``delivered`` connections, or None when that is not known.

    None inside a worker, where sends are fire-and-forget, and for a group in
    cluster mode, where a send is one publish to Redis. ``send_to_connection``
    and ``close_connection`` count 0 or 1 (in cluster mode: whether the
    connection's edge was there to take it).

    For code written against 0.2, where ``send_to_group`` returned the count
    (or None) and ``send_to_connection`` a bool: a result compares equal to
    its count (``result == 3``), ``int(result)`` is the count (TypeError
    when unknown), and it is true unless it is known to have reached nobody,
    so ``if send_to_connection(...):`` reads as before.
    """

    delivered: int | None

    def __bool__(self) -> bool:
        return self.delivered is None or self.delivered > 0

    def __int__(self) -> int:
        if self.delivered is None:
            raise TypeError("this send's count is not known (inside a worker, or a group in cluster mode)")
        return self.delivered

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SendResult):
            return self.delivered == other.delivered
        if isinstance(other, int):  # 0.2 returned the bare count (bool: send_to_connection's answer)
            return self.delivered == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.delivered)


class EdgeRoute:
    """How a process that is not a worker reaches the edges: every edge in WS_EDGES, each send acknowledged."""

    def endpoints(self) -> list[str]:
        """The sub endpoints of the edges this process reaches."""
        edges = ws_settings.WS_EDGES
        return list(edges) if edges else [ws_settings.WS_SUB_SOCKET]

    def send(self, make: typing.Callable[[str], wire.Message], timeout: float | None, key: str | None) -> int:
        """Send the message ``make(ref)`` builds to every edge; return how many clients they wrote it to."""
        acks = _client().request(make, timeout, key, self.endpoints())
        return sum(ack.delivered for ack in acks)

    def members(self, group: str, timeout: float | None) -> list[str]:
        """Ask every edge who is in ``group`` (Presence); the ids, sorted."""
        replies = _client().request(lambda ref: wire.Presence(ref, group), timeout, None, self.endpoints())
        return sorted(conn_id for reply in replies for conn_id in reply.members.get("ids", []))

    def counts(self, group: str, timeout: float | None) -> tuple[int, int]:
        """(connections, users) of ``group``: each edge answers its counts.

        Connections add up. Users do too with one edge; with several (static
        mode), a user may be on more than one, so each edge also sends its
        user keys (never connection ids) and the union is counted.
        """
        several = len(self.endpoints()) > 1
        replies = _client().request(lambda ref: wire.PresenceQuery(ref, group, "count", int(several), ""),
                                    timeout, None, self.endpoints())
        size = sum(reply.members.get("size", 0) for reply in replies)
        if several:
            return size, len({key for reply in replies for key in reply.members.get("keys", [])})
        return size, sum(reply.members.get("users", 0) for reply in replies)

    def users(self, group: str, limit: int, after: str | None, timeout: float | None) -> dict:
        """A page of ``group``'s users: each edge's first ``limit`` after ``after``, merged."""
        replies = _client().request(lambda ref: wire.PresenceQuery(ref, group, "users", limit, after or ""),
                                    timeout, None, self.endpoints())
        return merge_pages((reply.members for reply in replies), limit)


class WorkerRoute(EdgeRoute):
    """Inside a worker: sends travel on the worker's own links to its edges, fire-and-forget.

    A handler broadcasting to its room costs one message per edge and no
    round trip, so a send (or a close) does not know how many clients it
    reached (``send`` returns None). Presence still asks the edges, with answers.
    """

    def __init__(self, broadcast: typing.Callable[[wire.Message], None], endpoints: list[str]):
        self._broadcast = broadcast
        self._endpoints = list(endpoints)

    def endpoints(self) -> list[str]:
        return list(self._endpoints)

    def send(self, make: typing.Callable[[str], wire.Message], timeout: float | None, key: str | None) -> None:
        self._broadcast(make(""))


#: The route of this process, installed by whoever runs it (see use_route); None: chosen from the settings.
_route: EdgeRoute | None = None
_edges = EdgeRoute()


def use_route(route: EdgeRoute | None) -> EdgeRoute | None:
    """Make ``route`` how this process reaches the edges; returns the one it replaces.

    A worker installs a WorkerRoute (or, with WS_BROKER, a BrokerRoute) when
    it starts; the testing helpers install theirs for a test and put the
    previous one back. None goes back to the default: the broker when
    WS_BROKER is set (read at each call, so override_settings works), else
    the edges of WS_EDGES.
    """
    global _route
    previous, _route = _route, route
    return previous


def current_route():
    """The route sends take now (see use_route)."""
    if _route is not None:
        return _route
    if ws_settings.WS_BROKER:
        from django_ws.broker.route import BrokerRoute

        return BrokerRoute()
    return _edges


def send_to_group(group: str, data: str | bytes, *, exclude: str | None = None, timeout: float | None = None,
                  key: str | None = None) -> SendResult:
    """Send ``data`` to every connection in ``group`` except ``exclude`` (a connection id).

    ``delivered`` is how many clients it was written to, or None inside a
    worker, where it does not wait to find out, and in cluster mode
    (WS_BROKER), where it is one publish to Redis. ``key`` names this message
    for retries: an edge that has delivered a message with the same key
    within WS_SEND_KEY_TTL does not deliver it again (ignored inside a worker).
    """
    binary, payload = wire.payload(data)
    return SendResult(stamped_send(
        current_route(), "django_ws send_to_group", {"django_ws.group": group},
        lambda ref, sent_at, trace: wire.GroupSend(group, exclude or "", binary, payload, ref, sent_at, trace),
        timeout, _check_key(key)))


def send_to_connection(connection_id: str, data: str | bytes, *, timeout: float | None = None,
                       key: str | None = None) -> SendResult:
    """Send ``data`` to one connection; ``delivered`` is 1 if an edge held it and wrote it, else 0.

    None inside a worker. In cluster mode: 1 if the connection's edge took it
    (it is alive and subscribed). ``key``: as for send_to_group.
    """
    binary, payload = wire.payload(data)
    return SendResult(stamped_send(
        current_route(), "django_ws send_to_connection", {"django_ws.connection": connection_id},
        lambda ref, sent_at, trace: wire.SendTo(connection_id, binary, payload, ref, sent_at, trace),
        timeout, _check_key(key)))


def stamped_send(route, name: str, attributes: dict, build: typing.Callable[[str, int, str], wire.Message],
                 timeout: float | None, key: str | None, *, sent_at: int = 0, traceparent: str = "") -> int | None:
    """Send the message ``build(ref, sent_at, trace)`` makes through ``route``, stamped and, with WS_TRACING, traced.

    ``sent_at``: the wall clock of the sender's call in microseconds (now, by
    default), from which each edge measures delivery latency. With
    WS_TRACING, the send is the span ``name`` (a child of ``traceparent``, or
    of the current span), whose context the message carries to every edge.
    """
    sent_at = sent_at or time.time_ns() // 1000
    if not tracing.enabled():
        return route.send(lambda ref: build(ref, sent_at, ""), timeout, key)
    with tracing.producer(name, attributes, traceparent) as trace:
        return route.send(lambda ref: build(ref, sent_at, trace), timeout, key)


def close_connection(connection_id: str, code: int = 1000, reason: str = "", *,
                     timeout: float | None = None) -> SendResult:
    """Close one connection with ``code`` and ``reason``, as its handler's ``close()`` would.

    From a view, a command, a task or a handler (a banned user's sockets).
    The handler's ``on_close`` runs as for any close. ``delivered`` is 1 if an
    edge held the connection open and closed it, else 0 (None inside a
    worker); an unreachable edge raises SendError, as sends do.
    """
    _check_close(code, reason)
    return SendResult(current_route().send(
        lambda ref: wire.CloseConnections(connection_id, "", int(code), reason, ref), timeout, None))


def close_group(group: str, code: int = 1000, reason: str = "", *, timeout: float | None = None) -> SendResult:
    """Close every connection in ``group``, on every edge, with ``code`` and ``reason``.

    ``delivered`` is how many were closed, or None where send_to_group's
    count is not known (inside a worker, in cluster mode).
    """
    _check_close(code, reason)
    return SendResult(current_route().send(
        lambda ref: wire.CloseConnections("", group, int(code), reason, ref), timeout, None))


def _check_close(code: int, reason: str) -> None:
    # Checked here, at the call site: the edge would otherwise close with a code
    # that the client's side refuses (RFC 6455, 7.4), far from the mistake.
    if isinstance(code, bool) or not isinstance(code, int) or not is_valid_close_code(code):
        raise ValueError(f"close code must be 1000-1003, 1007-1014 or 3000-4999 (4000-4999: your application's), "
                         f"not {code!r}")
    if not isinstance(reason, str) or len(reason.encode("utf-8")) > 123:
        raise ValueError("reason must be a str of at most 123 bytes in UTF-8 (a close frame's limit)")


def _check_key(key: str | None) -> str | None:
    if key is not None and (not isinstance(key, str) or not key or len(key) > 200):
        raise ValueError(f"key must be a non-empty str of at most 200 characters, not {key!r}")
    return key


def inspect_edges(query: dict | None = None, *, timeout: float = 1.0) -> list[dict]:
    """Ask every edge what it holds (the admin's live view); one dict per edge, answered or not.

    The edges are those sends reach: WS_EDGES (or the one local edge), or in
    cluster mode those the broker knows. Each is asked at once with one
    deadline, so a dead edge costs ``timeout`` once and hides nothing of the
    others: it comes back as ``{"endpoint": ..., "error": why}``, the others as
    ``{"endpoint": ..., "report": the edge's stats.inspect()}``. An unreachable
    broker raises SendError.
    """
    if ws_settings.WS_BROKER:
        from django_ws.broker.route import BrokerRoute

        endpoints = BrokerRoute().endpoints(timeout)
    else:
        endpoints = current_route().endpoints()
    answered, unreached = _client().exchange(lambda ref: wire.Inspect(ref, dict(query or {})), float(timeout),
                                             uuid.uuid4().hex, endpoints)
    found = []
    for endpoint in endpoints:
        if endpoint in answered:
            found.append({"endpoint": endpoint, "report": answered[endpoint].report})
        else:
            found.append({"endpoint": endpoint, "error": unreached.get(endpoint, "no answer")})
    return found


def group_members(group: str, *, timeout: float | None = None) -> list[str]:
    """The connection ids in ``group``, across every edge."""
    return current_route().members(group, timeout)


def group_size(group: str, *, timeout: float | None = None) -> int:
    """How many connections ``group`` has, across every edge: a count each edge (or Redis) keeps, no list moved."""
    return current_route().counts(group, timeout)[0]


def group_user_count(group: str, *, timeout: float | None = None) -> int:
    """How many users ``group`` has (connections joined with ``presence=``), across every edge, from counts."""
    return current_route().counts(group, timeout)[1]


def group_presence(group: str, *, limit: int = 100, after: str | None = None,
                   timeout: float | None = None) -> dict[str, typing.Any]:
    """One page of ``group``'s users, in user-key order, across every edge.

    ``{"users": {user_key: {"info": {...}, "connections": n}}, "next": cursor}``;
    pass ``next`` as ``after`` for the following page (None: this was the last).
    Only connections joined with ``presence=`` are listed; anonymous ones are not.
    """
    check_page(limit, after)
    return current_route().users(group, limit, after, timeout)


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
        #: (endpoint, its CURVE keys) -> (socket, its handshake monitor or None): new
        #: keys (override_settings in tests) get a new socket, never one set up with others.
        self.sockets: dict[tuple, tuple] = {}
        # Closed when its thread ends (threading.local lets go of it) or at exit.
        weakref.finalize(self, _close_sockets, self.sockets, self.pid)

    def _socket(self, endpoint: str):
        """The socket to ``endpoint`` and its handshake watch (None for ipc://)."""
        config = (endpoint, curve_keys() if endpoint.startswith("tcp://") else None)
        link = self.sockets.get(config)
        if link is None:
            zmq = self.zmq
            sock = self.context.socket(zmq.DEALER)
            sock.setsockopt(zmq.IMMEDIATE, 1)
            sock.setsockopt(zmq.LINGER, 0)
            links.keep_alive(sock)
            curve = secure_client(sock, endpoint)  # CURVE for tcp:// when WS_CURVE is set
            watch = None
            if endpoint.startswith("tcp://"):
                watch = links.HandshakeWatch(sock, endpoint, curve, f"sender (pid {self.pid})")
            sock.connect(endpoint)
            link = self.sockets[config] = (sock, watch)
        return link

    def request(self, make, timeout: float | None, key: str | None, endpoints: list[str]) -> list:
        """Send to every edge at once; return their answers, or raise SendError naming those missing.

        One deadline for all: a dead edge costs ``timeout`` once, whatever
        its place in WS_EDGES, and never keeps the others from the message.
        """
        timeout = float(ws_settings.WS_SEND_TIMEOUT if timeout is None else timeout)
        ref = key or uuid.uuid4().hex
        answered, unreached = self.exchange(make, timeout, ref, endpoints)
        if unreached:
            raise _partial(unreached, answered, ref)
        return list(answered.values())

    def exchange(self, make, timeout: float, ref: str, endpoints: list[str]) -> tuple[dict, dict[str, str]]:
        """Send ``make(ref)`` to every edge at once; return (endpoint -> answer, endpoint -> why it is missing).

        For callers that show what they got and what they did not (the admin's
        live view), where request() would raise at the first edge missing.
        """
        zmq = self.zmq
        frames = make(ref).encode()
        deadline = _now() + timeout
        unsent, watches = {}, {}
        for endpoint in endpoints:
            sock, watches[endpoint] = self._socket(endpoint)
            unsent[sock] = endpoint
        waiting, answered, refused = {}, {}, {}
        while True:
            for sock, endpoint in list(unsent.items()):
                try:
                    sock.send_multipart(frames, zmq.DONTWAIT)  # Again: not connected (IMMEDIATE)
                except zmq.Again:
                    cause = watches[endpoint] and watches[endpoint].poll()
                    if cause is not None:  # refused handshakes will not start working by waiting
                        refused[endpoint] = f"the edge refused the handshake: {cause}"
                        del unsent[sock]
                    continue
                waiting[sock] = unsent.pop(sock)
            left = deadline - _now()
            if not (unsent or waiting) or left <= 0:
                break
            poller = zmq.Poller()
            for sock in unsent:
                poller.register(sock, zmq.POLLOUT)
                watch = watches[unsent[sock]]
                if watch is not None:
                    poller.register(watch.monitor, zmq.POLLIN)
            for sock in waiting:
                poller.register(sock, zmq.POLLIN)
            for sock, _ in poller.poll(int(left * 1000) + 1):
                if sock not in waiting:
                    continue  # writable or a monitor event: the next round sends or gives up
                try:
                    message = wire.decode(sock.recv_multipart())
                except wire.ProtocolError:
                    continue
                if getattr(message, "ref", None) == ref:  # not a late answer to an earlier request
                    answered[waiting.pop(sock)] = message
        unreached = dict(refused)
        for endpoint in unsent.values():
            unreached[endpoint] = f"not connected within {timeout}s"
        for endpoint in waiting.values():
            unreached[endpoint] = f"no answer within {timeout}s"
        return answered, unreached


def _partial(unreached: dict[str, str], answered: dict, key: str) -> SendError:
    delivered = sum(getattr(reply, "delivered", 0) for reply in answered.values())
    missing = "; ".join(f"{endpoint}: {why}" for endpoint, why in unreached.items())
    if answered:
        text = (f"{len(unreached)} of {len(unreached) + len(answered)} websocket edges not reached ({missing}); "
                f"the {len(answered)} that confirmed wrote it to {delivered} client(s)")
    else:
        text = f"no websocket edge reachable ({missing})"
    return SendError(text, unreached=unreached, delivered=delivered, reached=list(answered), key=key)


def _now() -> float:
    import time

    return time.monotonic()


def _close_sockets(sockets: dict, pid: int) -> None:
    """Close one thread's sockets to the edges (not in a forked child: they are its parent's)."""
    if os.getpid() != pid:
        return
    for sock, watch in sockets.values():
        if watch is not None:
            watch.close()
        sock.close(linger=0)
    sockets.clear()


_local = threading.local()


def _client() -> _EdgeClient:
    client = getattr(_local, "client", None)
    if client is None or client.pid != os.getpid():
        client = _local.client = _EdgeClient()
    return client
