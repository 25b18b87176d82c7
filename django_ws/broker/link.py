"""The edge's link to the broker: its announcement, its subscriptions, its share of presence.

A peer of :class:`django_ws.edge.zmq_link.ZmqLink`, on the edge's asyncio loop,
with redis.asyncio only: nothing here blocks the loop. What it carries out
comes from the core as actions (Subscribe, Unsubscribe, MemberChanged); what
it receives goes to the core as events (``broker_message``).

One *session* is one pair of connections to Redis (commands, and pub/sub).
When either fails (Redis restarted, failed over, unreachable), the session
ends, and the next one, after a back-off, puts everything back from what the
edge knows now: the announcement, every subscription, and every membership.
Meanwhile the edge goes on serving its clients and workers; only messages
from the broker pause.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import typing

from django_ws import wire

from .config import BrokerConfig, aclose_client
from .keys import EPOCH_LIFE_MS, MEMBER_CHANGED, MEMBERS_REWRITTEN, READ_GAP, SWEEP_DEAD_EDGES, Keys, unpack

logger = logging.getLogger("django_ws.edge")

#: Longest wait between two attempts to reach the broker.
BACKOFF_MAX = 2.0

#: The scripts a session runs as it goes, by their SHA-1 for EVALSHA: loaded
#: once per session, where a pipeline calling a Script would ask Redis for
#: them (one more round trip) at each presence write.
_SHA = {script: hashlib.sha1(script.encode()).hexdigest()
        for script in (MEMBER_CHANGED, MEMBERS_REWRITTEN, SWEEP_DEAD_EDGES)}


class BrokerEvents(typing.Protocol):
    """What the link reports, and what it asks of the edge when a session starts."""

    def broker_message(self, message: wire.Message, position: tuple[str, int] | None) -> None: ...
    def memberships(self) -> dict[str, set[str]]: ...
    def gap_fetched(self, conn_id: str | None, group: str, epoch: str, last: int,
                    entries: list[tuple[int, bool, bytes]] | None) -> None: ...
    def broker_resumed(self) -> None: ...
    def presence_message(self, group: str, edge_id: str, joined: list[str], left: list[str],
                         users_joined: dict[str, dict] | None = None, users_left: list[str] | None = None) -> None: ...
    def user_of(self, group: str, conn_id: str) -> tuple[str, dict] | None: ...


class BrokerLink:
    """One edge's announcement, subscriptions and presence, kept in Redis across its outages."""

    def __init__(self, config: BrokerConfig, keys: Keys, edge_id: str, announcement: dict, *, lease: float,
                 events: BrokerEvents):
        self.config, self.keys, self.edge_id = config, keys, edge_id
        self.announcement = json.dumps(announcement, separators=(",", ":"))
        #: For the banner: where workers will connect.
        self.announced_endpoints = f"{announcement['push']},{announcement['sub']}"
        self.lease = lease
        self.events = events
        #: The channels this edge must receive: its groups' (members here) and their presence (watchers here).
        self.channels: set[str] = set()
        #: (group, connection id) -> (joined, its user or '', their info as JSON): presence changes not yet written.
        self._pending: dict[tuple[str, str], tuple[bool, str, str]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._session_commands: asyncio.Queue | None = None
        #: channel -> set once Redis confirmed this session's subscription to it.
        self._confirmed: dict[str, asyncio.Event] = {}
        self._client = None
        self._fetches: set[asyncio.Task] = set()
        self._stopping = False
        self.connected = False
        self.sessions = 0
        #: Renewals that came after the lease had lapsed (the loop was too busy): see _renew.
        self.lapses = 0

    # -- what the edge carries out ---------------------------------------------------------

    def subscribe(self, group: str, presence: bool = False) -> None:
        channel = self._channel(group, presence)
        self.channels.add(channel)
        self._command(("subscribe", channel))

    def unsubscribe(self, group: str, presence: bool = False) -> None:
        channel = self._channel(group, presence)
        self.channels.discard(channel)
        self._command(("unsubscribe", channel))

    def _channel(self, group: str, presence: bool) -> str:
        return self.keys.presence_channel(group) if presence else self.keys.group_channel(group)

    def member_changed(self, group: str, conn_id: str, joined: bool, user: str = "", info: dict | None = None) -> None:
        pending = self._pending
        pending.pop((group, conn_id), None)  # re-inserted last: the newest change is written last
        pending[(group, conn_id)] = (joined, user, _json(info) if user else "")
        self._wake.set()

    def fetch_gap(self, conn_id: str | None, group: str, epoch: str, offset: int, ttl: float) -> None:
        """Ask the broker what followed ``(epoch, offset)`` in ``group``; answer with events.gap_fetched().

        ``conn_id`` None: for the whole edge, catching up after an outage.
        """
        task = asyncio.ensure_future(self._fetch_gap(conn_id, group, epoch, offset, ttl))
        self._fetches.add(task)  # the loop holds tasks weakly: keep it until it is done
        task.add_done_callback(self._fetches.discard)

    async def _fetch_gap(self, conn_id: str | None, group: str, epoch: str, offset: int, ttl: float) -> None:
        from .route import new_epoch

        try:
            # Only once this edge receives the group's live messages: what the
            # gap misses, the subscription has, and nothing falls between.
            confirmed = self._confirmed.setdefault(self.keys.group_channel(group), asyncio.Event())
            await asyncio.wait_for(confirmed.wait(), self.lease)
            client = self._client
            if client is None:
                raise ConnectionError("no session with the broker")
            stream, hash_key = self.keys.history(group)
            reply = await client.register_script(READ_GAP)(
                keys=[stream, hash_key], args=[epoch, offset, int(ttl * 1000), new_epoch(), EPOCH_LIFE_MS])
            here, last, covered = _text(reply[0]), int(reply[1]), int(reply[2])
            entries = None
            if covered:
                entries = []
                for n, raw in enumerate(reply[3:], start=offset + 1):
                    message, _ = unpack(raw)
                    entries.append((n, message.binary, message.payload))
        except Exception as exc:  # noqa: BLE001  (the client is told to resync: never a silent gap)
            logger.warning("edge %s could not read the history of %s from the broker (%s); the client resyncs",
                           self.edge_id, group, _why(exc))
            here, last, entries = "", 0, None
        self.events.gap_fetched(conn_id, group, here, last, entries)

    def _command(self, command: tuple[str, str]) -> None:
        if self._session_commands is not None:
            self._session_commands.put_nowait(command)
        # Else no session: the next one subscribes to self.channels, whatever happened meanwhile.

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self, timeout: float = 2.0) -> None:
        """Withdraw the announcement and this edge's presence, as far as the broker answers within ``timeout``."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            # Bounded: redis-py may swallow a cancellation mid-command (the task then ends at the next turn).
            await asyncio.wait([self._task], timeout=timeout)
        client = self.config.async_client(timeout=timeout)
        try:
            keys = self.keys
            async with client.pipeline(transaction=False) as pipe:
                pipe.delete(keys.lease(self.edge_id))
                # This edge's members leave their groups, told to the watchers on the other edges.
                await client.register_script(SWEEP_DEAD_EDGES)(keys=[keys.edges], args=keys.sweep_args(), client=pipe)
                pipe.publish(keys.events, f"down {self.edge_id}")
                # What the sweep could not know of (a join not yet written), nobody was told of either.
                for group, members in self.events.memberships().items():
                    if members:
                        pipe.hdel(keys.members(group), *members)
                for group, conn_id in self._pending:
                    pipe.hdel(keys.members(group), conn_id)
                await asyncio.wait_for(pipe.execute(), timeout)
            logger.info("edge %s withdrew from the broker %s", self.edge_id, self.config.name)
        except Exception as exc:  # noqa: BLE001  (shutting down: the lease lapses anyway)
            logger.warning("edge %s could not withdraw from the broker %s (%s); its lease lapses within %.1fs",
                           self.edge_id, self.config.name, _why(exc), self.lease)
        finally:
            await aclose_client(client, timeout)

    async def _run(self) -> None:
        backoff, said = 0.1, False
        while not self._stopping:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001  (any failure ends the session; the next one restores)
                if self.connected:
                    logger.warning("edge %s lost the broker %s (%s); still serving its clients, reconnecting",
                                   self.edge_id, self.config.name, _why(exc))
                    backoff, said = 0.1, True
                elif not said:
                    logger.warning("edge %s cannot reach the broker %s (%s); still serving its clients, retrying",
                                   self.edge_id, self.config.name, _why(exc))
                    said = True
                self.connected = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX, self.lease / 3)

    async def _session(self) -> None:
        renewal = self.lease / 3
        # Commands answer within a renewal period; pub/sub waits for messages as long as it takes,
        # with TCP keepalive to notice a broker gone without a word.
        client = self.config.async_client(timeout=renewal)
        listener = self.config.async_client(timeout=None, connect_timeout=renewal)
        pubsub = listener.pubsub()
        commands: asyncio.Queue = asyncio.Queue()
        for confirmed in self._confirmed.values():
            confirmed.clear()  # this session's subscriptions are confirmed anew
        try:
            await pubsub.subscribe(self.keys.direct_channel(self.edge_id), *self.channels)
            async with client.pipeline(transaction=False) as pipe:
                for script in _SHA:
                    pipe.script_load(script)
                await pipe.execute()
            await self._announce(client, up=True)
            await self._write_presence(client, everything=True)
            self._session_commands = commands
            self._client = client
            self.connected = True
            self.sessions += 1
            logger.info("edge %s announced on the broker %s (%d channels)", self.edge_id, self.config.name,
                        len(self.channels) + 1)
            if self.sessions > 1:
                self.events.broker_resumed()  # the first session has nothing to catch up
            tasks = [asyncio.ensure_future(job) for job in (
                self._renew(client, renewal), self._receive(pubsub), self._subscriptions(pubsub, commands),
                self._presence(client))]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()  # raises what ended the session
            finally:
                for task in tasks:
                    task.cancel()
                # Not gather(): a task in which redis-py swallowed the cancellation must not hold the session.
                await asyncio.wait(tasks, timeout=1.0)
        finally:
            self._session_commands = None
            self._client = None
            try:
                await asyncio.wait_for(pubsub.aclose(), 5.0)
            except Exception:  # noqa: BLE001  (a broken connection may not close cleanly)
                pass
            await aclose_client(listener)
            await aclose_client(client)

    async def _announce(self, client, up: bool) -> bool:
        """Announce (``up``) or renew; True if the lease was still there (a renewal in time)."""
        async with client.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.lease(self.edge_id), self.announcement, px=int(self.lease * 1000), get=True)
            pipe.sadd(self.keys.edges, self.edge_id)
            if up:
                pipe.publish(self.keys.events, f"up {self.edge_id}")
            previous, *_ = await pipe.execute()
        return previous is not None

    async def _renew(self, client, renewal: float) -> None:
        while not self._stopping:
            await asyncio.sleep(renewal)
            if not await self._announce(client, up=False):
                # The loop was too busy to renew in time (or Redis lost the key): readers of
                # presence have dropped this edge's members meanwhile. Write them again.
                self.lapses += 1
                logger.warning("edge %s renewed its lease too late (it lapsed after %.1fs); announcing it and "
                               "its presence again; raise WS_BROKER_LEASE if this edge's loop is this busy",
                               self.edge_id, self.lease)
                await self._announce(client, up=True)
                await self._write_presence(client, everything=True)
            await self._sweep(client)

    async def _sweep(self, client) -> None:
        """Tell the watchers of every group that the members of the edges whose lease lapsed left."""
        try:
            swept = await client.evalsha(_SHA[SWEEP_DEAD_EDGES], 1, self.keys.edges, *self.keys.sweep_args())
        except Exception as exc:  # noqa: BLE001  (every edge sweeps: the next sweep, here or elsewhere, does it)
            logger.warning("edge %s could not sweep the edges whose lease lapsed (%s)", self.edge_id, _why(exc))
            return
        for edge_id in swept:
            logger.info("edge %s swept edge %s, whose lease lapsed: its members left their groups",
                        self.edge_id, _text(edge_id))

    async def _receive(self, pubsub) -> None:
        deliver = self.events.broker_message
        while not self._stopping:
            message = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            if message.get("type") == "subscribe":
                self._confirmed.setdefault(_text(message["channel"]), asyncio.Event()).set()
                continue
            if message.get("type") != "message":
                continue
            channel = _text(message["channel"])
            if channel.startswith(self.keys.presence_prefix):
                self._presence_message(channel[len(self.keys.presence_prefix):], message["data"])
                continue
            try:
                decoded, position = unpack(message["data"])
            except wire.ProtocolError as exc:
                logger.warning("edge dropped a malformed message from the broker: %s", exc)
                continue
            try:
                deliver(decoded, position)
            except Exception:
                logger.exception("edge failed to handle %s from the broker; dropped it", type(decoded).__name__)

    def _presence_message(self, group: str, data: bytes) -> None:
        try:
            change = json.loads(data)
            edge_id, joined, left = change["edge"], change.get("joined", []), change.get("left", [])
            users_joined = {user: json.loads(info) for user, info in change.get("ujoined", {}).items()}
            users_left = change.get("uleft", [])
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("edge dropped a malformed presence change from the broker: %s", exc)
            return
        try:
            self.events.presence_message(group, edge_id, joined, left, users_joined, users_left)
        except Exception:
            logger.exception("edge failed to handle a presence change of %s from the broker", group)

    async def _subscriptions(self, pubsub, commands: asyncio.Queue) -> None:
        while not self._stopping:
            what, channel = await commands.get()
            # The newest wish wins: a join and a leave in a row must not leave us subscribed.
            if what == "subscribe" and channel in self.channels:
                await pubsub.subscribe(channel)
            elif what == "unsubscribe" and channel not in self.channels:
                self._confirmed.pop(channel, None)
                await pubsub.unsubscribe(channel)

    async def _presence(self, client) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            await self._write_presence(client)

    async def _write_presence(self, client, everything: bool = False) -> None:
        """Write the pending presence changes; with ``everything``, every membership of this edge too.

        After an outage the broker may have lost everything (a restart
        without persistence, a failover to a replica that lagged): the first
        write of a session puts back all of it.
        """
        pending = dict(self._pending)
        if not pending and not everything:
            return
        keys, edge_id = self.keys, self.edge_id
        edge_groups = keys.edge_groups(edge_id)
        memberships = self.events.memberships()
        # Each change is told to the watchers (on other edges: nobody subscribed, Redis drops it)
        # only if its entry appeared or disappeared: a sweep may have told it already.
        async with client.pipeline(transaction=False) as pipe:
            if everything:
                pipe.delete(edge_groups)
                user_of = self.events.user_of
                for group, members in memberships.items():
                    if members:
                        triples = []
                        for conn_id in members:
                            user, info = user_of(group, conn_id) or ("", None)
                            triples += (conn_id, user, _json(info) if user else "")
                        pipe.evalsha(_SHA[MEMBERS_REWRITTEN], 3, keys.members(group), edge_groups, keys.edges,
                                     edge_id, group, keys.presence_channel(group), keys.users_prefix, *triples)
            for (group, conn_id), (joined, user, info) in pending.items():
                pipe.evalsha(_SHA[MEMBER_CHANGED], 3, keys.members(group), edge_groups, keys.edges,
                             edge_id, conn_id, int(joined), group, keys.presence_channel(group),
                             int(not memberships.get(group)), keys.users_prefix, user, info)
            await pipe.execute()
        for item, joined in pending.items():
            if self._pending.get(item) is joined:
                del self._pending[item]


def _json(info: dict | None) -> str:
    return json.dumps(info or {}, separators=(",", ":"), sort_keys=True)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

