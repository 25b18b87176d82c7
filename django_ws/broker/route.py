"""How web processes, commands and workers reach clients in cluster mode: one publish per send.

Installed by the worker at start, and chosen by :mod:`django_ws.sending` for
every other process whenever ``WS_BROKER`` is set. Blocking redis-py calls,
each bounded by the send's timeout: Redis unreachable means
:class:`~django_ws.SendError` within ``WS_SEND_TIMEOUT``, never a hang and
never a silent drop.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import typing

from django_ws import wire
from django_ws.conf import ws_settings
from django_ws.exceptions import SendError
from django_ws.history import History, HistoryBound, parse_settings

from . import config as broker_config
from .keys import EPOCH_LIFE_MS, GROUP_MEMBERS, PUBLISH_ONCE, PUBLISH_WITH_HISTORY, Keys, pack


class BrokerRoute:
    """Sends and closes as publishes to Redis, presence from Redis; one round trip each.

    ``send_to_group`` and ``close_group`` count None: Redis tells how many edges took the
    message, not how many clients it reached (that would take a round trip
    to every edge). ``send_to_connection`` returns whether the connection's
    edge was subscribed, which is whether it was alive.
    """

    def __init__(self, config: broker_config.BrokerConfig | None = None):
        self._config = config

    @property
    def config(self) -> broker_config.BrokerConfig:
        config = self._config or broker_config.configured()
        if config is None:
            raise SendError("WS_BROKER is not set")
        return config

    def send(self, make: typing.Callable[[str], wire.Message], timeout: float | None, key: str | None) -> int | None:
        """Publish the message ``make`` builds: None for a group, 1 or 0 for a connection (its edge took it, or none).

        A send or a close: GroupSend, SendTo or CloseConnections (sending.py makes only these).
        """
        message = make("")
        keys = Keys(broker_config.prefix())
        if isinstance(message, wire.GroupSend):
            channel = keys.group_channel(message.group)
        elif isinstance(message, wire.SendTo):
            channel = keys.direct_channel(message.conn_id.rpartition(".")[0])
        elif isinstance(message, wire.CloseConnections):  # a close is never kept in a group's history
            channel = (keys.direct_channel(message.conn_id.rpartition(".")[0]) if message.conn_id
                       else keys.group_channel(message.group))
        else:  # pragma: no cover  (sending.py makes only these three)
            raise TypeError(f"cannot publish a {type(message).__name__}")
        data = pack(message)
        ttl_ms = int(float(ws_settings.WS_SEND_KEY_TTL) * 1000)
        keyed = key is not None and ttl_ms > 0
        bound = history_bound(message.group) if isinstance(message, wire.GroupSend) else None

        def publish(client) -> int:
            if bound is not None:
                stream, epoch = keys.history(message.group)
                return client.register_script(PUBLISH_WITH_HISTORY)(
                    keys=[stream, epoch, keys.send_key(key) if keyed else ""],
                    args=[channel, data, bound.size, int(bound.ttl * 1000), new_epoch(), ttl_ms, EPOCH_LIFE_MS])
            if not keyed:
                return client.publish(channel, data)
            return client.register_script(PUBLISH_ONCE)(keys=[keys.send_key(key)], args=[channel, data, ttl_ms])

        if isinstance(message, wire.CloseConnections):
            reached = self._call(lambda client: client.publish(channel, data), timeout, None)
            return (1 if reached > 0 else 0) if message.conn_id else None
        reached = self._call(publish, timeout, key)
        if isinstance(message, wire.SendTo):
            return 1 if reached > 0 else 0
        return None

    def members(self, group: str, timeout: float | None) -> list[str]:
        """The ids in ``group``, from Redis, but those of edges whose lease lapsed (dropped on the way)."""
        keys = Keys(broker_config.prefix())
        found = self._call(lambda client: client.register_script(GROUP_MEMBERS)(
            keys=[keys.members(group)], args=[keys.lease_prefix, keys.presence_channel(group), keys.users_prefix,
                                              group]), timeout, None)
        return sorted(conn_id.decode() if isinstance(conn_id, bytes) else conn_id for conn_id in found)

    def endpoints(self, timeout: float | None = None) -> list[str]:
        """The sub endpoints of the live edges, as they announce them (the admin's live view asks each one)."""
        from .discovery import read_registry

        keys = Keys(broker_config.prefix())
        found = self._call(lambda client: read_registry(client, keys), timeout, None)
        return sorted(announced["sub"] for announced in found.values())

    def counts(self, group: str, timeout: float | None) -> tuple[int, int]:
        """(connections, users) of ``group``: HLEN and ZCARD, one round trip, no member moved.

        A dead edge's share counts until the sweep removes it (within the lease).
        """
        keys = Keys(broker_config.prefix())

        def count(client) -> list[int]:
            pipe = client.pipeline(transaction=False)
            pipe.hlen(keys.members(group))
            pipe.zcard(keys.users(group)[2])
            return pipe.execute()

        size, users = self._call(count, timeout, None)
        return int(size), int(users)

    def users(self, group: str, limit: int, after: str | None, timeout: float | None) -> dict:
        """A page of ``group``'s users in key order (ZRANGEBYLEX on ``uz:``), with counts and infos."""
        keys = Keys(broker_config.prefix())
        counts_key, infos_key, order_key = keys.users(group)

        def page(client) -> dict:
            start = "-" if after is None else "(" + after
            chosen = [_text(key) for key in client.zrangebylex(order_key, start, "+", start=0, num=limit + 1)]
            more, chosen = len(chosen) > limit, chosen[:limit]
            if not chosen:
                return {"users": {}, "next": None}
            pipe = client.pipeline(transaction=False)
            pipe.hmget(counts_key, chosen)
            pipe.hmget(infos_key, chosen)
            counts, infos = pipe.execute()
            users = {key: {"info": json.loads(info) if info else {}, "connections": int(n or 0)}
                     for key, n, info in zip(chosen, counts, infos)}
            return {"users": users, "next": chosen[-1] if more else None}

        return self._call(page, timeout, None)

    def _call(self, call: typing.Callable, timeout: float | None, key: str | None):
        import redis

        timeout = float(ws_settings.WS_SEND_TIMEOUT if timeout is None else timeout)
        config = self.config
        try:
            return call(_client(config, timeout))
        except redis.RedisError as exc:
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise SendError(f"websocket broker not reachable ({config.name}: {why})",
                            unreached={config.name: why}, key=key) from None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


_history: tuple[str, History] | None = None


def history_bound(group: str) -> HistoryBound | None:
    """How much history WS_GROUP_HISTORY keeps for ``group`` (None: none), as the edges read it."""
    global _history
    setting = json.dumps(ws_settings.WS_GROUP_HISTORY or {}, sort_keys=True, default=str)
    if _history is None or _history[0] != setting:  # override_settings in tests changes it
        _history = (setting, History(parse_settings(ws_settings.WS_GROUP_HISTORY)))
    return _history[1].bound_for(group)


def new_epoch() -> str:
    """An epoch for a history the broker starts (again): random, so never one a client saw before."""
    return secrets.token_hex(6)


_local = threading.local()


def _client(config: broker_config.BrokerConfig, timeout: float):
    """This thread's client for ``config`` and ``timeout`` (a fork or new settings get a new one).

    Each attempt gets a third of the timeout to connect and a third to be
    answered, and a stale pooled connection (Redis restarted since) one retry
    on a fresh one: the whole call stays within ``timeout``.
    """
    clients = getattr(_local, "clients", None)
    if clients is None or _local.pid != os.getpid():
        clients = _local.clients = {}
        _local.pid = os.getpid()
    client = clients.get((config, timeout))
    if client is None:
        if len(clients) > 8:
            clients.clear()
        client = clients[(config, timeout)] = config.sync_client(timeout=timeout / 3, retries=1)
    return client
