"""``WS_BROKER`` and its companions, read and checked; clients made from them.

Pure but for :meth:`BrokerConfig.sync_client` and :meth:`BrokerConfig.async_client`,
which import redis-py when called: a project without ``WS_BROKER`` never imports it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import typing
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from django_ws.conf import ws_settings

_SENTINEL_KEYS = {"sentinels", "service_name", "db", "password", "username", "ssl", "sentinel_password"}
_INSTALL = "pip install 'django-ws-edge[redis]'"


@dataclasses.dataclass(frozen=True)
class BrokerConfig:
    """Where the broker is: a redis:// or rediss:// URL, or a Sentinel service.

    ``name`` says where in words a log line or a SendError can carry: the
    password never appears in it.
    """

    url: str | None = None
    sentinels: tuple[tuple[str, int], ...] = ()
    service_name: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    ssl: bool = False

    @property
    def name(self) -> str:
        if self.url is not None:
            return redact(self.url)
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"sentinel {self.service_name}@{hosts}/{self.db}"

    def _options(self, timeout: float | None, retries: int, asyncio: bool, connect_timeout: float | None) -> dict:
        if asyncio:
            from redis.asyncio.retry import Retry
        else:
            from redis.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError

        options: dict[str, typing.Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout if connect_timeout is None else connect_timeout,
            # No back-off: a send must fail within its timeout. A retry only after a
            # connection error (a pooled connection Redis closed when it restarted),
            # never after a timeout, which may hide a publish that did happen.
            "retry": Retry(NoBackoff(), retries, supported_errors=(ConnectionError,)),
            "socket_keepalive": True,
            "socket_keepalive_options": _keepalive_options(),
        }
        return options

    def sync_client(self, *, timeout: float | None, retries: int = 0, connect_timeout: float | None = None):
        """A redis-py client for this broker; each operation fails after ``timeout`` seconds.

        ``connect_timeout``: for connecting, if not ``timeout`` (a pub/sub
        connection waits for messages without end, but must not wait so for a host that is gone).
        """
        try:
            import redis
            from redis.sentinel import Sentinel
        except ImportError:
            raise ImproperlyConfigured(f"WS_BROKER needs redis-py: {_INSTALL}") from None
        options = self._options(timeout, retries, asyncio=False, connect_timeout=connect_timeout)
        return self._client(redis.Redis, Sentinel, options, timeout)

    def async_client(self, *, timeout: float | None, retries: int = 0, connect_timeout: float | None = None):
        """A redis.asyncio client for this broker (the edge's: never a blocking call on its loop); as sync_client."""
        try:
            import redis.asyncio as aioredis
            from redis.asyncio.sentinel import Sentinel
        except ImportError:
            raise ImproperlyConfigured(f"WS_BROKER needs redis-py: {_INSTALL}") from None
        options = self._options(timeout, retries, asyncio=True, connect_timeout=connect_timeout)
        return self._client(aioredis.Redis, Sentinel, options, timeout)

    def _client(self, redis_class: type, sentinel_class: type, options: dict, timeout: float | None):
        """``redis_class`` for a URL, or the master ``sentinel_class`` finds: one recipe for sync and async."""
        if self.url is not None:
            return redis_class.from_url(self.url, **options)
        sentinel = sentinel_class(list(self.sentinels), sentinel_kwargs=self._sentinel_kwargs(timeout), **options)
        return sentinel.master_for(self.service_name, db=self.db, username=self.username,
                                   password=self.password, ssl=self.ssl)

    def _sentinel_kwargs(self, timeout: float | None) -> dict:
        kwargs: dict[str, typing.Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        if self.sentinel_password:
            kwargs["password"] = self.sentinel_password
        return kwargs


def _sentinels_of(client) -> list:
    """The clients a Sentinel master's pool asks for the master (none for a URL's client).

    ``close()``/``aclose()`` of a master client closes its own pool only; the
    connections to the sentinels would stay open until the garbage collector
    (a ResourceWarning) or the end of the process.
    """
    manager = getattr(client.connection_pool, "sentinel_manager", None)
    return list(getattr(manager, "sentinels", ()))


def close_client(client) -> None:
    """Close a client from sync_client(), and its connections to the sentinels if it has any."""
    try:
        client.close()
    finally:
        for sentinel in _sentinels_of(client):
            sentinel.close()


async def aclose_client(client, timeout: float = 5.0) -> None:
    """Close a client from async_client(), and its connections to the sentinels, within ``timeout`` each.

    A broken connection (a broker killed, a partition) may not close cleanly:
    whatever happens, each client is asked, so nothing is left to the
    garbage collector after the loop has closed.
    """
    for each in (client, *_sentinels_of(client)):
        try:
            await asyncio.wait_for(each.aclose(), timeout)
        except Exception:  # noqa: BLE001  (closing what failed: nothing more to do)
            pass


def _keepalive_options() -> dict:
    # A broker across a partition sends no reset: find out in seconds, not in the kernel's two hours.
    options = {}
    for name, value in (("TCP_KEEPIDLE", 2), ("TCP_KEEPINTVL", 1), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            options[getattr(socket, name)] = value
    return options


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (whatever else is wrong with it)."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return parts._replace(netloc=f"{userinfo.partition(':')[0]}:***@{host}").geturl()


def parse(value: typing.Any) -> BrokerConfig | None:
    """``WS_BROKER`` as a BrokerConfig (None: no broker); ImproperlyConfigured says what is wrong."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ImproperlyConfigured(
                f"WS_BROKER must be redis://[user:password@]host:port/db or rediss://..., not {redact(value)!r}")
        try:
            parts.port  # noqa: B018  (raises on a bad port)
        except ValueError:
            raise ImproperlyConfigured(f"WS_BROKER has a bad port: {redact(value)!r}") from None
        return BrokerConfig(url=value)
    if isinstance(value, typing.Mapping):
        unknown = sorted(set(value) - _SENTINEL_KEYS)
        if unknown:
            raise ImproperlyConfigured(f"WS_BROKER (Sentinel) has unknown keys {unknown}; "
                                       f"known: {sorted(_SENTINEL_KEYS)}")
        sentinels = value.get("sentinels")
        if (not isinstance(sentinels, (list, tuple)) or not sentinels
                or not all(isinstance(s, (list, tuple)) and len(s) == 2 and isinstance(s[0], str)
                           and isinstance(s[1], int) for s in sentinels)):
            raise ImproperlyConfigured('WS_BROKER["sentinels"] must be a list of ("host", port) pairs')
        service = value.get("service_name")
        if not isinstance(service, str) or not service:
            raise ImproperlyConfigured('WS_BROKER["service_name"] must name the Sentinel service, e.g. "mymaster"')
        db = value.get("db", 0)
        if isinstance(db, bool) or not isinstance(db, int) or db < 0:
            raise ImproperlyConfigured(f'WS_BROKER["db"] must be an int >= 0, not {db!r}')
        return BrokerConfig(sentinels=tuple((h, p) for h, p in sentinels), service_name=service, db=db,
                            username=value.get("username"), password=value.get("password"),
                            sentinel_password=value.get("sentinel_password"), ssl=bool(value.get("ssl", False)))
    raise ImproperlyConfigured(f"WS_BROKER must be a redis:// URL or a Sentinel dict, not {type(value).__name__}")


def lease() -> float:
    """``WS_BROKER_LEASE``, checked: seconds an edge's announcement lives without renewal."""
    value = ws_settings.WS_BROKER_LEASE
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0.3:
        raise ImproperlyConfigured(f"WS_BROKER_LEASE must be seconds, at least 0.3, not {value!r}")
    return float(value)


def prefix() -> str:
    value = ws_settings.WS_BROKER_PREFIX
    if not isinstance(value, str):
        raise ImproperlyConfigured(f"WS_BROKER_PREFIX must be a str, not {type(value).__name__}")
    return value


def configured() -> BrokerConfig | None:
    """The broker of the current settings, or None when ``WS_BROKER`` is not set."""
    return parse(ws_settings.WS_BROKER)
