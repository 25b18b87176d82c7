"""Where the routes live on the edge: the parsed ``--websocket-url`` option."""

from __future__ import annotations

import re

from django.urls import Resolver404, ResolverMatch

from .resolvers import legacy_namespace, resolve_ws

_LITERAL = re.compile(r"/?[\w.~\-]+(?:/[\w.~\-]+)*")


class Mount:
    """The websocket URL prefix, plus the original namespace group if any.

    ``--websocket-url`` keeps the original form: a path prefix, optionally
    followed by a ``(?P<namespace>...)`` group as in
    ``/socket/(?P<namespace>\\w*)``. Routes from ws_urls.py are mounted below
    the prefix (``/socket/chat/lobby``); a namespace from DEFAULT_WS_HANDLERS
    must also match the group's expression, as it had to originally.
    """

    def __init__(self, websocket_url: str = "/socket"):
        self.websocket_url = websocket_url
        prefix, sep, rest = websocket_url.partition("(?P<namespace>")
        namespace_regex = None
        if sep:
            if not rest.endswith(")"):
                raise ValueError(
                    f"--websocket-url {websocket_url!r}: the (?P<namespace>...) group must end the URL"
                )
            namespace_regex = rest[:-1]
            try:
                re.compile(namespace_regex)
            except re.error as exc:
                raise ValueError(f"--websocket-url {websocket_url!r}: bad namespace expression: {exc}") from None
        prefix = prefix.rstrip("/")
        if prefix and not _LITERAL.fullmatch(prefix):
            raise ValueError(
                f"--websocket-url {websocket_url!r}: the prefix must be a plain path such as /socket, "
                "optionally followed by (?P<namespace>...)"
            )
        if prefix and not prefix.startswith("/"):
            prefix = "/" + prefix
        self.prefix = prefix
        self.namespace_regex = re.compile(namespace_regex) if namespace_regex is not None else None

    @property
    def tornado_pattern(self) -> str:
        """The Tornado URL pattern: the prefix, then the route in one group."""
        return re.escape(self.prefix) + r"(?:/(.*))?$"

    def resolve(self, route: str) -> ResolverMatch | None:
        """The match for ``route`` (the path below the prefix), or None for a 404."""
        try:
            match = resolve_ws(route)
        except Resolver404:
            return None
        namespace = legacy_namespace(match)
        if namespace is not None and self.namespace_regex is not None:
            if not self.namespace_regex.fullmatch(match.kwargs.get("namespace", "")):
                return None
        return match
