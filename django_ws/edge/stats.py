"""The edge's health and stats endpoints, for people and for Prometheus.

``GET /_django_ws/health``   200 "ok" while at least one worker is connected, else 503
``GET /_django_ws/stats``    JSON: connections, workers and their load, frames, groups
``GET /_django_ws/metrics``  the same figures in Prometheus' text format

and :func:`inspect`, the same snapshot with what the admin's live view asks
for besides (the largest groups, a group's members, the recent samples),
answered on the sub endpoint (wire.Inspect) so that it reaches every edge a
sender reaches.
"""

from __future__ import annotations

import collections
import heapq
import json
import time
import typing

import tornado.web

if typing.TYPE_CHECKING:  # pragma: no cover
    from .core import EdgeCore


def snapshot(core: EdgeCore, broker=None) -> dict:
    now = time.monotonic()
    stats = core.stats
    data = {
        "edge_id": core.edge_id,
        "uptime_s": round(core.clock() - core.started, 1),
        "connections": core.open_count,
        #: Connections not yet ended, by the name of their route in WS_URLCONF ("": unnamed).
        "connections_by_route": dict(core.by_route),
        "connections_total": stats.connections_total,
        "handshakes_pending": core.handshakes_pending,
        "frames_in": stats.frames_in,
        "frames_out": stats.frames_out,
        "refused": {str(k): v for k, v in sorted(stats.refused.items())},
        "closed_by_code": {str(k): v for k, v in sorted(stats.closed_by_code.items())},
        "rate_limits": _rate_limits(core),
        "groups": len(core.groups),
        "group_members": sum(len(m) for m in core.groups.values()),
        #: What WS_GROUP_HISTORY keeps: group logs, messages and their payload bytes.
        "history": core.history.figures(),
        #: From the sender's call to the frame handed to the client's socket (core/latency.py).
        "delivery_latency": stats.delivery_latency.figures(),
        #: The size of each table of the core (EdgeCore.record_counts): flat over a long run.
        "records": core.record_counts(),
        "workers": [
            {
                "id": w.worker_id,
                "mode": w.mode,
                "load": w.load,
                "connections_here": len(w.connections),
                "capacity": w.capacity,
                "last_seen_s": round(now - w.last_seen, 3),
            }
            for w in core.workers.values()
        ],
    }
    if broker is not None:
        #: Cluster mode: whether the edge holds a session with Redis, how many it opened, what it receives.
        data["broker"] = {"name": broker.config.name, "connected": broker.connected, "sessions": broker.sessions,
                          "lease_lapses": broker.lapses,
                          "channels": len(broker.channels) + 1}
    return data


#: At most this many groups (the largest) and members (one page) in a report.
MAX_GROUPS = 100
MAX_PAGE = 500


def inspect(core: EdgeCore, broker=None, samples: Samples | None = None, address: str = "",
            query: dict | None = None) -> dict:
    """:func:`snapshot` and what ``query`` asks for: the admin's live view gets this from each edge.

    ``query``: ``{"groups": n}`` the ``n`` largest groups here (size, history
    window); ``{"group": name, "offset": o, "limit": n}`` a page of that
    group's members here (sorted ids, with their routes). Groups cost
    O(groups) per request, a page O(members of that group); nothing walks the
    connection table.
    """
    query = query or {}
    data = snapshot(core, broker)
    data["address"] = address
    data["samples"] = samples.figures() if samples is not None else []
    top = min(_int(query.get("groups"), 20), MAX_GROUPS)
    data["largest_groups"] = [_group_figures(core, group, len(members))
                              for group, members in heapq.nlargest(top, core.groups.items(), key=_size)]
    group = query.get("group")
    if isinstance(group, str) and group:
        offset, limit = _int(query.get("offset"), 0), min(_int(query.get("limit"), 50), MAX_PAGE)
        ids = sorted(core.groups.get(group, ()))
        page = []
        for conn_id in ids[offset:offset + limit]:
            conn = core.connections.get(conn_id)
            page.append({"id": conn_id, "route": conn.route_name if conn else "",
                         "path": conn.route if conn else ""})
        data["group"] = {**_group_figures(core, group, len(ids)), "offset": offset, "members": page}
    return data


def _size(item: tuple[str, set]) -> int:
    return len(item[1])


def _int(value, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


def _group_figures(core: EdgeCore, group: str, size: int) -> dict:
    """A group's size here and its history window (None: it keeps none)."""
    bound = core.history.bound_for(group)
    window = None
    if bound is not None:
        log = core.history.logs.get(group)
        entries = log.entries if log is not None else ()
        window = {"size": bound.size, "ttl_s": bound.ttl, "kept": len(entries),
                  "first": entries[0].offset if entries else None, "last": log.last if log is not None else 0}
    return {"name": group, "size": size, "history": window}


class Samples:
    """Connections and message counters every ``every`` seconds, the last ``keep``: the admin's plots.

    Kept by the edge, not the page, so that a page just opened plots the last
    minutes at once. One tuple per sample: a few kB in all.
    """

    def __init__(self, every: float = 5.0, keep: int = 120, clock: typing.Callable[[], float] = time.time):
        self.every, self.clock = every, clock
        self._last = 0.0
        self._samples: collections.deque[tuple[float, int, int, int]] = collections.deque(maxlen=keep)

    def sample(self, core: EdgeCore) -> None:
        """Take a sample if ``every`` seconds passed since the last one (called on each heartbeat)."""
        now = self.clock()
        if now - self._last >= self.every:
            self._last = now
            self._samples.append((round(now, 3), core.open_count, core.stats.frames_in, core.stats.frames_out))

    def figures(self) -> list[list]:
        """[[unix time, connections, frames in, frames out], ...], oldest first."""
        return [list(sample) for sample in self._samples]


#: The limits of limits.py, by the name the stats and the metrics give them.
RATE_LIMITS = ("new_connections", "concurrent", "messages", "bytes")


def _rate_limits(core: EdgeCore) -> dict:
    """What each rate limit is set to (0: off), how often it struck, and the addresses tracked."""
    stats, limits = core.stats, core.address_limits
    settings = limits.settings
    configured = {
        "new_connections": settings.new_per_window,
        "concurrent": settings.concurrent,
        "messages": settings.messages_per_window,
        "bytes": settings.bytes_per_window,
    }
    return {
        "limits": configured,
        "windows_s": {"new_connections": settings.window, "messages": settings.message_window},
        "hits": {name: stats.rate_limited[name] for name in RATE_LIMITS},
        "addresses_tracked": len(limits.addresses),
        #: Of the 429s, those whose request carried X-Forwarded-For or X-Real-IP while
        #: WS_TRUST_PROXY_HEADERS is off: a proxy's clients counted as one (docs/security.rst).
        "proxy_limited": stats.proxy_limited,
    }


def prometheus(data: dict) -> str:
    lines = []

    def metric(name, kind, help_text, samples):
        lines.append(f"# HELP django_ws_{name} {help_text}")
        lines.append(f"# TYPE django_ws_{name} {kind}")
        for labels, value in samples:
            label_text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            lines.append(f"django_ws_{name}{{{label_text}}} {value}" if label_text else f"django_ws_{name} {value}")

    edge = {"edge": data["edge_id"]}
    metric("connections", "gauge", "Open client connections.", [(edge, data["connections"])])
    metric("connections_total", "counter", "Client connections opened.", [(edge, data["connections_total"])])
    metric("connections_by_route", "gauge", "Connections not yet ended, by the name of their route.",
           [({**edge, "route": k}, v) for k, v in data["connections_by_route"].items()])
    metric("frames_in_total", "counter", "Messages from clients to workers.", [(edge, data["frames_in"])])
    metric("frames_out_total", "counter", "Messages written to clients.", [(edge, data["frames_out"])])
    metric("groups", "gauge", "Groups with at least one member.", [(edge, data["groups"])])
    metric("refused_total", "counter", "Handshakes refused, by HTTP status or close code.",
           [({**edge, "status": k}, v) for k, v in data["refused"].items()])
    metric("closed_total", "counter", "Connections closed, by close code.",
           [({**edge, "code": k}, v) for k, v in data["closed_by_code"].items()])
    rate = data["rate_limits"]
    metric("rate_limit", "gauge", "Each rate limit as configured, per its window (0: off; concurrent: at once).",
           [({**edge, "limit": k}, v) for k, v in rate["limits"].items()])
    metric("rate_limited_total", "counter",
           "Handshakes refused with 429 (new_connections, concurrent) and connections closed with 1008 "
           "(messages, bytes) by a rate limit.",
           [({**edge, "limit": k}, v) for k, v in rate["hits"].items()])
    metric("rate_limit_addresses", "gauge", "Client addresses the per-address limits are tracking.",
           [(edge, rate["addresses_tracked"])])
    metric("proxy_limited_total", "counter",
           "Handshakes refused with 429 by a per-address limit that carried X-Forwarded-For or X-Real-IP while "
           "WS_TRUST_PROXY_HEADERS is off.", [(edge, rate["proxy_limited"])])
    metric("worker_load", "gauge", "Connections each worker holds (all edges).",
           [({**edge, "worker": w["id"]}, w["load"]) for w in data["workers"]])
    metric("workers", "gauge", "Workers connected to this edge.", [(edge, len(data["workers"]))])
    latency = data["delivery_latency"]
    lines.append("# HELP django_ws_delivery_latency_seconds From a sender's send_to_group, send_to_connection or "
                 "HTTP publish to the frame handed to the client's socket, by wall clocks (across hosts: plus "
                 "their offset).")
    lines.append("# TYPE django_ws_delivery_latency_seconds histogram")
    label = f'edge="{data["edge_id"]}"'
    for le, total in latency["buckets"]:
        bound = "+Inf" if le is None else repr(le)
        lines.append(f'django_ws_delivery_latency_seconds_bucket{{{label},le="{bound}"}} {total}')
    lines.append(f"django_ws_delivery_latency_seconds_sum{{{label}}} {latency['sum_s']!r}")
    lines.append(f"django_ws_delivery_latency_seconds_count{{{label}}} {latency['count']}")
    broker = data.get("broker")
    if broker is not None:
        metric("broker_connected", "gauge", "1 while the edge holds a session with the broker (WS_BROKER).",
               [(edge, int(broker["connected"]))])
        metric("broker_sessions_total", "counter", "Sessions with the broker opened: each one after the first "
               "follows an outage.", [(edge, broker["sessions"])])
        metric("broker_lease_lapses_total", "counter", "Renewals of the edge's announcement that came after its "
               "lease had lapsed (the edge's loop too busy for WS_BROKER_LEASE).", [(edge, broker["lease_lapses"])])
    return "\n".join(lines) + "\n"


def _label(value: object) -> str:
    """A label value as Prometheus' text format escapes it (a route's name may hold anything)."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _StatsBase(tornado.web.RequestHandler):
    def initialize(self, core: EdgeCore, broker=None) -> None:
        self.core, self.broker = core, broker

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")


class HealthHandler(_StatsBase):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain")
        if self.core.workers:
            self.finish("ok\n")
        else:
            self.set_status(503)
            self.finish("no workers\n")


class StatsHandler(_StatsBase):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(snapshot(self.core, self.broker)))


class MetricsHandler(_StatsBase):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4")
        self.finish(prometheus(snapshot(self.core, self.broker)))


def stats_routes(core: EdgeCore, broker=None) -> list:
    """The health, stats and metrics endpoints; ``broker``: the edge's BrokerLink in cluster mode."""
    args = {"core": core, "broker": broker}
    return [
        (r"/_django_ws/health", HealthHandler, args),
        (r"/_django_ws/stats", StatsHandler, args),
        (r"/_django_ws/metrics", MetricsHandler, args),
    ]
