"""Edges announce themselves; workers follow them as they come and go.

An edge's announcement (:func:`announcement`) names the endpoints a worker
on another host connects to, so they must be reachable from there: an edge
bound to ``tcp://0.0.0.0:5555`` announces the host it was given
(``run_wsserver --announce-host``), never the wildcard.

A worker started without ``--edge`` runs an :class:`EdgeFollower`: a thread
that reads the registry (pruning lapsed leases as it goes), then waits for
an ``up``/``down`` event or a third of the lease, and reads it again. The
worker's loop takes what it found (:meth:`EdgeFollower.changes`) and adds or
drops its links. While Redis is unreachable the worker keeps the edges it
has: only a registry that was read, and lacks an edge, drops it.

So an edge that dies without a word (kill -9, its host gone) is forgotten
by every worker within ``WS_BROKER_LEASE * 4/3`` seconds of its last
renewal: the lease, plus the follower's longest wait between two reads.
A lapsed lease alone does not make a worker drop an edge it still hears
from: an edge whose loop was too busy to renew in time (a fan-out to tens of
thousands of clients on a starved CPU) is alive, and ending its connections
would be the outage. The worker drops it once its link is silent for
WS_HEARTBEAT_TIMEOUT too, or at once when the edge withdrew (a clean stop).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import typing

from django.core.exceptions import ImproperlyConfigured

from .config import BrokerConfig, close_client
from .keys import LIVE_EDGES, Keys

logger = logging.getLogger("django_ws.worker")

_WILDCARDS = {"0.0.0.0", "*", "::", "[::]"}


def announced_endpoint(endpoint: str, host: str | None) -> str:
    """``endpoint`` as others reach it: a tcp:// endpoint's host replaced by ``host`` when given.

    ImproperlyConfigured for a wildcard address without ``host``: nobody
    could connect to what it would announce.
    """
    if not endpoint.startswith("tcp://"):
        return endpoint
    address = endpoint[len("tcp://"):]
    bound, _, port = address.rpartition(":")
    if host:
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"tcp://{host}:{port}"
    if bound in _WILDCARDS:
        raise ImproperlyConfigured(
            f"{endpoint} is bound to every address: pass --announce-host with the address workers on "
            "other hosts reach this edge at (its IP or DNS name), so that the broker announces that")
    return endpoint


def announcement(edge_id: str, push: str, sub: str, host: str | None, server_public: str | None) -> dict:
    """What an edge announces: its id, its endpoints as others reach them, its host, its CURVE public key."""
    host = check_announce_host(host)
    return {
        "id": edge_id,
        "push": announced_endpoint(push, host),
        "sub": announced_endpoint(sub, host),
        "host": host or socket.gethostname(),
        #: For ipc:// endpoints, which only processes on this machine can reach.
        "hostname": socket.gethostname(),
        "curve": server_public,
    }


def reachable(announced: dict) -> bool:
    """Whether a worker here can reach the announced edge: an ipc:// edge only from its own host."""
    if announced["push"].startswith("ipc://") or announced["sub"].startswith("ipc://"):
        return announced.get("hostname", announced.get("host")) == socket.gethostname()
    return True


def read_registry(client, keys: Keys) -> dict[str, dict]:
    """The announcements of the live edges, by id (lapsed ones are pruned on the way)."""
    found = {}
    live = client.register_script(LIVE_EDGES)(keys=[keys.edges], args=[keys.lease_prefix, keys.edge_groups_prefix])
    for raw in live:
        try:
            announced = json.loads(raw)
            edge_id, push, sub = announced["id"], announced["push"], announced["sub"]
        except (ValueError, KeyError, TypeError):
            logger.warning("ignored a malformed edge announcement in the broker: %r", raw[:200])
            continue
        if all(isinstance(v, str) and v for v in (edge_id, push, sub)):
            found[edge_id] = announced
    return found


class EdgeFollower:
    """A thread that keeps the set of announced edges a worker should serve."""

    def __init__(self, config: BrokerConfig, keys: Keys, lease: float):
        self.config, self.keys, self.lease = config, keys, lease
        self._lock = threading.Lock()
        self._found: dict[str, dict] | None = None
        #: Edges that said they were going (``down``), since the last call of withdrawn().
        self._withdrawn: set[str] = set()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="django-ws-edge-follower", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def changes(self) -> dict[str, dict] | None:
        """The edges found by the newest read of the registry since the last call; None if none since."""
        with self._lock:
            found, self._found = self._found, None
        return found

    def withdrawn(self) -> set[str]:
        """The edges that withdrew their announcement themselves (a clean stop) since the last call."""
        with self._lock:
            gone, self._withdrawn = self._withdrawn, set()
        return gone

    def _run(self) -> None:
        wait = self.lease / 3
        said = False
        while not self._stopping.is_set():
            client = self.config.sync_client(timeout=wait)
            pubsub = None
            try:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.keys.events)
                if said:
                    logger.info("worker reaches the broker %s again", self.config.name)
                    said = False
                while not self._stopping.is_set():
                    found = {edge_id: a for edge_id, a in read_registry(client, self.keys).items() if reachable(a)}
                    with self._lock:
                        self._found = found
                    # An up/down event, or a third of the lease: then read again.
                    event = pubsub.get_message(timeout=wait)
                    data = event.get("data") if event else None
                    if isinstance(data, bytes) and data.startswith(b"down "):
                        with self._lock:
                            self._withdrawn.add(data[5:].decode("utf-8", "replace"))
            except Exception as exc:  # noqa: BLE001  (the worker keeps its edges; retry)
                if not said:
                    logger.warning("worker cannot reach the broker %s (%s); keeping its %s edges, retrying",
                                   self.config.name, f"{type(exc).__name__}: {exc}", "current")
                    said = True
                self._stopping.wait(min(1.0, wait))
            finally:
                try:
                    if pubsub is not None:
                        pubsub.close()
                    close_client(client)
                except Exception:  # noqa: BLE001
                    pass


def check_announce_host(host: typing.Any) -> str | None:
    if host in (None, ""):
        return None
    if not isinstance(host, str) or "/" in host or " " in host:
        raise ImproperlyConfigured(f"--announce-host must be a host name or an IP address, not {host!r}")
    return host
