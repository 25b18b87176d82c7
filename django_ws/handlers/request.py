"""self.request: the handshake as a Django HttpRequest, built in the worker."""

from __future__ import annotations

from importlib import import_module

from django.conf import settings
from django.http import HttpRequest, QueryDict
from django.utils.functional import SimpleLazyObject


class WebSocketRequest(HttpRequest):
    """The client's handshake, shaped like the HttpRequest of a Django view.

    ``path``, ``GET``, ``META`` (with ``HTTP_*`` headers), ``headers``,
    ``COOKIES`` are filled from what the edge saw. ``session`` is loaded
    through SESSION_ENGINE from the session cookie and ``user`` through
    django.contrib.auth, both lazily: a handler that never looks pays
    nothing, and AnonymousUser stands for a client that is not logged in.
    """

    def __init__(self, meta: dict):
        super().__init__()
        self.method = "GET"
        self.path = self.path_info = meta.get("path", "/")
        query = meta.get("query", "")
        self.GET = QueryDict(query, encoding="utf-8")
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": self.path,
            "QUERY_STRING": query,
            "REMOTE_ADDR": meta.get("remote_addr", ""),
            "SERVER_NAME": meta.get("server_name", "localhost"),
            "SERVER_PORT": str(meta.get("server_port", "")),
            "wsgi.url_scheme": "https" if meta.get("secure") else "http",
        }
        for name, value in meta.get("headers", []):
            if "_" in name:
                # As Django's runserver and nginx do: X_Forwarded_For must not
                # pass for X-Forwarded-For once both become HTTP_X_FORWARDED_FOR.
                continue
            key = name.upper().replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
            # Repeated headers are joined as a WSGI server would join them.
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        self.META = environ
        self.COOKIES = _parse_cookies(environ.get("HTTP_COOKIE", ""))
        if _installed("django.contrib.sessions"):
            self.session = SimpleLazyObject(self._load_session)
        if _installed("django.contrib.auth"):
            self.user = SimpleLazyObject(self._load_user)

    def _get_scheme(self) -> str:
        # HttpRequest.scheme consults SECURE_PROXY_SSL_HEADER first, then this.
        return self.META["wsgi.url_scheme"]

    def _load_session(self):
        engine = import_module(settings.SESSION_ENGINE)
        return engine.SessionStore(self.COOKIES.get(settings.SESSION_COOKIE_NAME))

    def _load_user(self):
        from django.contrib.auth import get_user

        return get_user(self)


def _parse_cookies(header: str) -> dict:
    from django.http.cookie import parse_cookie

    return parse_cookie(header)


def _installed(app: str) -> bool:
    from django.apps import apps

    return apps.is_installed(app)
