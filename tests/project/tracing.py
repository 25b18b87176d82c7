"""OpenTelemetry for the test project, as a project configures it: a tracer provider set up in settings.

tests/e2e/test_tracing.py sets DJANGO_WS_TEST_SPANS to a file: every process
that loads these settings (edges, workers, manage.py shell) appends each span
it ends there, one JSON object a line, with the SDK's own exporter.
"""

import atexit
import json
import os


def _line(span) -> str:
    context, parent = span.get_span_context(), span.parent
    return json.dumps({
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": f"{parent.span_id:016x}" if parent is not None else None,
        "attributes": dict(span.attributes or {}),
        "pid": os.getpid(),
    }) + "\n"


def export_spans_to(path: str) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "django-ws-tests"}))
    # Line-buffered, appended: several processes share the file, a line each write.
    out = open(path, "a", buffering=1)  # noqa: SIM115  (open for the process's life)
    atexit.register(out.close)
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=out, formatter=_line)))
    trace.set_tracer_provider(provider)
