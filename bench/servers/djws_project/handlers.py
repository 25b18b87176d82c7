"""The two handlers the benchmark drives.

``EchoHandler`` sends every frame back. ``BroadcastHandler`` puts every
connection of ``room/<name>`` in the group ``room.<name>`` and sends every
frame it receives to that group, so each frame sent on a URL reaches every
connection on that URL, the sender included.

Joining at connect time needs a detour. The benchmark's receivers never send
a frame, so ``on_open`` (which runs on a connection's first message) never
runs for them; and a ``join()`` from ``on_connect`` reaches the edge before
the edge has registered the connection (``on_connect`` runs before the
upgrade completes), so the edge drops it. ``on_connect`` therefore still
joins (for an edge that keeps such joins) and also hands the connection to
``_Joiner``, one background thread (a greenlet under ``--gevent``, which
patches ``threading``) that joins again shortly after the upgrade. A join is
idempotent, so repeating it is harmless; docs/benchmarks.rst explains why.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time

from django_ws import ConnectionClosed, WebSocketHandler, send_to_group

#: Seconds after on_connect at which the joiner joins again: the edge
#: registers a connection one event-loop turn after the worker accepts it,
#: later when it is busy with a burst of handshakes.
JOIN_DELAYS = (0.05, 0.3, 1.0)


class EchoHandler(WebSocketHandler):
    """Every frame back, unchanged (on_open returns None: the first one too)."""

    def on_message(self, message):
        self.send(message)


class BroadcastHandler(WebSocketHandler):
    def on_connect(self):
        self.group = f"room.{self.kwargs['room']}"
        self.join(self.group)
        _joiner.schedule(self)

    def on_open(self, message):
        self.join(self.group)  # a client that speaks first is in the group at once
        return None  # ...and its first frame is broadcast by on_message as well

    def on_message(self, message):
        send_to_group(self.group, message)


class _Joiner:
    """Joins handlers' groups at JOIN_DELAYS after they were scheduled."""

    def __init__(self):
        self._heap: list = []
        self._seq = itertools.count()
        self._cond = None
        self._lock = threading.Lock()

    def schedule(self, handler: BroadcastHandler) -> None:
        now = time.monotonic()
        with self._lock:
            if self._cond is None:  # started on first use: after gevent patched threading
                self._cond = threading.Condition()
                threading.Thread(target=self._run, name="bench-joiner", daemon=True).start()
        with self._cond:
            for delay in JOIN_DELAYS:
                heapq.heappush(self._heap, (now + delay, next(self._seq), handler))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                _, _, handler = heapq.heappop(self._heap)
            try:
                if not handler.closed:
                    handler.join(handler.group)
            except ConnectionClosed:
                pass


_joiner = _Joiner()
