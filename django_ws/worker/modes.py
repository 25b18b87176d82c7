"""How a worker runs its connections: threads, greenlets or processes.

The dispatcher and ConnectionRunner are the same in every mode; a mode only
says how to spawn a connection's runner, what its mailbox is, and which
ZeroMQ module and lock the transport uses. That small interface is the whole
difference between ``--threaded``, ``--gevent`` and ``--multiprocess``.
"""

from __future__ import annotations

import threading
import typing


class Mode:
    """The interface; see ThreadedMode for the reference implementation."""

    name: str = ""
    #: Connections one worker takes in this mode (0: no limit).
    capacity: int = 0

    @property
    def zmq(self):
        import zmq

        return zmq

    #: Set by the worker. Called by a mode that runs handlers apart (--multiprocess) when one ends:
    #: (connection, exit code).
    on_child_exit = None
    #: Set by the worker: the sub endpoints of the edges it serves now (a handler process replies to them).
    edges: typing.Callable[[], list[str]] = staticmethod(lambda: [])

    def prepare(self) -> None:
        """Called first by the worker, before it starts any thread or opens any ZeroMQ socket."""

    def mailbox(self):
        """A FIFO that the I/O loop puts to and the connection's runner gets from."""
        raise NotImplementedError

    def lock(self):
        """A lock that serialises sends on one shared ZeroMQ socket."""
        raise NotImplementedError

    def spawn(self, runner, name: str):
        """Start serving ``runner`` (its handshake, then its mailbox) concurrently;
        return something with ``join(timeout)``. A process per connection
        calls ``runner.run()``; the pooled modes drive the same steps."""
        raise NotImplementedError

    def interrupt(self, task) -> None:
        """The connection of ``task`` has ended: make its handler notice.

        Threads and greenlets share the Connection object, whose close flag
        the I/O loop has already set; only a separate process needs telling.
        """

    def close(self) -> None:
        """The worker is stopping: let go of what the mode itself runs."""

    def abandon(self, task) -> None:
        """Shutdown ran out of time for ``task``. Threads and greenlets end with
        the process; a separate process has to be killed."""

    def describe(self) -> str:
        return self.name


#: PooledMode's default idle_timeout: WS_THREAD_IDLE_TIMEOUT (None is a value of its own there).
_FROM_SETTINGS = object()


class PooledMode(Mode):
    """Connections served from a pool (see pool.py); an idle one holds no thread or greenlet.

    A connection's messages run one at a time and in order, on whichever
    pool thread (or greenlet) is free.
    """

    #: How long work may wait for a busy pool before another thread joins it.
    starvation_delay = 0.005
    #: Threads a new message may wake while others are awake (None: any idle one); see ThreadPool.
    awake_limit: int | None = None

    def __init__(self, idle_timeout: float | None | object = _FROM_SETTINGS):
        from django_ws.conf import ws_settings

        from .pool import ThreadPool

        if idle_timeout is _FROM_SETTINGS:
            idle_timeout = ws_settings.WS_THREAD_IDLE_TIMEOUT
        # None (or 0): idle threads never end, as docs/settings.rst says.
        idle_timeout = None if idle_timeout is None else float(idle_timeout)
        self.pool = ThreadPool(idle_timeout, self.starvation_delay, name=f"ws-{self.name}",
                               awake_limit=self.awake_limit)
        self._finished = threading.Condition()

    def mailbox(self):
        from .pool import SerialMailbox

        return SerialMailbox(self.pool, self._finished, self.mailbox_lock())

    def mailbox_lock(self):
        """The lock of one connection's mailbox: held only to append or pop, never across a wait."""
        return threading.Lock()

    def spawn(self, runner, name):
        return runner.mailbox.start(runner)

    def close(self) -> None:
        self.pool.stop()


class ThreadedMode(PooledMode):
    """Handlers run on a pool of OS threads (the default).

    Handlers may block (sleep, slow queries) without holding up other
    connections: the pool grows while every thread is busy, and the GIL is
    released while they wait.
    """

    name = "threaded"
    # One thread running Python and one more, say, waiting on the database:
    # beyond that, waking a thread per message mostly buys GIL handoffs.
    awake_limit = 2

    def lock(self):
        return threading.Lock()


class GeventMode(PooledMode):
    """Handlers run on greenlets; the process was monkey-patched at start.

    Patching happens in ``python -m django_ws.worker`` before Django or any
    database driver is imported (see worker/__main__.py), so blocking calls
    in handlers (sleep, sockets, most database drivers) yield to the other
    greenlets, and the pool's "threads" are greenlets. Drivers written in C
    that do their own I/O, such as psycopg2, need a green wait callback
    (psycogreen) or they block every greenlet.
    """

    name = "gevent"
    starvation_delay = 0.0  # a new greenlet at once: they are cheap

    def __init__(self, idle_timeout: float | None | object = _FROM_SETTINGS):
        from gevent import monkey

        if not monkey.is_module_patched("threading"):
            raise RuntimeError("--gevent needs a monkey-patched process: start the worker with "
                               "'python -m django_ws.worker --gevent' or 'manage.py run_wsworker --gevent'")
        super().__init__(idle_timeout)

    @property
    def zmq(self):
        import zmq.green

        return zmq.green

    def lock(self):
        import gevent.lock

        return gevent.lock.Semaphore()

    def mailbox_lock(self):
        # The OS lock, not the patched one: every greenlet runs on this one OS
        # thread and a mailbox's lock is never held across a switch (nothing
        # in its few lines yields), so it is never contended, and it costs a
        # C call where gevent's lock runs Python code at each acquire and
        # release, and takes 56 bytes per connection instead of about 180.
        from gevent import monkey

        return monkey.get_original("_thread", "allocate_lock")()
