"""django-ws settings and their defaults.

Every setting is read from Django's settings at the moment it is used, so
``override_settings`` in tests works as it does for Django's own settings.
docs/settings.rst documents each one.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile

from django.conf import settings as django_settings

#: Every django-ws setting and its default; docs/settings.rst documents each one.
DEFAULTS = {
    # Dotted path of the root route module. None: "<ROOT_URLCONF's package>.ws_urls",
    # and no routes at all if that module does not exist.
    "WS_URLCONF": None,
    # Scheme, host, port and mount prefix that reverse_ws() puts in front of a route; or a
    # path alone ("/socket"), whose scheme and host come from the request ({% reverse_ws %}).
    "WS_BASE_URL": "ws://localhost:8888/socket",
    # The original namespace -> handler mapping (still honoured).
    "DEFAULT_WS_HANDLERS": {},
    # Default ZeroMQ endpoints (the --push-socket / --sub-socket options). None:
    # ipc:// sockets private to this project and this user (project_endpoint()).
    "WS_PUSH_SOCKET": None,
    "WS_SUB_SOCKET": None,
    # Heartbeats between edge and workers, in seconds.
    "WS_HEARTBEAT_INTERVAL": 0.5,
    "WS_HEARTBEAT_TIMEOUT": 2.0,
    # How long a handshake waits for a worker to accept before it gets 503.
    "WS_HANDSHAKE_TIMEOUT": 5.0,
    # Largest client message in bytes; bigger ones close the connection with 1009.
    "WS_MAX_MESSAGE_SIZE": 1024 * 1024,
    # Hosts an Origin header may name; None means ALLOWED_HOSTS.
    "WS_ALLOWED_ORIGINS": None,
    # Seconds a graceful shutdown waits for handlers before it kills them.
    "WS_SHUTDOWN_TIMEOUT": 5.0,
    # Threaded mode: seconds a pool thread with nothing to do waits before it ends.
    "WS_THREAD_IDLE_TIMEOUT": 30.0,
    # ZeroMQ high-water mark (messages) on each edge<->worker socket.
    "WS_QUEUE_LIMIT": 10000,
    # Sub endpoints of every edge, for send_to_group() & co. outside workers.
    # None: [WS_SUB_SOCKET], the one local edge.
    "WS_EDGES": None,
    # Cluster mode (docs/cluster.rst): None (one host, Redis never imported), a
    # redis:// or rediss:// URL, or a Sentinel dict. Edges, workers and senders
    # then find each other, and send to groups, through it.
    "WS_BROKER": None,
    # Start of every Redis key and channel django-ws uses, so projects can share one Redis.
    "WS_BROKER_PREFIX": "django_ws:",
    # Seconds an edge's announcement lives without renewal (renewed every third of it).
    "WS_BROKER_LEASE": 10.0,
    # Seconds send_to_group() & co. wait for every edge to confirm (outside workers).
    "WS_SEND_TIMEOUT": 2.0,
    # Seconds an edge remembers a sender's idempotency key (send_to_group(key=...)):
    # a retry with the same key within it is not delivered twice. 0 forgets at once.
    "WS_SEND_KEY_TTL": 60.0,
    # Group-name patterns (shell-style) -> {"size": messages, "ttl": seconds}: the
    # edge keeps that much of each matching group's messages, with positions, to
    # replay to a client that comes back (docs/protocol.rst). {}: no history.
    "WS_GROUP_HISTORY": {},
    # Seconds the edge gathers the user joins and leaves of a group before it
    # tells the handlers watching it, in one on_user_presence call (0: at once).
    "WS_PRESENCE_WINDOW": 0.1,
    # Bytes (as JSON) of the info join(group, presence={...}) may carry per user.
    "WS_PRESENCE_INFO_MAX": 2048,
    # Keepalive: the edge pings every client this often (seconds; 0 disables) and
    # drops one that has not answered within WS_PING_TIMEOUT.
    "WS_PING_INTERVAL": 20.0,
    "WS_PING_TIMEOUT": 20.0,
    # Bytes the edge buffers for one client that does not read; past it the
    # connection is closed with 1008.
    "WS_MAX_BUFFER_SIZE": 4 * 1024 * 1024,
    # Believe X-Forwarded-For / X-Real-IP and X-Forwarded-Proto / X-Scheme for the
    # client's address and scheme. Only behind a proxy that sets them: otherwise
    # any client could claim any address.
    "WS_TRUST_PROXY_HEADERS": False,
    # Seconds a client may take to send its handshake's headers (slow-header
    # attacks hold a socket open otherwise; Tornado's own default is an hour).
    "WS_HEADER_TIMEOUT": 10.0,
    # The edge's TCP accept queue (the kernel caps it at net.core.somaxconn).
    "WS_LISTEN_BACKLOG": 4096,
    # The edge's event loop: "auto" (uvloop if installed), "asyncio" or "uvloop".
    "WS_EVENT_LOOP": "auto",
    # Tokens (django_ws.tokens): lifetime of make_token()'s tokens in seconds, and
    # the query parameter a token may travel in (RFC 6750's name; the edge
    # redacts it from its logs). None or "": tokens only in headers/subprotocols.
    "WS_TOKEN_MAX_AGE": 300,
    "WS_CLOSE_ON_LOGOUT": True,
    "WS_TOKEN_QUERY_PARAM": "access_token",
    # JSON Web Tokens minted elsewhere: None, or a dict with "algorithms",
    # "issuer", "audience", one of "key" / "jwks_url", and optionally
    # "user_claim" ("sub"), "user_field" ("username"), "scope_claim" ("scope"), "leeway" (0),
    # "jwks_timeout" (3).
    "WS_JWT": None,
    # Limits per client address, at the edge (0 or None disables each): new
    # connections per WS_NEW_CONNECTIONS_WINDOW seconds (a token bucket: that
    # many at once, then refilled evenly), and open connections at once. Past
    # either, HTTP 429 with Retry-After.
    "WS_NEW_CONNECTIONS_PER_ADDRESS": 60,
    "WS_NEW_CONNECTIONS_WINDOW": 10.0,
    "WS_CONNECTIONS_PER_ADDRESS": 100,
    # Limits per connection, at the edge: messages and bytes a client may send
    # per WS_MESSAGE_WINDOW seconds (token buckets); past either, close 1008.
    "WS_MESSAGES_PER_CONNECTION": 1000,
    "WS_BYTES_PER_CONNECTION": 8 * 1024 * 1024,
    "WS_MESSAGE_WINDOW": 1.0,
    # ZeroMQ CURVE for tcp:// endpoints: None, or a dict of Z85 keys
    # {"server_public", "server_secret", "client_public", "client_secret"}
    # (manage.py ws_keygen prints one).
    "WS_CURVE": None,
    # permessage-deflate (RFC 7692): False (off), True (the defaults of
    # django_ws.edge.deflate.DEFLATE_DEFAULTS) or a dict overriding some of them.
    "WS_COMPRESSION": False,
    # Socket.IO (docs/socketio.rst): serve it at <websocket-url prefix>/socket.io/ too
    # (needs the [socketio] extra). Engine.IO's keepalive: the edge pings each client
    # every WS_SOCKETIO_PING_INTERVAL seconds and closes one (on_close runs, code
    # 1011) that has not answered, or polled, within WS_SOCKETIO_PING_TIMEOUT more.
    "WS_SOCKETIO": False,
    "WS_SOCKETIO_PING_INTERVAL": 25.0,
    "WS_SOCKETIO_PING_TIMEOUT": 20.0,
    # The edge's HTTP publish API (POST /_django_ws/publish, docs/operating.rst): the keys
    # that may use it, a list or a dict of name -> key; empty: the API is off (404).
    "WS_API_KEYS": [],
    # Publish requests per second each key may make (a token bucket holding a
    # second's worth, at least 1); past it, 429 with Retry-After. 0 or None: no limit.
    "WS_API_RATE": 100.0,
    # The admin's live view (docs/operating.rst): seconds it waits for each edge's
    # report (all edges are asked at once); an edge later than that shows as not answering.
    "WS_ADMIN_TIMEOUT": 1.0,
    # OpenTelemetry spans for sends, deliveries, handshakes and handler calls (docs/operating.rst,
    # "Traces"; needs the [otel] extra and a tracer provider the project configures). Off:
    # nothing of OpenTelemetry is imported.
    "WS_TRACING": False,
}


class WebSocketSettings:
    """Attribute access to the settings above, falling back to DEFAULTS."""

    def __getattr__(self, name: str):
        if name not in DEFAULTS:
            raise AttributeError(f"unknown django-ws setting {name!r}")
        value = getattr(django_settings, name, DEFAULTS[name])
        if value is None and name in _ENDPOINTS:
            return project_endpoint(_ENDPOINTS[name])
        return value

    @property
    def urlconf_name(self) -> tuple[str, bool]:
        """The root route module and whether the user named it explicitly."""
        explicit = getattr(django_settings, "WS_URLCONF", None)
        if explicit:
            return explicit, True
        root = getattr(django_settings, "ROOT_URLCONF", "") or ""
        package = root.rpartition(".")[0]
        return (f"{package}.ws_urls" if package else "ws_urls"), False


ws_settings = WebSocketSettings()


def api_keys(setting) -> dict[str, str]:
    """WS_API_KEYS as ``{name: key}``: a dict as it is, a list named by position ("0", "1", ...)."""
    if not setting:
        return {}
    if isinstance(setting, str):
        raise TypeError("WS_API_KEYS must be a list of keys or a dict of name -> key, not one str")
    items = setting.items() if isinstance(setting, dict) else ((str(i), k) for i, k in enumerate(setting))
    keys = {}
    for name, key in items:
        if not isinstance(key, str) or not key:
            raise TypeError(f"WS_API_KEYS: the key {name!r} must be a non-empty str")
        keys[str(name)] = key
    return keys


_ENDPOINTS = {"WS_PUSH_SOCKET": "push", "WS_SUB_SOCKET": "sub"}


def project_directory() -> str:
    """The directory of this project's default ipc:// endpoints.

    ``<temp dir>/django-ws-<uid>/<settings module>-<hash>``: one per user (the
    edge makes it readable by its owner only) and one per project, told apart
    by the file its settings module was loaded from. Every process of one
    project (run_wsserver, run_wsworker, ws_send, a view calling
    send_to_group) finds the same edge with no setting at all, and two
    projects on one machine never meet. The temporary directory is Python's
    (``TMPDIR``, else ``/tmp``): processes that must meet need the same one.
    """
    module = getattr(django_settings, "SETTINGS_MODULE", None) or "settings"
    origin = getattr(sys.modules.get(module), "__file__", None) or os.path.join(os.getcwd(), module)
    digest = hashlib.sha256(os.path.realpath(origin).encode()).hexdigest()[:10]
    # Readable, and short: the whole path must fit in a sockaddr_un (107 bytes).
    name = re.sub(r"[^\w.-]", "_", module)[:32]
    return os.path.join(tempfile.gettempdir(), f"django-ws-{os.getuid()}", f"{name}-{digest}")


def project_endpoint(kind: str) -> str:
    """``ipc://<project_directory()>/<kind>``: a default endpoint of this project ("push" or "sub")."""
    return f"ipc://{project_directory()}/{kind}"
