"""``ws_path()``: one route of a ws_urls.py, as a real django.urls pattern."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from django.urls import ResolverMatch, URLPattern, URLResolver
from django.urls.resolvers import RegexPattern
from django.utils.functional import cached_property
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from django_ws.handlers import WebSocketHandler


class WebSocketRoute(URLPattern):
    """A URLPattern whose callback is a WebSocketHandler class.

    The handler may be given as a dotted path; it is imported the first time
    the route is resolved, like Django's old string views, so ws_urls.py can
    name handlers without importing them (and their models) at start-up.
    """

    def __init__(self, pattern: RegexPattern, handler: type[WebSocketHandler] | str,
                 default_args: dict[str, Any] | None = None, name: str | None = None):
        self._handler = handler
        super().__init__(pattern, handler, default_args, name)

    @property
    def handler(self):
        """The handler class, imported on first use if it was given as a dotted path."""
        if isinstance(self._handler, str):
            try:
                handler = import_string(self._handler)
            except ImportError as exc:
                raise ImportError(
                    f"ws_path({self.pattern.describe()}) names handler {self._handler!r}, "
                    f"which cannot be imported: {exc}"
                ) from exc
            _check_handler_class(handler, self._handler)
            self._handler = handler
        return self._handler

    # Django's resolver reads ``callback`` when it builds its reverse table;
    # giving it the dotted path there keeps reverse_ws() from importing every
    # handler (and failing for all routes when one path is broken).
    @property
    def callback(self) -> type[WebSocketHandler] | str:
        """What Django's resolver calls the view: the handler class, or its dotted path until first use."""
        return self._handler

    @callback.setter
    def callback(self, value: type[WebSocketHandler] | str) -> None:
        self._handler = value

    def resolve(self, path: str) -> ResolverMatch | None:
        """The match for ``path`` with the handler class as its ``func``, or None."""
        match = self.pattern.match(path)
        if match:
            new_path, args, captured_kwargs = match
            kwargs = {**captured_kwargs, **self.default_args}
            return ResolverMatch(
                self.handler,
                args,
                kwargs,
                self.pattern.name,
                route=str(self.pattern),
                captured_kwargs=captured_kwargs,
                extra_kwargs=self.default_args,
            )

    @cached_property
    def lookup_str(self):
        if isinstance(self._handler, str):
            return self._handler
        return f"{self._handler.__module__}.{self._handler.__qualname__}"

    def __repr__(self):
        return f"<WebSocketRoute {self.pattern.describe()} -> {self.lookup_str}>"


def _check_handler_class(handler, where):
    from django_ws.handlers import WebSocketHandler

    if isinstance(handler, WebSocketHandler):
        raise TypeError(
            f"{where}: pass the handler class, not an instance "
            f"(write {type(handler).__name__}, not {type(handler).__name__}())"
        )
    if not (isinstance(handler, type) and issubclass(handler, WebSocketHandler)):
        raise TypeError(
            f"{where}: {handler!r} is not a WebSocketHandler subclass; "
            "a route's handler must be a class deriving from django_ws.WebSocketHandler "
            "or the dotted path of one"
        )


def ws_path(route: str, handler: type[WebSocketHandler] | str | Sequence[Any], kwargs: dict[str, Any] | None = None,
            name: str | None = None) -> WebSocketRoute | URLResolver:
    """Map the regular expression ``route`` to a handler, or to an include().

    ``route`` is matched against the path below the websocket mount prefix,
    without its leading slash (``chat/lobby`` for ``/socket/chat/lobby``),
    exactly as ``re_path`` matches below the site root. ``kwargs`` are extra
    arguments the handler reads from ``self.kwargs``; ``name`` is what
    ``reverse_ws`` takes.
    """
    if isinstance(route, str) and route.startswith("/"):
        raise ValueError(
            f"ws_path({route!r}): routes are matched without the leading slash, "
            f"write {route.lstrip('/')!r}"
        )
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError(f"ws_path({route!r}): kwargs must be a dict, not {type(kwargs).__name__}")
    if isinstance(handler, (list, tuple)):
        # The result of include(): (urlconf_module, app_name, namespace).
        urlconf_module, app_name, namespace = handler
        return URLResolver(
            RegexPattern(route, is_endpoint=False),
            urlconf_module,
            kwargs,
            app_name=app_name,
            namespace=namespace,
        )
    if not isinstance(handler, str):
        _check_handler_class(handler, f"ws_path({route!r})")
    return WebSocketRoute(RegexPattern(route, name=name, is_endpoint=True), handler, kwargs, name)
