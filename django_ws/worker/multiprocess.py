"""``--multiprocess``: one forked process per connection.

The worker (the parent) has Django loaded and its routes compiled, so a fork
starts a handler in milliseconds with nothing to import. The parent keeps
its I/O loop; per child it runs two small threads:

* a feeder that writes the connection's messages, in order, to the child's
  pipe (the I/O loop only puts them in a queue and never blocks on a child);
* a reaper that waits for the child to exit. A child that died by a signal
  or an uncaught error gets its connection closed with 1011 by the parent,
  so a segfault in a C extension costs one connection and nothing more.

In the child, the worker's ZeroMQ sockets are reopened on a fresh context
(a context must never cross a fork) before the handler runs.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import struct
import threading
import typing

from django_ws import wire

from .connection import STOP
from .modes import Mode

logger = logging.getLogger("django_ws.worker")

_COUNT = struct.Struct("!I")


def _write_record(fd: int, frames: typing.Sequence[bytes]) -> None:
    parts = [_COUNT.pack(len(frames))]
    for frame in frames:
        parts.append(_COUNT.pack(len(frame)))
        parts.append(frame)
    data = b"".join(parts)
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_exact(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            raise EOFError("pipe closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_record(fd: int) -> list[bytes]:
    (count,) = _COUNT.unpack(_read_exact(fd, 4))
    frames = []
    for _ in range(count):
        (size,) = _COUNT.unpack(_read_exact(fd, 4))
        frames.append(_read_exact(fd, size))
    return frames


class ChildMailbox:
    """A mailbox whose two ends live in two processes.

    In the parent, ``put`` only appends to an in-memory queue (the feeder
    thread does the writing). In the child, ``get`` reads the pipe.
    """

    def __init__(self):
        self.queue = queue.SimpleQueue()
        self.read_fd, self.write_fd = os.pipe()

    def put(self, item) -> None:
        self.queue.put(item)

    def qsize(self) -> int:
        return self.queue.qsize()

    def get(self):
        try:
            frames = _read_record(self.read_fd)
        except EOFError:
            return STOP
        if not frames:
            return STOP
        return wire.decode(frames)

    def feed(self) -> None:
        """Parent side: copy the queue into the pipe until STOP (runs in the feeder thread)."""
        try:
            while True:
                item = self.queue.get()
                if item is STOP:
                    _write_record(self.write_fd, [])
                    return
                _write_record(self.write_fd, item.encode())
        except OSError:
            pass  # the child has gone; the reaper reports how
        finally:
            os.close(self.write_fd)


class ChildProcess:
    """The parent's handle on one child: ``join`` waits for its reaper."""

    def __init__(self, pid: int, reaper: threading.Thread):
        self.pid = pid
        self.reaper = reaper

    def join(self, timeout: float | None = None) -> None:
        self.reaper.join(timeout)


class MultiprocessMode(Mode):
    """One process per connection, forked from the worker, at most ``max_processes``."""

    name = "multiprocess"

    def __init__(self, max_processes: int | None = None):
        self.capacity = 64 if max_processes is None else int(max_processes)
        if self.capacity < 1:
            raise ValueError("--max-processes must be at least 1")
        self._child_setup: list[typing.Callable[[], None]] = []
        self._child_teardown: list[typing.Callable[[], None]] = []
        #: Called in the parent when a child exits: (connection, exit status).
        self.on_child_exit: typing.Callable[[typing.Any, int], None] | None = None

    def describe(self) -> str:
        return f"multiprocess, at most {self.capacity} processes"

    def in_child(self, setup: typing.Callable[[], None], teardown: typing.Callable[[], None]) -> None:
        """Register what each child runs first (reopen sockets) and last (flush them)."""
        self._child_setup.append(setup)
        self._child_teardown.append(teardown)

    def abandon(self, task: "ChildProcess") -> None:
        """Shutdown ran out of time: a handler process still running is killed, not orphaned."""
        try:
            os.kill(task.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def interrupt(self, task: "ChildProcess") -> None:
        try:
            os.kill(task.pid, signal.SIGUSR1)
        except ProcessLookupError:
            pass

    def mailbox(self):
        return ChildMailbox()

    def lock(self):
        return threading.Lock()

    def spawn(self, runner, name):
        mailbox, connection = runner.mailbox, runner.connection
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                os.close(mailbox.write_fd)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
                # The parent's I/O loop saw the client leave: a handler busy in
                # a loop notices at its next send(), as it would in a thread.
                signal.signal(signal.SIGUSR1, lambda *_: connection.mark_closed(1001, "client left"))
                for setup in self._child_setup:
                    setup()
                runner.on_finished = lambda conn: None  # the parent's reaper does this
                runner.run()
                code = 0
            except BaseException:
                logger.exception("handler process for %s failed", connection.id)
            finally:
                try:
                    for teardown in self._child_teardown:
                        teardown()
                finally:
                    os._exit(code)
        os.close(mailbox.read_fd)
        feeder = threading.Thread(target=mailbox.feed, name=f"feed:{name}", daemon=True)
        feeder.start()

        def reap():
            _, status = os.waitpid(pid, 0)
            mailbox.put(STOP)  # ends the feeder if the child died first
            if self.on_child_exit is not None:
                self.on_child_exit(connection, os.waitstatus_to_exitcode(status))

        reaper = threading.Thread(target=reap, name=f"reap:{name}", daemon=True)
        reaper.start()
        return ChildProcess(pid, reaper)
