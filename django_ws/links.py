"""The ZeroMQ links between edges, workers and senders: liveness and refused handshakes.

Liveness. Without help, a link across a network partition heals only when
the kernel next retransmits on the dead TCP connection (a back-off that
doubles up to two minutes) or retries a lost SYN (up to a minute): the
longer the cut, the longer the recovery. :func:`keep_alive` sets, on every
socket of every link:

* ZMTP heartbeats (``HEARTBEAT_IVL/TIMEOUT/TTL``): each side pings, and a
  connection with no traffic for ``WS_HEARTBEAT_TIMEOUT`` is dropped by
  libzmq itself, so the connecting side starts over on a fresh connection;
* ``CONNECT_TIMEOUT``: a connect whose SYN is lost is abandoned after the
  heartbeat timeout and retried, instead of waiting for the kernel's SYN
  back-off;
* ``RECONNECT_IVL`` 100 ms, doubling up to ``WS_HEARTBEAT_INTERVAL``;
* ``TCP_MAXRT``: unacknowledged data ends the connection after the heartbeat
  timeout, and TCP keepalive, for peers whose libzmq predates heartbeats.

So once a partition of any length heals, a link is up again within about
``WS_HEARTBEAT_TIMEOUT + 2 * WS_HEARTBEAT_INTERVAL``: a connect attempt
lost in the partition gives up after the timeout, the next starts within an
interval, and the worker's Hello follows within another (docs/reliability.rst).

Refusals. A CURVE handshake that fails is otherwise invisible: the peer just
retries. :class:`HandshakeWatch` (workers and senders) turns the events of a
socket monitor into one log line per cause per endpoint, naming the likely
misconfiguration; :class:`RefusalLog` does the same on the edge, once per
peer host and cause.
"""

from __future__ import annotations

import logging
import socket
import typing

import zmq
from zmq.utils.monitor import parse_monitor_message

from django_ws.conf import ws_settings

__all__ = ["HandshakeWatch", "RefusalLog", "keep_alive"]

logger = logging.getLogger("django_ws.security")

#: The monitor events a handshake watch needs.
HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH)


def keep_alive(sock: zmq.Socket) -> None:
    """Set the liveness options of a link socket (see the module docstring); before bind() or connect()."""
    interval_ms = max(100, int(float(ws_settings.WS_HEARTBEAT_INTERVAL) * 1000))
    timeout_ms = max(interval_ms * 2, int(float(ws_settings.WS_HEARTBEAT_TIMEOUT) * 1000))
    sock.setsockopt(zmq.HEARTBEAT_IVL, interval_ms)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, timeout_ms)
    sock.setsockopt(zmq.HEARTBEAT_TTL, timeout_ms)
    sock.setsockopt(zmq.CONNECT_TIMEOUT, timeout_ms)
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, max(200, interval_ms))
    sock.setsockopt(zmq.TCP_MAXRT, timeout_ms)
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
    sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, max(1, timeout_ms // 1000))
    sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, max(1, interval_ms // 1000))
    sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, 3)


def _client_cause(event: int, value: int, curve: bool) -> str | None:
    """Why a worker's or sender's handshake with an edge failed, in words; None if it did not."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return ("the edge does not know this process's CURVE client key: WS_CURVE's client_public/client_secret "
                f"here differ from the edge's (ZAP status {value})")
    mismatch = event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
    # A peer that sees the mechanism mismatch first hangs up, so the other
    # side may get only a hang-up (NO_DETAIL): without keys of our own, that
    # is still the edge wanting CURVE; with keys, a wrong server key too.
    if not curve and (mismatch or event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
        return "the edge requires CURVE and this process has no keys: set WS_CURVE here (manage.py ws_keygen)"
    if mismatch:
        return "the edge does not use CURVE on this endpoint: set WS_CURVE on the edge's host too"
    if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        return ("the edge hung up during the CURVE handshake: WS_CURVE's server_public here is most likely "
                "not that edge's key (or the edge does not use CURVE)")
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        return f"ZeroMQ protocol error {value:#x} during the handshake"
    return None


class HandshakeWatch:
    """Monitors one client socket and says once why its handshakes fail.

    ``poll()`` reads what the monitor has (never blocks) and logs an error
    the first time each cause appears for the endpoint; a successful
    handshake forgets them, so a later misconfiguration is reported again.
    ``refusal`` is the latest cause, or None once a handshake succeeded.
    Watches that pass the same ``said`` set (a worker's two sockets to one
    edge) say each cause once between them.
    """

    def __init__(self, sock: zmq.Socket, endpoint: str, curve: bool, who: str, said: set[str] | None = None):
        self.endpoint, self.curve, self.who = endpoint, curve, who
        self.monitor = sock.get_monitor_socket(HANDSHAKE_EVENTS)
        self.refusal: str | None = None
        self._said: set[str] = set() if said is None else said

    def poll(self) -> str | None:
        while True:
            try:
                frames = self.monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return self.refusal
            except zmq.ZMQError:  # closed under us at shutdown
                return self.refusal
            event = parse_monitor_message(frames)
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                if self.refusal is not None:
                    logger.info("%s: handshake with the edge at %s succeeded", self.who, self.endpoint)
                self.refusal = None
                self._said.clear()
                continue
            cause = _client_cause(event["event"], event["value"], self.curve)
            if cause is None:
                continue
            self.refusal = cause
            if cause not in self._said:
                self._said.add(cause)
                logger.error("%s: the edge at %s refused the handshake: %s", self.who, self.endpoint, cause)

    def close(self) -> None:
        self.monitor.close(linger=0)


def _server_cause(event: int, value: int, curve: bool) -> str | None:
    """Why a peer's handshake with this edge failed, in words; None when there is nothing to say."""
    mismatch = event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
    if mismatch or event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        # The peer may see the mismatch first and hang up: all we get then is NO_DETAIL.
        if curve:
            return "it has no CURVE keys (WS_CURVE is not set on its host), or it is not a django-ws process"
        return "it most likely uses CURVE, and WS_CURVE is not set here"
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        if value == zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
            return "its WS_CURVE server_public is not this edge's key (it could not encrypt to us)"
        return f"ZeroMQ protocol error {value:#x}"
    return None  # AUTH: the ZAP handler logs it with the key


class RefusalLog:
    """The edge's side: log each refused handshake once per peer host and cause.

    A monitor event names the failure but not the peer. The peer comes from
    the ACCEPTED event (its file descriptor, whose peer address is read at
    once); libzmq emits a failure and the DISCONNECTED of the same
    connection back to back, so the failure belongs to the next DISCONNECTED.
    One log serves both of the edge's sockets (``watch`` each): a peer
    refused on both is logged once.
    """

    MONITOR_EVENTS = (zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                      | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)

    def __init__(self, limit: int = 100):
        self.limit = limit
        self.said: set[tuple[str, str]] = set()

    def watch(self, endpoint: str, curve: bool) -> typing.Callable[[list], None]:
        """A handler for the monitor messages of the socket bound to ``endpoint``."""
        peers: dict[int, str] = {}
        failure: list[str] = []

        def handle(frames: list) -> None:
            event = parse_monitor_message(frames)
            kind, value = event["event"], event["value"]
            if kind == zmq.EVENT_ACCEPTED:
                peers[value] = _peer_host(value)
            elif kind == zmq.EVENT_DISCONNECTED:
                host = peers.pop(value, "an unknown address")
                if failure:
                    self._say(host, endpoint, failure.pop())
            else:
                cause = _server_cause(kind, value, curve)
                if cause is not None:
                    failure[:] = [cause]

        return handle

    def _say(self, host: str, endpoint: str, cause: str) -> None:
        # Refused peers may retry every reconnect interval: once per host and
        # cause is enough (and stop remembering past ``limit``).
        if (host, cause) in self.said or len(self.said) >= self.limit:
            return
        self.said.add((host, cause))
        logger.warning("refused a ZeroMQ peer from %s on %s: %s", host, endpoint, cause)


def _peer_host(fd: int) -> str:
    """The address of the peer on ``fd``, if the descriptor is still open."""
    try:
        probe = socket.socket(fileno=socket.dup(fd))  # a dup: closing it leaves libzmq's own alone
    except OSError:
        return "an unknown address"
    try:
        return str(probe.getpeername()[0])
    except (OSError, IndexError):
        return "an unknown address"
    finally:
        probe.close()

