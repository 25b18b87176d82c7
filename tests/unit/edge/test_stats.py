"""The edge's report to the admin's live view (stats.inspect), on a core driven event by event."""

from __future__ import annotations

import types

import pytest

from django_ws import wire
from django_ws.edge.core import EdgeCore
from django_ws.edge.stats import Samples, inspect, prometheus
from django_ws.history import History, HistoryBound

from .test_core import hello, open_connection

NAMES = {"echo": 'say "echo"', "room/a": "room", "room/b": "room"}


@pytest.fixture
def core(clock):
    def resolve(route):  # a ResolverMatch's view_name is all the core reads of it
        return types.SimpleNamespace(view_name=NAMES[route]) if route in NAMES else None

    history = History([("hist.*", HistoryBound(size=10, ttl=60.0))], clock=clock)
    core = EdgeCore(resolve=resolve, heartbeat_timeout=2.0, edge_id="e1", clock=clock, history=history)
    hello(core)
    return core


def join(core, conn, group):
    core.reply(b"w1", wire.Join(conn.id, group))


def test_connections_are_counted_by_route_name_as_they_come_and_go(core, clock):
    echo = open_connection(core, "echo")
    rooms = [open_connection(core, "room/a"), open_connection(core, "room/b")]
    clock.now += 5
    report = inspect(core, address="127.0.0.1:8888")
    assert report["connections_by_route"] == {'say "echo"': 1, "room": 2}
    metrics = prometheus(report)
    assert 'django_ws_connections_by_route{edge="e1",route="room"} 2' in metrics
    assert 'django_ws_connections_by_route{edge="e1",route="say \\"echo\\""} 1' in metrics
    assert report["uptime_s"] == 5 and report["address"] == "127.0.0.1:8888"
    assert [(w["id"], w["mode"]) for w in report["workers"]] == [("w1", "threaded")]
    core.closed(echo, (1000, ""), clean=True)
    core.closed(rooms[0], (1000, ""), clean=True)
    assert inspect(core)["connections_by_route"] == {"room": 1}


def test_the_largest_groups_come_first_with_their_history_window(core):
    conns = [open_connection(core, "echo") for _ in range(3)]
    for conn in conns:
        join(core, conn, "hist.big")
    join(core, conns[0], "small")
    core.reply(b"w1", wire.GroupSend("hist.big", "", False, b"x", ""))
    groups = inspect(core, query={"groups": 5})["largest_groups"]
    assert [(g["name"], g["size"]) for g in groups] == [("hist.big", 3), ("small", 1)]
    assert groups[0]["history"] == {"size": 10, "ttl_s": 60.0, "kept": 1, "first": 1, "last": 1}
    assert groups[1]["history"] is None
    assert len(inspect(core, query={"groups": 1})["largest_groups"]) == 1


def test_a_searched_group_comes_a_page_at_a_time(core):
    conns = [open_connection(core, "room/a") for _ in range(5)]
    for conn in conns:
        join(core, conn, "room.a")
    ids = sorted(conn.id for conn in conns)
    page = inspect(core, query={"group": "room.a", "offset": 2, "limit": 2})["group"]
    assert page["size"] == 5 and page["offset"] == 2
    assert page["members"] == [{"id": conn_id, "route": "room", "path": "room/a"} for conn_id in ids[2:4]]
    assert inspect(core, query={"group": "nobody"})["group"]["members"] == []
    assert "group" not in inspect(core), "nothing searched, no page"


def test_samples_keep_the_last_minutes_every_few_seconds(core, clock):
    samples = Samples(every=5, keep=3, clock=clock)
    open_connection(core, "echo")
    for _ in range(12):
        samples.sample(core)
        clock.now += 2
    figures = samples.figures()
    assert len(figures) == 3 and [f[1] for f in figures] == [1, 1, 1]
    assert figures[1][0] - figures[0][0] >= 5
