"""Threaded and gevent modes' engine: connections served in order by a shared, elastic pool.

A thread per connection is the simple model, and it costs twice: an idle
connection holds a whole OS thread (its stack pages, its thread state), and
every message wakes one particular sleeping thread, a futex and a GIL
handoff each way. Here a connection's mailbox is a ``SerialMailbox``: what is
put in it runs on whichever pool thread is free, one message at a time and in
order, so a handler still never sees two of its messages at once. Under load
the busy threads go from one connection's message to the next without
sleeping; an idle connection holds no thread at all.

Handlers may still block (sleep, slow queries, a loop in on_open): the pool
starts another thread when work has waited because every thread is busy, so
one handler that blocks never holds up another connection for long. Threads
left idle for ``idle_timeout`` seconds end.

``--gevent`` uses the same pool: in its monkey-patched process ``threading``
makes greenlets, so there an idle connection holds no greenlet either, and
with ``starvation_delay=0`` a task that finds no idle greenlet gets a new
one at once, since greenlets cost little and never contend for the GIL.
"""

from __future__ import annotations

import collections
import logging
import threading
import time

from .connection import ConnectionRunner

logger = logging.getLogger("django_ws.worker")


class _Parked:
    """An idle pool thread: it sleeps on ``wake`` until a submit hands it ``task``."""

    __slots__ = ("wake", "task", "since")

    def __init__(self):
        self.wake = threading.Lock()
        self.wake.acquire()
        self.task = None
        self.since = 0.0


#: Handed to a parked thread that has been idle too long: it ends.
_EXIT = object()


class ThreadPool:
    """Runs callables on threads that the pool adds when work waits and ends when idle.

    A submit hands its task straight to an idle thread if there is one.
    Otherwise the task waits in a queue for the first busy thread to finish,
    which is what keeps the pool small and the threads awake under load. If
    the oldest waiting task has waited ``starvation_delay`` seconds (every
    thread is busy, perhaps blocked in a handler), a watcher starts one more
    thread, at most one per delay: with N handlers blocked at once the last
    task waits about N delays, never a stall. With ``starvation_delay=0`` a
    task that finds no idle thread starts one at once.

    With ``awake_limit`` set, a submit wakes an idle thread only while fewer
    than that many threads are awake (running a task or handed one): past
    it, the task is queued for an awake thread to take when its task
    returns. Waking a parked thread costs a futex wake, a context switch
    and a GIL handoff, and a woken thread mostly waits for the GIL held by
    the thread that woke it, so for short handlers the awake threads going
    from one task to the next is cheaper than a thread per task. Handlers
    that block are covered as when every thread is busy: the watcher wakes
    (or starts) one more thread once the oldest task has waited
    ``starvation_delay``.

    Idle threads park without a timeout (a timed wait per task is dear under
    gevent); the watcher ends those idle for ``idle_timeout`` (0 or None:
    never). ``stop()`` ends the watcher and the idle threads.
    """

    def __init__(self, idle_timeout: float = 30.0, starvation_delay: float = 0.005, name: str = "ws-pool",
                 awake_limit: int | None = None):
        self.idle_timeout = idle_timeout or None
        self.starvation_delay = starvation_delay
        self.awake_limit = awake_limit
        self._awake = 0  # threads running a task or handed one (not parked)
        self._stopping = False
        self.name = name
        self._lock = threading.Lock()
        self._tasks: collections.deque = collections.deque()  # (enqueued at, task)
        self._parked: list[_Parked] = []  # the longest idle first
        self._started = 0
        self.threads = 0  # alive now, not counting the watcher
        self._watcher = threading.Condition(self._lock)
        threading.Thread(target=self._watch_loop, name=f"{name}-watcher", daemon=True).start()

    def submit(self, fn) -> None:
        with self._lock:
            if self._parked and (self.awake_limit is None or self._awake < self.awake_limit):
                self._hand(fn)
                return
            self._tasks.append((time.monotonic(), fn))
            if self.threads == 0 or not self.starvation_delay:
                self._start_thread()
            if len(self._tasks) == 1 and self.starvation_delay:
                # The watcher times the wait of this, now the oldest task. (Even
                # if a thread was just started: a blocking task may take it first.)
                self._watcher.notify()

    def _hand(self, fn) -> None:
        # Called with _lock held and a thread parked: wake it with ``fn``.
        parked = self._parked.pop()  # the most recently idle: its stack is warm
        parked.task = fn
        self._awake += 1
        parked.wake.release()

    def _start_thread(self) -> None:
        # Called with _lock held.
        self._started += 1
        self.threads += 1
        self._awake += 1
        try:
            threading.Thread(target=self._work, name=f"{self.name}-{self._started}", daemon=True).start()
        except BaseException:  # at the system's thread limit: the queued work waits for a busy thread
            self.threads -= 1
            self._awake -= 1
            raise

    def _work(self) -> None:
        parked = _Parked()
        fn = None
        try:
            while True:
                if fn is not None:
                    try:
                        fn()
                    except Exception:  # the runner contains handler errors: this is a bug of ours
                        logger.exception("a task of the worker's thread pool failed")
                with self._lock:
                    if self._tasks:
                        fn = self._tasks.popleft()[1]
                        continue
                    self._awake -= 1
                    if self._stopping:
                        self.threads -= 1
                        return
                    parked.since = time.monotonic()
                    self._parked.append(parked)
                parked.wake.acquire()
                fn, parked.task = parked.task, None
                if fn is _EXIT:
                    return
        except BaseException:  # gevent.Timeout, SystemExit... out of a handler: this thread is gone
            with self._lock:
                self.threads -= 1
                self._awake -= 1
            raise

    def _watch_loop(self) -> None:
        with self._lock:
            while not self._stopping:
                try:
                    self._watch_once()
                except Exception:  # e.g. no thread could be started: try again later
                    logger.exception("the worker's thread pool could not add a thread")
                    self._watcher.wait(1.0)
            for parked in self._parked:
                parked.task = _EXIT
                self.threads -= 1
                parked.wake.release()
            self._parked.clear()

    def _watch_once(self) -> None:
        # Called with _lock held.
        self._end_idle_threads()
        if not self._tasks or not self.starvation_delay:
            self._watcher.wait(self.idle_timeout)
            return
        waited = time.monotonic() - self._tasks[0][0]
        if waited < self.starvation_delay:
            self._watcher.wait(self.starvation_delay - waited)
            return
        # Every awake thread is busy (perhaps blocked): one more takes the oldest task.
        if self._parked:
            self._hand(self._tasks.popleft()[1])
        else:
            self._start_thread()
        self._watcher.wait(self.starvation_delay)

    def _end_idle_threads(self) -> None:
        # Called with _lock held. The longest idle are at the front of _parked.
        if self.idle_timeout is None:
            return
        limit = time.monotonic() - self.idle_timeout
        while self._parked and self._parked[0].since <= limit:
            parked = self._parked.pop(0)
            parked.task = _EXIT
            self.threads -= 1
            parked.wake.release()

    def stop(self) -> None:
        """End the watcher and the idle threads; busy ones end when their task returns."""
        with self._lock:
            self._stopping = True
            self._watcher.notify()


class SerialMailbox:
    """A connection's mailbox in threaded and gevent modes; also the handle ``spawn`` returns.

    ``put`` appends and, if the connection is not being served, hands it to
    the pool; whichever pool thread takes it handles messages until the
    mailbox is empty. So at most one thread serves a connection at any time,
    and its messages are handled in the order they were put.

    It is kept small, since every connection has one: a list for the queue
    (an empty deque takes 760 bytes, an empty list 56; the queue is short,
    and bounded by the dispatcher's ``mailbox_limit``), and ``lock`` as the
    mode gives it (see ``PooledMode.mailbox_lock``).
    """

    __slots__ = ("_pool", "_queue", "_lock", "_scheduled", "_runner", "_done", "_done_cond")

    def __init__(self, pool: ThreadPool, done_cond: threading.Condition, lock=None):
        self._pool = pool
        self._queue: list = []
        self._lock = threading.Lock() if lock is None else lock
        self._scheduled = False
        self._runner: ConnectionRunner | None = None
        self._done = False
        self._done_cond = done_cond  # shared by the mode: join() without a lock per connection

    def qsize(self) -> int:
        return len(self._queue)

    def start(self, runner: ConnectionRunner) -> "SerialMailbox":
        """Run the handshake on a pool thread; messages put meanwhile wait for it."""
        self._runner = runner
        with self._lock:
            self._scheduled = True
        self._pool.submit(self._handshake)
        return self

    def put(self, event) -> None:
        with self._lock:
            if self._done:
                return
            self._queue.append(event)
            if self._scheduled:
                return  # the thread serving it will get there
            self._scheduled = True
        self._pool.submit(self._serve)

    def _handshake(self) -> None:
        try:
            accepted = self._runner.handshake()
        except BaseException:
            self._finish()
            raise
        if accepted:
            self._serve()
        else:
            self._finish()

    def _serve(self) -> None:
        handle, queue, lock = self._runner.handle, self._queue, self._lock
        while True:
            with lock:
                if not queue:
                    self._scheduled = False
                    return
                event = queue.pop(0)
            try:
                going_on = handle(event)
            except BaseException:
                self._finish()
                raise
            if not going_on:
                self._finish()
                return

    def _finish(self) -> None:
        with self._lock:
            self._done = True
            self._queue.clear()
        try:
            self._runner.finish()
        finally:
            with self._done_cond:
                self._runner = None
                self._done_cond.notify_all()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the connection's runner has finished (on_close included)."""
        with self._done_cond:
            return self._done_cond.wait_for(lambda: self._done and self._runner is None, timeout)
