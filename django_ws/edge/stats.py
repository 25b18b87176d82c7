"""The edge's health and stats endpoints, for people and for Prometheus.

``GET /_django_ws/health``   200 "ok" while at least one worker is connected, else 503
``GET /_django_ws/stats``    JSON: connections, workers and their load, frames, groups
``GET /_django_ws/metrics``  the same figures in Prometheus' text format
"""

from __future__ import annotations

import json
import time
import typing

import tornado.web

if typing.TYPE_CHECKING:  # pragma: no cover
    from .bridge import Bridge


def snapshot(bridge: Bridge) -> dict:
    now = time.monotonic()
    stats = bridge.stats
    return {
        "edge_id": bridge.edge_id,
        "connections": len(bridge.connections),
        "connections_total": stats.connections_total,
        "handshakes_pending": len(bridge.pending),
        "frames_in": stats.frames_in,
        "frames_out": stats.frames_out,
        "refused": {str(k): v for k, v in sorted(stats.refused.items())},
        "closed_by_code": {str(k): v for k, v in sorted(stats.closed_by_code.items())},
        "groups": len(bridge.groups),
        "group_members": sum(len(m) for m in bridge.groups.values()),
        "workers": [
            {
                "id": w.worker_id,
                "load": w.load,
                "connections_here": len(w.connections),
                "capacity": w.capacity,
                "last_seen_s": round(now - w.last_seen, 3),
            }
            for w in bridge.workers.values()
        ],
    }


def prometheus(data: dict) -> str:
    lines = []

    def metric(name, kind, help_text, samples):
        lines.append(f"# HELP django_ws_{name} {help_text}")
        lines.append(f"# TYPE django_ws_{name} {kind}")
        for labels, value in samples:
            label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
            lines.append(f"django_ws_{name}{{{label_text}}} {value}" if label_text else f"django_ws_{name} {value}")

    edge = {"edge": data["edge_id"]}
    metric("connections", "gauge", "Open client connections.", [(edge, data["connections"])])
    metric("connections_total", "counter", "Client connections opened.", [(edge, data["connections_total"])])
    metric("frames_in_total", "counter", "Messages from clients to workers.", [(edge, data["frames_in"])])
    metric("frames_out_total", "counter", "Messages written to clients.", [(edge, data["frames_out"])])
    metric("groups", "gauge", "Groups with at least one member.", [(edge, data["groups"])])
    metric("refused_total", "counter", "Handshakes refused, by HTTP status or close code.",
           [({**edge, "status": k}, v) for k, v in data["refused"].items()])
    metric("closed_total", "counter", "Connections closed, by close code.",
           [({**edge, "code": k}, v) for k, v in data["closed_by_code"].items()])
    metric("worker_load", "gauge", "Connections each worker holds (all edges).",
           [({**edge, "worker": w["id"]}, w["load"]) for w in data["workers"]])
    metric("workers", "gauge", "Workers connected to this edge.", [(edge, len(data["workers"]))])
    return "\n".join(lines) + "\n"


class _StatsBase(tornado.web.RequestHandler):
    def initialize(self, bridge: Bridge) -> None:
        self.bridge = bridge

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")


class HealthHandler(_StatsBase):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain")
        if self.bridge.workers:
            self.finish("ok\n")
        else:
            self.set_status(503)
            self.finish("no workers\n")


class StatsHandler(_StatsBase):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(snapshot(self.bridge)))


class MetricsHandler(_StatsBase):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4")
        self.finish(prometheus(snapshot(self.bridge)))


def stats_routes(bridge: Bridge) -> list:
    return [
        (r"/_django_ws/health", HealthHandler, {"bridge": bridge}),
        (r"/_django_ws/stats", StatsHandler, {"bridge": bridge}),
        (r"/_django_ws/metrics", MetricsHandler, {"bridge": bridge}),
    ]
