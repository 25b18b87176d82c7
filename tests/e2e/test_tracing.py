"""One trace from a send to its deliveries on two edges, across real processes (WS_TRACING, the SDK exporting).

Two servers (an edge and a worker each) in static mode and a ``manage.py
shell`` that sends from inside a span of its own, as a view would: every
process exports its spans to one file (tests/project/tracing.py), which the
test reads.
"""

import json
import os
import shutil
import tempfile
import time
import urllib.request

import pytest

from tests.conftest import django_script, require, start_server
from tests.e2e.test_groups import join

KEY = "k3y-for-the-tracing-tests-0123456789abcdefghij"


def _otel_sdk() -> bool:
    try:
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def traced(server_db):
    require(_otel_sdk(), "opentelemetry-sdk is not installed (the [test] extra)")
    directory = tempfile.mkdtemp(prefix="dws-otel-")
    spans = os.path.join(directory, "spans.jsonl")
    subs = [f"ipc://{directory}/a-sub", f"ipc://{directory}/b-sub"]
    env = {"DJANGO_WS_EDGES": ",".join(subs), "DJANGO_WS_TEST_SPANS": spans,
           "DJANGO_WS_API_KEYS": json.dumps([KEY])}
    started = []
    try:
        for sub in subs:
            started.append(start_server(server_db, sub_socket=sub, env=env))
        yield started, spans, env
    finally:
        for srv in started:
            assert srv.stop() == 0
        shutil.rmtree(directory, ignore_errors=True)


def spans_of(path, trace_id, *, until):
    """The spans of ``trace_id`` (None: all) in the file, once ``until(spans)`` holds (processes export as they go)."""
    deadline = time.monotonic() + 20
    while True:
        with open(path) as file:
            found = [span for span in map(json.loads, file) if trace_id in (None, span["trace_id"])]
        if until(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)  # polling a file the other processes append to


def edge_id(server):
    with urllib.request.urlopen(f"{server.http_url}/_django_ws/stats", timeout=10) as response:
        return json.loads(response.read())["edge_id"]


def deliveries(found):
    return [span for span in found if span["name"] == "django_ws deliver"]


def test_a_views_send_to_group_and_its_deliveries_on_two_edges_are_one_trace(traced, server_db):
    edges, path, env = traced
    members = [join(srv, "traced") for srv in edges]
    script = """
from opentelemetry import trace
from django_ws import send_to_group
with trace.get_tracer("view").start_as_current_span("GET /announce") as span:
    result = send_to_group("room.traced", "traced hello")
print(f"{span.get_span_context().trace_id:032x} {result.delivered}")
"""
    old = dict(os.environ)
    os.environ.update(env)
    try:
        trace_id, delivered = django_script(server_db, script).split()
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert delivered == "2"
    for ws, _ in members:
        assert ws.recv(timeout=10) == "traced hello"
    found = spans_of(path, trace_id, until=lambda found: len(deliveries(found)) >= 2)
    (view,) = [span for span in found if span["name"] == "GET /announce"]
    (send,) = [span for span in found if span["name"] == "django_ws send_to_group"]
    assert send["parent_id"] == view["span_id"] and send["kind"] == "PRODUCER"
    assert send["attributes"] == {"django_ws.group": "room.traced"}
    delivered_on = deliveries(found)
    assert len(delivered_on) == 2, found
    assert {span["parent_id"] for span in delivered_on} == {send["span_id"]}
    assert {span["attributes"]["django_ws.edge"] for span in delivered_on} == {edge_id(srv) for srv in edges}
    assert all(span["kind"] == "CONSUMER" and span["attributes"]["django_ws.clients"] == 1 for span in delivered_on)
    assert len({span["pid"] for span in (send, *delivered_on)}) == 3, "three processes"
    for ws, _ in members:
        ws.close()


def test_handler_calls_are_spans_and_an_http_publish_continues_its_callers_trace(traced):
    edges, path, _ = traced
    ws, _ = join(edges[0], "published")
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    request = urllib.request.Request(
        f"{edges[1].http_url}/_django_ws/publish", method="POST",
        data=json.dumps({"group": "room.published", "data": "over http"}).encode(),
        headers={"Authorization": f"Bearer {KEY}", "traceparent": f"00-{caller_trace}-{caller_span}-01"})
    with urllib.request.urlopen(request, timeout=20) as response:
        assert json.loads(response.read()) == {"delivered": 1}
    assert ws.recv(timeout=10) == "over http"
    found = spans_of(path, caller_trace, until=lambda found: len(deliveries(found)) >= 1)
    (publish,) = [span for span in found if span["name"] == "django_ws publish"]
    assert publish["parent_id"] == caller_span
    assert [span["parent_id"] for span in deliveries(found)] == [publish["span_id"]]
    room = {"django_ws.route": "room", "django_ws.handler": "tests.project.handlers.RoomHandler"}
    named = ("django_ws on_connect", "django_ws on_open", "django_ws handshake")
    everything = spans_of(path, None, until=lambda found: {s["name"] for s in found if s["attributes"] == room
                                                           or s["name"] == "django_ws handshake"} >= set(named))
    hooks = [span for span in everything if span["attributes"] == room]
    assert {span["name"] for span in hooks} >= {"django_ws on_connect", "django_ws on_open"}, everything
    handshakes = {span["span_id"]: span for span in everything if span["name"] == "django_ws handshake"}
    connects = [span for span in hooks if span["name"] == "django_ws on_connect"]
    assert connects and all(handshakes[span["parent_id"]]["trace_id"] == span["trace_id"] for span in connects), \
        "each on_connect (in a worker) is a child of its handshake (on the edge)"
    ws.close()
