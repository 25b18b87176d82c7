"""The workers one edge knows: which are alive, how loaded, and which takes the next connection.

Placement and liveness need only the worker records: a Hello makes or
updates one, any message is a sign of life, a heartbeat pings each and
retries its backlog, and the least-loaded worker with room takes the next
handshake. What a lost worker means for its connections (a handshake tried
on the next worker, an open connection closed with 1012) is the business of
:class:`~.edge_core.EdgeCore`, which owns the connections; it asks here
first whether the worker is still the one it knew.
"""

from __future__ import annotations

import logging
import typing

from django_ws import wire

from .actions import Action, ToWorker, WorkerChanged
from .records import WorkerState

if typing.TYPE_CHECKING:  # pragma: no cover
    from .records import Connection

logger = logging.getLogger("django_ws.edge")


class Workers:
    """The live workers of one edge, by their ZeroMQ identity (the core's ``workers``)."""

    __slots__ = ("clock", "edge_id", "workers")

    def __init__(self, edge_id: str, clock: typing.Callable[[], float]):
        self.workers: dict[bytes, WorkerState] = {}
        self.edge_id = edge_id
        self.clock = clock

    def current(self, worker: WorkerState) -> bool:
        """Whether ``worker`` is still the live one of its identity (not lost, nor replaced by a restart)."""
        return self.workers.get(worker.identity) is worker

    def heard_from(self, identity: bytes) -> None:
        """Any message is a sign of life: under a burst a worker's own Hello may come late."""
        worker = self.workers.get(identity)
        if worker is not None:
            worker.last_seen = self.clock()

    def hello(self, identity: bytes, message: wire.Hello) -> list[Action]:
        """A worker's heartbeat: its load and capacity now; a worker not known yet joins."""
        now = self.clock()
        worker = self.workers.get(identity)
        if worker is not None:
            worker.update(message, now)
            return []
        worker = self.workers[identity] = WorkerState(identity, message, now)
        logger.info("worker %s joined (capacity %s)", worker.worker_id, worker.capacity or "unlimited")
        return [ToWorker(worker, wire.Ping(self.edge_id)), WorkerChanged("joined", worker)]

    def beat(self, worker: WorkerState) -> list[Action]:
        """A heartbeat for a worker heard from in time: a Ping, and one Disconnect of its backlog."""
        actions: list[Action] = [ToWorker(worker, wire.Ping(self.edge_id))]
        # One at a time: send_failed() puts it back in front if the queue is still full.
        if worker.backlog:
            actions.append(ToWorker(worker, worker.backlog.popleft()))
        return actions

    def place(self, conn: Connection) -> WorkerState | None:
        """Give ``conn`` to the least-loaded live worker with room, or None if none has any."""
        best = self.pick()
        if best is not None:
            conn.attempts += 1
            conn.worker = best
            best.connections.add(conn.id)
        return best

    def pick(self) -> WorkerState | None:
        """The least-loaded live worker with room, or None."""
        best = None
        for worker in self.workers.values():
            if worker.has_room() and (best is None or worker.placement_load < best.placement_load):
                best = worker
        return best

    def remove(self, worker: WorkerState, why: str) -> bool:
        """Forget ``worker`` (lost: silent, stopping, disconnected); False if it was forgotten already."""
        if not self.current(worker):
            return False
        del self.workers[worker.identity]
        logger.warning("worker %s lost (%s); closing its %d connections with 1012", worker.worker_id, why,
                       len(worker.connections))
        return True
