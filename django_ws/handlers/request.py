"""self.request: the handshake as a Django HttpRequest, built in the worker."""

from __future__ import annotations

import typing
from importlib import import_module

from django.conf import settings
from django.http import HttpRequest, QueryDict
from django.utils.datastructures import MultiValueDict
from django.utils.functional import SimpleLazyObject

if typing.TYPE_CHECKING:  # pragma: no cover
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser
    from django.contrib.sessions.backends.base import SessionBase


class WebSocketRequest(HttpRequest):
    """The client's handshake, shaped like the HttpRequest of a Django view.

    ``path``, ``GET``, ``META`` (with ``HTTP_*`` headers), ``headers``,
    ``COOKIES`` are filled from what the edge saw. ``session`` is loaded
    through SESSION_ENGINE from the session cookie and ``user`` through
    django.contrib.auth, both lazily: a handler that never looks pays
    nothing, and AnonymousUser stands for a client that is not logged in.

    Every connection has one of these for as long as it is open, and most
    handlers never look at it after ``on_connect``, if at all. So it keeps
    only the handshake as the edge sent it (which the worker holds anyway)
    and builds each of ``META``, ``GET``, ``POST``, ``FILES``, ``COOKIES``,
    ``session`` and ``user`` on first access, then keeps it as a plain
    attribute: one assigned (``request.user = ...``) is used as is, even
    before the first access; one deleted is built again when next read.
    """

    # What HttpRequest.__init__ sets per instance; class attributes cost no
    # memory per connection, and an assignment still makes an instance one.
    method = "GET"
    content_type = None
    content_params = None

    def __init__(self, meta: dict[str, typing.Any], route: str | None = None,
                 resolve: typing.Callable[[str], typing.Any] | None = None):
        # No HttpRequest.__init__(): what it builds is built here on first use.
        self._ws_meta = meta
        #: The route and how it was resolved (django_ws.routing.resolve_ws, passed in by the
        #: worker: handlers do not import routing): ``resolver_match`` is resolved again when
        #: asked for after the handshake, the worker having dropped it (a ResolverMatch is ~0.6 KB).
        self._ws_route = route
        self._ws_resolve = resolve
        self.path = self.path_info = meta.get("path", "/")

    def __getattr__(self, name: str) -> typing.Any:
        # Called only for an attribute that is not set yet (see _LAZY).
        build = _LAZY.get(name)
        if build is None or (name in _NEEDS_APP and not _installed(_NEEDS_APP[name])):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        value = build(self)
        self.__dict__[name] = value
        return value

    @property
    def transport(self) -> str:
        """How the client is connected: ``"websocket"``, or ``"socketio"`` (docs/socketio.rst); for logging."""
        return str(self._ws_meta.get("transport", "websocket"))

    def _get_scheme(self) -> str:
        # HttpRequest.scheme consults SECURE_PROXY_SSL_HEADER first, then this.
        return str(self.META["wsgi.url_scheme"])

    def _build_meta(self) -> dict[str, typing.Any]:
        meta = self._ws_meta
        query = meta.get("query", "")
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": self.path,
            "QUERY_STRING": query,
            "REMOTE_ADDR": meta.get("remote_addr", ""),
            "SERVER_NAME": meta.get("server_name", "localhost"),
            "SERVER_PORT": str(meta.get("server_port", "")),
            "wsgi.url_scheme": "https" if meta.get("secure") else "http",
        }
        for key, value in _header_items(meta):
            # Repeated headers are joined as a WSGI server would join them.
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    def _build_get(self) -> QueryDict:
        return QueryDict(self._ws_meta.get("query", ""), encoding=self._encoding or "utf-8")

    def _build_cookies(self) -> dict[str, str]:
        # From the Cookie header(s) as META would show them, without building META.
        header = None
        for key, value in _header_items(self._ws_meta):
            if key == "HTTP_COOKIE":
                header = value if header is None else f"{header},{value}"
        return _parse_cookies(header or "")

    def _resolve_again(self) -> typing.Any:
        if self._ws_route is None or self._ws_resolve is None:
            return None  # as HttpRequest's: no route was resolved for this request
        return self._ws_resolve(self._ws_route)

    def _load_session(self) -> SessionBase:
        engine = import_module(settings.SESSION_ENGINE)
        store: SessionBase = engine.SessionStore(self.COOKIES.get(settings.SESSION_COOKIE_NAME))
        return store

    def _load_user(self) -> AbstractBaseUser | AnonymousUser:
        from django.contrib.auth import get_user

        return get_user(self)


#: The attributes WebSocketRequest builds on first access, and how.
_LAZY: dict[str, typing.Callable[[WebSocketRequest], typing.Any]] = {
    "META": WebSocketRequest._build_meta,
    "GET": WebSocketRequest._build_get,
    "resolver_match": WebSocketRequest._resolve_again,
    "POST": lambda request: QueryDict(mutable=True),
    "FILES": lambda request: MultiValueDict(),
    "COOKIES": WebSocketRequest._build_cookies,
    "session": lambda request: SimpleLazyObject(request._load_session),
    "user": lambda request: SimpleLazyObject(request._load_user),
}

#: session and user exist only with their apps installed, as with Django's middleware.
_NEEDS_APP = {"session": "django.contrib.sessions", "user": "django.contrib.auth"}


#: Header names whose values repeat from client to client (one browser, one site): shared by share_meta().
_REPEATING_HEADERS = frozenset(name.lower() for name in (
    "Host", "Connection", "Upgrade", "Sec-WebSocket-Version", "Sec-WebSocket-Extensions", "Origin",
    "User-Agent", "Accept-Encoding", "Accept-Language", "Cache-Control", "Pragma", "X-Forwarded-Proto",
))
#: Fields of the handshake whose values repeat from connection to connection.
_REPEATING_FIELDS = frozenset(("path", "server_name", "server_port", "remote_addr", "transport"))
#: One copy of each string that share_meta() has seen; bounded, so that clients
#: sending ever new values cannot grow it: once full, new values are kept as they are.
_SHARED: dict[str, str] = {}
_SHARED_LIMIT = 4096


def _shared(value: typing.Any) -> typing.Any:
    if type(value) is not str:
        return value
    shared = _SHARED.get(value)
    if shared is not None:
        return shared
    if len(_SHARED) < _SHARED_LIMIT and len(value) <= 256:
        _SHARED[value] = value
    return value


def _shared_header(header: typing.Any) -> typing.Any:
    if type(header) is not list or len(header) != 2:
        return header  # not what the edge sends; _header_items() will say so if it matters
    name, value = header
    if type(name) is str and name.lower() in _REPEATING_HEADERS:
        value = _shared(value)
    return (_shared(name), value)


def share_meta(meta: dict[str, typing.Any]) -> dict[str, typing.Any]:
    """The handshake as the edge sent it, made smaller to keep for the connection's life.

    Decoded from JSON, every connection's handshake has its own copy of the
    same key and header-name strings and of most values (``Host``,
    ``Upgrade: websocket``...), about 2 KB in all. The worker keeps it for
    ``self.request``, built lazily from it; here those strings are shared
    between connections and each header becomes a tuple. Same content, same
    order: only ``list`` becomes ``tuple`` for the headers.
    """
    shared = {}
    for key, value in meta.items():
        key = _shared(key)
        if key == "headers" and type(value) is list:
            value = tuple(_shared_header(header) for header in value)
        elif key in _REPEATING_FIELDS:
            value = _shared(value)
        shared[key] = value
    return shared


def _header_items(meta: dict[str, typing.Any]) -> typing.Iterator[tuple[str, str]]:
    """The handshake's headers as (META key, value), in order, repeats repeated."""
    for name, value in meta.get("headers", ()):
        if "_" in name:
            # As Django's runserver and nginx do: X_Forwarded_For must not
            # pass for X-Forwarded-For once both become HTTP_X_FORWARDED_FOR.
            continue
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        yield key, value


def _parse_cookies(header: str) -> dict[str, str]:
    from django.http.cookie import parse_cookie

    return parse_cookie(header)


def _installed(app: str) -> bool:
    from django.apps import apps

    return apps.is_installed(app)
