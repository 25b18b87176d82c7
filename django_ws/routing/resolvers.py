"""The root websocket URLconf, resolve_ws() and reverse_ws().

The root is a synthetic module holding the project's ws_urls patterns
followed by one route per DEFAULT_WS_HANDLERS namespace, so both the new
routing and the original namespace setting go through the same Django
resolver, and the edge and the worker agree on what a route means.
"""

from __future__ import annotations

import functools
import importlib
import re
import types
from typing import TYPE_CHECKING, Any, Sequence

from django.core.exceptions import ImproperlyConfigured
from django.urls import ResolverMatch, resolve, reverse

from django_ws.conf import ws_settings

from .patterns import ws_path

if TYPE_CHECKING:  # pragma: no cover
    from django.http import HttpRequest

#: Name of the kwarg that carries the original namespace to legacy handlers.
NAMESPACE_KWARG = "namespace"


def _legacy_routes(mapping: dict) -> tuple[list, dict]:
    """One route per DEFAULT_WS_HANDLERS entry; '' reaches 'default' as before."""
    if not isinstance(mapping, dict):
        raise ImproperlyConfigured(
            "DEFAULT_WS_HANDLERS must be a dict of namespace -> dotted handler path, "
            f"not {type(mapping).__name__}"
        )
    routes, regexes = [], {}
    for namespace, handler in mapping.items():
        if not isinstance(namespace, str) or not re.fullmatch(r"[\w-]*", namespace):
            raise ImproperlyConfigured(
                f"DEFAULT_WS_HANDLERS: namespace {namespace!r} must be letters, digits, '_' or '-'"
            )
        names = [namespace] + ([""] if namespace == "default" else [])
        for name in names:
            regex = f"^(?P<{NAMESPACE_KWARG}>{re.escape(name)})$"
            routes.append(ws_path(regex, handler))
            regexes[regex] = namespace
    return routes, regexes


@functools.lru_cache(maxsize=None)
def get_ws_urlconf() -> types.ModuleType:
    """The root websocket URLconf module (cached; cleared when settings change)."""
    name, explicit = ws_settings.urlconf_name
    try:
        module = importlib.import_module(name)
        patterns = list(getattr(module, "urlpatterns"))
    except ModuleNotFoundError as exc:
        if explicit or exc.name != name:
            raise
        patterns = []
    except AttributeError:
        raise ImproperlyConfigured(f"websocket URLconf {name!r} has no 'urlpatterns' list") from None
    legacy, legacy_regexes = _legacy_routes(ws_settings.DEFAULT_WS_HANDLERS)
    root = types.ModuleType("django_ws.routing.root", f"websocket routes from {name} and DEFAULT_WS_HANDLERS")
    root.urlpatterns = patterns + legacy
    root.legacy_regexes = legacy_regexes
    root.source = name
    return root


def resolve_ws(route: str) -> ResolverMatch:
    """Resolve a route (the path below the mount prefix) or raise Resolver404.

    The match's ``func`` is the handler class; ``kwargs`` are its arguments.
    """
    return resolve("/" + route, urlconf=get_ws_urlconf())


def legacy_namespace(match: ResolverMatch) -> str | None:
    """The DEFAULT_WS_HANDLERS namespace a match came from, or None."""
    return get_ws_urlconf().legacy_regexes.get(match.route)


def reverse_ws(viewname: str, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None, *,
               base_url: str | None = None, request: HttpRequest | None = None, **kw: Any) -> str:
    """The absolute ws:// (or wss://) URL of a named route.

    Takes its route arguments as Django's ``reverse`` does (``args=``,
    ``kwargs=``) or, for convenience, as keyword arguments:
    ``reverse_ws('chat', room='x')``. Raises NoReverseMatch like ``reverse``.

    A relative WS_BASE_URL (``"/socket"``: the edge behind the same host and
    port as the site, through a proxy) takes its scheme and host from
    ``request`` (wss:// when the request is secure); without one, the URL
    stays relative (``/socket/chat/x``), which browsers resolve against the
    page since 2024 (the WebSocket standard allows relative URLs).
    """
    if kw:
        if kwargs:
            raise TypeError("reverse_ws(): pass route arguments as kwargs= or as keywords, not both")
        kwargs = kw
    path = reverse(viewname, urlconf=get_ws_urlconf(), args=args, kwargs=kwargs)
    base = (base_url if base_url is not None else ws_settings.WS_BASE_URL).rstrip("/")
    if base.startswith("/") or not base:
        if request is not None:
            scheme = "wss" if request.is_secure() else "ws"
            base = f"{scheme}://{request.get_host()}{base}"
    return base + path


def clear_ws_urlconf_cache(**kwargs) -> None:
    """Forget the compiled routes (connected to Django's setting_changed)."""
    if kwargs.get("setting") in (None, "WS_URLCONF", "ROOT_URLCONF", "DEFAULT_WS_HANDLERS"):
        get_ws_urlconf.cache_clear()
