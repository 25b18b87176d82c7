"""What the admin's live view shows: every edge's report, gathered at once and put together.

Both the page (its first paint, and each reload when the socket is refused)
and the live socket (:mod:`.handlers`) call :func:`gather`, so the two never
disagree on what a figure means.
"""

from __future__ import annotations

import collections
import time
import typing

from django_ws.conf import ws_settings
from django_ws.exceptions import SendError
from django_ws.sending import inspect_edges

#: Groups shown, and members per page of a searched group (per edge).
GROUPS_SHOWN = 20
PAGE_SIZE = 50


def parse_query(raw: typing.Mapping[str, typing.Any]) -> dict[str, typing.Any]:
    """The part of a page's query the edges read: a group to search, its page; anything else dropped."""
    group = raw.get("group")
    query: dict[str, typing.Any] = {"groups": GROUPS_SHOWN}
    if isinstance(group, str) and group.strip():
        query["group"] = group.strip()[:200]
        try:
            offset = int(raw.get("offset") or 0)
        except (TypeError, ValueError):
            offset = 0
        query["offset"], query["limit"] = max(offset, 0), PAGE_SIZE
    return query


def gather(query: typing.Mapping[str, typing.Any] | None = None, timeout: float | None = None) -> dict[str, typing.Any]:
    """Ask every edge (WS_EDGES, or the broker's live edges) and sum up what they said.

    Never raises for an edge that does not answer (it is listed with why) nor for an
    unreachable broker (``error`` says so): the page must show what it can.
    """
    asked = parse_query(query or {})
    started = time.monotonic()
    timeout = float(ws_settings.WS_ADMIN_TIMEOUT if timeout is None else timeout)
    try:
        edges = inspect_edges(asked, timeout=timeout)
        error = None
    except SendError as exc:
        edges, error = [], str(exc)
    reports = [edge["report"] for edge in edges if "report" in edge]
    by_route: collections.Counter[str] = collections.Counter()
    closed: collections.Counter[str] = collections.Counter()
    strikes: collections.Counter[str] = collections.Counter()
    groups: dict[str, dict[str, typing.Any]] = {}
    for report in reports:
        by_route.update(report.get("connections_by_route", {}))
        closed.update(report.get("closed_by_code", {}))
        strikes.update(report.get("rate_limits", {}).get("hits", {}))
        for group in report.get("largest_groups", []):
            # In cluster mode a group spans edges: its size is the sum, its window each edge's own.
            found = groups.setdefault(group["name"], {"name": group["name"], "size": 0, "edges": 0,
                                                      "history": group.get("history")})
            found["size"] += group["size"]
            found["edges"] += 1
    largest = sorted(groups.values(), key=lambda g: (-g["size"], g["name"]))[:GROUPS_SHOWN]
    view = {
        "time": time.time(),
        "error": error,
        "edges": [_edge(edge) for edge in edges],
        "totals": {
            "edges": len(edges),
            "answering": len(reports),
            "connections": sum(r.get("connections", 0) for r in reports),
            "workers": sum(len(r.get("workers", [])) for r in reports),
            "groups": sum(r.get("groups", 0) for r in reports),
        },
        "connections_by_route": dict(by_route.most_common()),
        "largest_groups": largest,
        "closed_by_code": dict(sorted(closed.items(), key=lambda item: int(item[0]))),
        "rate_limit_strikes": dict(strikes),
        "series": series(reports),
        "group": _group(asked, edges),
        "query": asked,
    }
    view["took_ms"] = round((time.monotonic() - started) * 1000, 1)
    return view


def _edge(edge: dict[str, typing.Any]) -> dict[str, typing.Any]:
    """One edge's line: what it said about itself, or why it said nothing."""
    report = edge.get("report")
    if report is None:
        return {"endpoint": edge["endpoint"], "error": edge["error"]}
    return {
        "endpoint": edge["endpoint"],
        "edge_id": report.get("edge_id"),
        "address": report.get("address"),
        "uptime_s": report.get("uptime_s"),
        "connections": report.get("connections"),
        "workers": [{"id": w["id"], "mode": w.get("mode", ""), "load": w["load"],
                     "connections_here": w["connections_here"]} for w in report.get("workers", [])],
        "broker": report.get("broker"),
        # Absent until the edge measures it (an edge of an older release): the page says "not measured".
        "delivery_latency": report.get("delivery_latency"),
    }


def _group(query: dict[str, typing.Any], edges: list[dict[str, typing.Any]]) -> dict[str, typing.Any] | None:
    """The searched group: its size on all edges, and this page of members, with the edge that holds each."""
    if "group" not in query:
        return None
    size, members, history = 0, [], None
    for edge in edges:
        found = edge.get("report", {}).get("group")
        if not found:
            continue
        size += found["size"]
        history = history or found.get("history")
        members += [{**member, "edge_id": edge["report"]["edge_id"]} for member in found["members"]]
    return {"name": query["group"], "size": size, "offset": query["offset"], "limit": query["limit"],
            "members": members, "history": history}


def series(reports: list[dict[str, typing.Any]], step: float = 5.0) -> list[list[float]]:
    """[[unix time, connections, messages per second], ...] on all edges, one point per ``step`` seconds.

    Each edge samples on its own clock; samples are put in ``step``-second
    slots and summed. Messages per second: frames in and out, from each
    edge's consecutive samples.
    """
    slots: dict[int, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for report in reports:
        previous = None
        for when, connections, frames_in, frames_out in report.get("samples", []):
            slot = slots[int(when // step)]
            slot[0] += connections
            if previous is not None and when > previous[0]:
                slot[1] += max(frames_in + frames_out - previous[1], 0) / (when - previous[0])
            previous = (when, frames_in + frames_out)
    return [[key * step, round(values[0]), round(values[1], 1)] for key, values in sorted(slots.items())]
