"""The edge: one process that holds the clients' connections and relays them to workers.

:class:`Edge` puts the pieces together and carries out the core's actions:
the core (:mod:`.core`) decides, the transports (:mod:`.transports`) speak
to clients, the ZeroMQ link (:mod:`.zmq_link`) speaks to workers and
senders, and none of them knows the others but through the actions and
events that pass here.
"""

from __future__ import annotations

import asyncio
import logging
import time
import typing
from urllib.parse import urlsplit

import tornado.web
from django.conf import settings
from django.http.request import validate_host

from django_ws import wire
from django_ws.conf import ws_settings
from django_ws.history import History, parse_settings
from django_ws.routing import Mount
from django_ws.tracing import edge_tracing

from .core import (
    Acknowledge,
    Answer,
    CatchUp,
    CloseClient,
    Connection,
    Deliver,
    EdgeCore,
    FetchGap,
    FlushPresenceLater,
    Forward,
    MemberChanged,
    Refuse,
    Subscribe,
    ToWorker,
    Unsubscribe,
    Upgrade,
    WorkerChanged,
    WorkerState,
)
from .deflate import deflate_settings
from .keepalive import Keepalive
from .limits import LimitSettings
from .logs import log_request
from .publish import Publisher, publish_routes
from .stats import Samples, inspect, stats_routes
from .transports.websocket import WebSocketHandshake
from .zmq_link import ZmqLink

logger = logging.getLogger("django_ws.edge")


class Edge:
    """Everything one edge process runs: its core, the HTTP listener and the ZeroMQ link."""

    def __init__(self, mount: Mount, push_endpoint: str, sub_endpoint: str, *, max_connections: int = 0,
                 announce_host: str | None = None):
        self.mount = mount
        #: The broker of cluster mode (WS_BROKER), or None: one edge, as without a broker.
        self.broker_config = None
        self.broker = None
        if ws_settings.WS_BROKER:
            from django_ws.broker import config as broker_config

            self.broker_config = broker_config.configured()
        self.core = EdgeCore(
            cluster=self.broker_config is not None,
            resolve=mount.resolve,
            heartbeat_timeout=float(ws_settings.WS_HEARTBEAT_TIMEOUT),
            max_connections=max_connections,
            limits=limit_settings(),
            send_key_ttl=float(ws_settings.WS_SEND_KEY_TTL),
            history=History(parse_settings(ws_settings.WS_GROUP_HISTORY)),
            presence_window=float(ws_settings.WS_PRESENCE_WINDOW),
        )
        self.latency = self.core.stats.delivery_latency
        #: Spans of deliveries (WS_TRACING), or None: then nothing of OpenTelemetry is imported.
        self.tracing = edge_tracing(self.core.edge_id)
        self.link = ZmqLink(push_endpoint, sub_endpoint, queue_limit=int(ws_settings.WS_QUEUE_LIMIT), events=self)
        if self.broker_config is not None:
            self.broker = self._broker_link(push_endpoint, sub_endpoint, announce_host)
        self.heartbeat_interval = float(ws_settings.WS_HEARTBEAT_INTERVAL)
        self.handshake_timeout = float(ws_settings.WS_HANDSHAKE_TIMEOUT)
        self.max_message_size = int(ws_settings.WS_MAX_MESSAGE_SIZE)
        #: Bytes one client that does not read may make this process hold (0: no bound).
        self.max_buffer_size = int(ws_settings.WS_MAX_BUFFER_SIZE or 0)
        #: The permessage-deflate options (WS_COMPRESSION), or None when it is off.
        self.compression = deflate_settings(ws_settings.WS_COMPRESSION)
        self._allowed_origins = self._origin_hosts()
        #: Pings every open client (WS_PING_INTERVAL) from one timer.
        interval = float(ws_settings.WS_PING_INTERVAL or 0)
        self.keepalive = Keepalive(interval, float(ws_settings.WS_PING_TIMEOUT or 0) or interval)
        #: Told of every worker that joins or is lost ("joined"/"lost", the worker): the banner, the supervisor.
        self.on_worker_change: typing.Callable[[str, WorkerState], None] | None = None
        #: The Socket.IO server (WS_SOCKETIO), or None: then nothing of python-socketio is imported.
        self.socketio = None
        #: The HTTP publish API (WS_API_KEYS; off, answering 404, without keys).
        self.publisher = Publisher(sub_endpoint, self.broker_config)
        extra_routes = publish_routes(self.publisher)
        if ws_settings.WS_SOCKETIO:
            from .transports.socketio import SocketIOServer

            self.socketio = SocketIOServer(self)
            extra_routes += self.socketio.routes()
        self.application = tornado.web.Application(
            # The stats, publish and Socket.IO routes first: the websocket pattern
            # would match them too.
            [*stats_routes(self.core, self.broker), *extra_routes,
             (mount.tornado_pattern, WebSocketHandshake, {"edge": self})],
            # Tornado's own WebSocket, which python-engineio's websocket transport rides on.
            websocket_max_message_size=self.max_message_size,
            # Tornado's access log, without the token a query string may carry.
            log_function=log_request,
        )
        self.server = None
        #: Where the HTTP listener is (host:port), for the admin's live view.
        self.address = ""
        #: The last minutes of connections and messages, for the admin's plots.
        self.samples = Samples()
        self._heartbeat_task: asyncio.Task | None = None
        #: Transports with frames written during the current execute(): flushed, one write each, at its end.
        self._unflushed: list = []
        self._depth = 0
        self._run = {
            Deliver: self._deliver, CloseClient: self._close_client, Upgrade: self._answer_handshake,
            Refuse: self._answer_handshake, ToWorker: self._to_worker, Forward: self._forward,
            Answer: self._answer_sender, WorkerChanged: self._worker_changed,
            Acknowledge: self._acknowledge,
            Subscribe: self._subscribe, Unsubscribe: self._unsubscribe, MemberChanged: self._member_changed,
            FetchGap: self._fetch_gap, CatchUp: self._catch_up, FlushPresenceLater: self._flush_presence_later,
        }

    def _broker_link(self, push: str, sub: str, announce_host: str | None):
        from django_ws.broker import config as broker_config
        from django_ws.broker.discovery import announcement
        from django_ws.broker.keys import Keys
        from django_ws.broker.link import BrokerLink
        from django_ws.security import curve_keys

        keys = curve_keys()
        public = keys.server_public.decode() if keys is not None else None
        announced = announcement(self.core.edge_id, push, sub, announce_host, public)
        return BrokerLink(self.broker_config, Keys(broker_config.prefix()), self.core.edge_id, announced,
                          lease=broker_config.lease(), events=self)

    @property
    def edge_id(self) -> str:
        return self.core.edge_id

    # -- carrying out the core's actions -------------------------------------------------

    def execute(self, actions: list) -> None:
        """Carry out ``actions`` in order; what they report back to the core is carried out in turn.

        What the transports write meanwhile goes out when the outermost call
        ends, one write per connection: a replay of a hundred messages, or a
        burst of them, costs one write and one future, not a hundred.
        """
        run = self._run
        self._depth += 1
        try:
            for action in actions:
                run[type(action)](action)
        finally:
            self._depth -= 1
            if not self._depth and self._unflushed:
                self.flush()

    def unflushed(self, transport) -> None:
        """``transport`` holds frames to write: at the end of the current execute(), or now outside one."""
        self._unflushed.append(transport)
        if not self._depth:
            self.flush()

    def flush(self) -> None:
        transports, self._unflushed = self._unflushed, []
        for transport in transports:
            transport.flush()

    def _deliver(self, action: Deliver) -> None:
        binary, payload, position = action.binary, action.payload, action.position
        targets = action.targets
        for conn in targets:
            conn.transport.deliver(binary, payload, position)
        if action.sent_at:
            # Handed to every target's socket (written at the end of this turn of the loop): one clock
            # read and one observation per message, whatever the number of targets.
            self.latency.observe(time.time() - action.sent_at / 1e6, len(targets))
        if action.trace and self.tracing is not None:
            self.tracing.delivered(action.trace, len(targets))

    def _acknowledge(self, action: Acknowledge) -> None:
        action.conn.transport.acknowledge(action.ack, action.payload)

    def _close_client(self, action: CloseClient) -> None:
        action.conn.transport.close(action.code, action.reason, action.fail)

    def _answer_handshake(self, action: Upgrade | Refuse) -> None:
        conn = action.conn
        if conn is None:
            raise RuntimeError("a Refuse without a connection is answered by the transport that asked")
        conn.transport.answered(action)

    def _to_worker(self, action: ToWorker) -> None:
        self.link.send(action.worker, action.message)

    def _forward(self, action: Forward) -> None:
        self.link.forward(action.worker, action.conn, action.header, action.payload)

    def _answer_sender(self, action: Answer) -> None:
        self.link.answer(action.identity, action.message)

    def _worker_changed(self, action: WorkerChanged) -> None:
        if self.on_worker_change is not None:
            self.on_worker_change(action.what, action.worker)

    def _subscribe(self, action: Subscribe) -> None:
        self.broker.subscribe(action.group, action.presence)

    def _unsubscribe(self, action: Unsubscribe) -> None:
        self.broker.unsubscribe(action.group, action.presence)

    def _member_changed(self, action: MemberChanged) -> None:
        self.broker.member_changed(action.group, action.conn_id, action.joined, action.user, action.info)

    def _flush_presence_later(self, action: FlushPresenceLater) -> None:
        asyncio.get_running_loop().call_later(action.delay, lambda: self.execute(self.core.flush_presence()))

    def _fetch_gap(self, action: FetchGap) -> None:
        ttl = self.core.history.bound_for(action.group).ttl
        self.broker.fetch_gap(action.conn.id, action.group, action.epoch, action.offset, ttl)

    def _catch_up(self, action: CatchUp) -> None:
        ttl = self.core.history.bound_for(action.group).ttl
        self.broker.fetch_gap(None, action.group, action.epoch, action.offset, ttl)

    # -- what the broker link reports (broker.link.BrokerEvents) ------------------------------

    def broker_resumed(self) -> None:
        self.execute(self.core.broker_resumed())

    def presence_message(self, group, edge_id, joined, left, users_joined=None, users_left=None) -> None:
        self.execute(self.core.remote_presence(group, edge_id, joined, left, users_joined, users_left))

    def broker_message(self, message, position) -> None:
        self.execute(self.core.broker_message(message, position))

    def gap_fetched(self, conn_id, group, epoch, last, entries) -> None:
        self.execute(self.core.gap_fetched(conn_id, group, epoch, last, entries))

    def memberships(self) -> dict[str, set[str]]:
        return self.core.groups

    def user_of(self, group: str, conn_id: str) -> tuple[str, dict] | None:
        users = self.core.members.users.get(group)
        user = users.by_connection.get(conn_id) if users is not None else None
        return (user, users.users[user][1]) if user is not None else None

    # -- what the ZeroMQ link reports (zmq_link.LinkEvents) ----------------------------------

    def worker_message(self, identity: bytes, message) -> None:
        self.execute(self.core.worker_event(identity, message))

    def reply_message(self, identity: bytes, message) -> None:
        if type(message) is wire.Inspect:  # the stats live here, beside the core (the broker's are the adapter's)
            report = inspect(self.core, self.broker, self.samples, self.address, message.query)
            self.link.answer(identity, wire.Report(message.ref, self.core.edge_id, report))
            return
        self.execute(self.core.reply(identity, message))

    def send_failed(self, worker: WorkerState, message, connections) -> None:
        if message is None and self.core.workers.get(worker.identity) is worker:
            logger.warning("worker %s is %d messages behind; closing the %d connections that sent it more",
                           worker.worker_id, self.link.queue_limit, len(connections))
        self.execute(self.core.send_failed(worker, message, connections))

    def worker_unreachable(self, worker: WorkerState) -> None:
        self.execute(self.core.worker_lost(worker, "its socket disconnected"))

    # -- origins ----------------------------------------------------------------------------

    @staticmethod
    def _origin_hosts() -> list[str]:
        allowed = ws_settings.WS_ALLOWED_ORIGINS
        if allowed is None:
            allowed = list(settings.ALLOWED_HOSTS)
            if settings.DEBUG and not allowed:
                # What Django itself accepts as Host in DEBUG with an empty list.
                allowed = [".localhost", "127.0.0.1", "[::1]"]
        return list(allowed)

    async def handshake(self, conn: Connection, actions: list, answer: asyncio.Future) -> Upgrade | Refuse | None:
        """Carry out a new connection's first actions and wait for the core's answer, for every transport.

        ``answer`` is the future the transport's ``answered()`` sets when the
        edge carries out the core's Upgrade or Refuse. A worker that does
        not answer within WS_HANDSHAKE_TIMEOUT is the core's to decide (it
        refuses with 503). None: the client left meanwhile (the transport
        cancelled ``answer``).
        """
        self.execute(actions)
        if not answer.done():
            try:
                await asyncio.wait_for(asyncio.shield(answer), self.handshake_timeout)
            except TimeoutError:
                self.execute(self.core.handshake_timed_out(conn))
        if not answer.done() or answer.cancelled():
            return None
        return answer.result()

    def origin_allowed(self, origin: str) -> bool:
        """Browsers send Origin; accept it only for the project's own hosts."""
        try:
            host = urlsplit(origin).hostname
        except ValueError:
            return False
        if not host:
            return False
        if ":" in host:
            host = f"[{host}]"
        return validate_host(host, self._allowed_origins)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, address: str, port: int) -> None:
        self.address = f"{address or '0.0.0.0'}:{port}"
        self.link.start()
        if self.broker is not None:
            self.broker.start()
        self._heartbeat_task = asyncio.ensure_future(self._heartbeat())
        # A deep accept queue: thousands of browsers reconnecting at once
        # (a restart) must not have their SYNs dropped and retried a second later.
        xheaders = bool(ws_settings.WS_TRUST_PROXY_HEADERS)
        self.server = self.application.listen(port, address, xheaders=xheaders,
                                              backlog=int(ws_settings.WS_LISTEN_BACKLOG),
                                              idle_connection_timeout=float(ws_settings.WS_HEADER_TIMEOUT),
                                              # Long-polling POSTs: bounded before they are read.
                                              **({"max_body_size": self.socketio.max_body_size}
                                                 if self.socketio is not None else {}))

    async def _heartbeat(self) -> None:
        while True:
            self.execute(self.core.tick())
            self.samples.sample(self.core)
            await asyncio.sleep(self.heartbeat_interval)

    async def shutdown(self, timeout: float) -> None:
        """Stop accepting, close every client with 1001, tell the workers."""
        if self.server is not None:
            self.server.stop()
        self.execute(self.core.shutdown())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.core.connections and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.core.connections.values()):
            # Clients that never answered the close frame: drop them.
            conn.transport.abort()
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
        self.publisher.close()
        if self.broker is not None:
            await self.broker.stop()
        self.link.stop()


def limit_settings() -> LimitSettings:
    """The edge's rate limits from the settings (docs/settings.rst, "Rate limits")."""
    return LimitSettings(
        new_per_window=int(ws_settings.WS_NEW_CONNECTIONS_PER_ADDRESS or 0),
        window=float(ws_settings.WS_NEW_CONNECTIONS_WINDOW),
        concurrent=int(ws_settings.WS_CONNECTIONS_PER_ADDRESS or 0),
        messages_per_window=int(ws_settings.WS_MESSAGES_PER_CONNECTION or 0),
        bytes_per_window=int(ws_settings.WS_BYTES_PER_CONNECTION or 0),
        message_window=float(ws_settings.WS_MESSAGE_WINDOW),
        trust_proxy_headers=bool(ws_settings.WS_TRUST_PROXY_HEADERS),
    )
