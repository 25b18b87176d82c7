"""OpenTelemetry spans, for a project that turns them on with ``WS_TRACING = True``.

Off (the default), nothing here imports OpenTelemetry, and a send pays one
settings lookup. On, the project configures its tracer provider and exporter
as for any OpenTelemetry instrumentation (docs/operating.rst, "Traces"), and
django-ws makes spans through the OpenTelemetry API:

- ``send_to_group`` / ``send_to_connection`` and the HTTP publish: a PRODUCER
  span, whose context travels in the message (``wire.GroupSend.trace``, a W3C
  ``traceparent``), through ZeroMQ and through the broker's channels alike;
- each edge's delivery of such a message: a CONSUMER span, child of the
  sender's, so that a send and its fan-out on every edge are one trace;
- the handshake's ``on_connect`` (child of the client's own ``traceparent``
  header, if its handshake carried one) and each handler call, with the route
  and the handler class as attributes.

The W3C trace-context format is used whatever propagators the project set
globally: the wire field is a ``traceparent`` and nothing else.
"""

from __future__ import annotations

import contextlib
import typing

from django_ws.conf import ws_settings

if typing.TYPE_CHECKING:  # pragma: no cover
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

#: The instrumentation scope of every span django-ws makes.
SCOPE = "django_ws"


def enabled() -> bool:
    """Whether the project turned tracing on (WS_TRACING)."""
    return bool(ws_settings.WS_TRACING)


def _tracer() -> Tracer:
    try:
        from opentelemetry import trace
    except ImportError:
        raise ImportError("WS_TRACING is on but OpenTelemetry is not installed: "
                          "pip install 'django-ws-edge[otel]'") from None
    from django_ws import __version__

    return trace.get_tracer(SCOPE, __version__)


def _propagator() -> TraceContextTextMapPropagator:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()


def _parent(traceparent: str) -> Context:
    """The OpenTelemetry context of a ``traceparent`` (an empty context for '' or a malformed one)."""
    return _propagator().extract({"traceparent": traceparent} if traceparent else {})


@contextlib.contextmanager
def producer(name: str, attributes: dict[str, str], traceparent: str = "") -> typing.Iterator[str]:
    """A PRODUCER span around a send; yields the ``traceparent`` the message carries.

    ``traceparent``: a parent from outside (the HTTP publish's own header);
    without it the span is a child of the current one (the view's request).
    """
    from opentelemetry.trace import SpanKind

    context = _parent(traceparent) if traceparent else None
    with _tracer().start_as_current_span(name, context=context, kind=SpanKind.PRODUCER, attributes=attributes):
        carrier: dict[str, str] = {}
        _propagator().inject(carrier)
        yield carrier.get("traceparent", "")


class EdgeTracing:
    """The edge's spans: one CONSUMER span per delivered message that carried a trace."""

    def __init__(self, edge_id: str) -> None:
        from opentelemetry.trace import SpanKind

        self.tracer = _tracer()
        self.kind = SpanKind.CONSUMER
        self.edge_id = edge_id

    @contextlib.contextmanager
    def handshake(self, path: str, request: dict[str, typing.Any]) -> typing.Iterator[None]:
        """A SERVER span around a WebSocket handshake, child of the client's ``traceparent`` header if any.

        Its context goes to the worker in the Connect's ``request`` (``"traceparent"``), so that
        the handler's ``on_connect`` span is its child.
        """
        from opentelemetry.trace import SpanKind

        header = next((value for name, value in request.get("headers", ()) if name.lower() == "traceparent"), "")
        with self.tracer.start_as_current_span("django_ws handshake", context=_parent(header) if header else None,
                                               kind=SpanKind.SERVER,
                                               attributes={"django_ws.edge": self.edge_id, "url.path": path}):
            carrier: dict[str, str] = {}
            _propagator().inject(carrier)
            request["traceparent"] = carrier.get("traceparent", "")
            yield

    def delivered(self, traceparent: str, clients: int) -> None:
        """The message of ``traceparent`` was handed to ``clients`` sockets here."""
        span = self.tracer.start_span("django_ws deliver", context=_parent(traceparent), kind=self.kind,
                                      attributes={"django_ws.edge": self.edge_id, "django_ws.clients": clients})
        span.end()


def edge_tracing(edge_id: str) -> EdgeTracing | None:
    """The edge's spans, or None when tracing is off (nothing imported)."""
    return EdgeTracing(edge_id) if enabled() else None


class HandlerTracing:
    """A worker's spans around a handler's hooks: on_connect, on_open, on_message, on_close, ..."""

    def __init__(self) -> None:
        from opentelemetry.trace import SpanKind

        self.tracer = _tracer()
        self.kind = SpanKind.SERVER

    def span(self, hook: str, route: str, handler: object,
             traceparent: str = "") -> contextlib.AbstractContextManager[Span]:
        """A span named after ``hook``; ``traceparent``: the client's own, for on_connect."""
        cls = type(handler)
        return self.tracer.start_as_current_span(
            f"django_ws {hook}", context=_parent(traceparent) if traceparent else None, kind=self.kind,
            attributes={"django_ws.route": route, "django_ws.handler": f"{cls.__module__}.{cls.__qualname__}"})


_handler_tracing: HandlerTracing | None = None


def handler_tracing() -> HandlerTracing | None:
    """The worker's spans, or None when tracing is off (nothing imported); one for every connection."""
    global _handler_tracing
    if not enabled():
        return None
    if _handler_tracing is None:
        _handler_tracing = HandlerTracing()
    return _handler_tracing
