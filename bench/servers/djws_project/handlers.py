"""The two handlers the benchmark drives.

``EchoHandler`` sends every frame back. ``BroadcastHandler`` puts every
connection of ``room/<name>`` in the group ``room.<name>`` and sends every
frame it receives to that group, so each frame sent on a URL reaches every
connection on that URL, the sender included.

Joining at connect time needs a detour. The benchmark's receivers never send
a frame, so ``on_open`` (which runs on a connection's first message) never
runs for them, and ``on_connect`` runs before the upgrade, when ``join()``
cannot work yet (it raises, or on older versions the edge dropped the join
silently). So ``on_connect`` hands the connection to ``_Joiner``, one
background thread (a greenlet under ``--gevent``, which patches
``threading``) that joins it shortly after the upgrade, a few times over: a
join is idempotent, and the edge only keeps one that arrives after it has
registered the connection. docs/benchmarks.rst explains why.
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
        _joiner.schedule(self)

    def on_open(self, message):
        # A client that speaks first is in the group at once; returning None,
        # its first frame is broadcast by on_message as well.
        self.join(self.group)

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
            except (ConnectionClosed, RuntimeError):
                pass  # closed meanwhile, or still in its handshake: a later attempt joins it


_joiner = _Joiner()
