"""``--multiprocess``: one process per connection, forked by a fork server.

A process must not fork once it has threads: the child gets a copy of every
lock as it was at that instant, held perhaps by a thread that does not exist
in the child (Python 3.12 warns about it). A worker has threads by the time
connections arrive (libzmq's I/O threads, a feeder and a reaper per child),
so it never forks then. Instead, before it opens any socket or starts any
thread (``Mode.prepare``), it forks a *fork server*: a single-threaded copy of
itself, with Django loaded and the routes imported, that forks one handler
process per connection on request. A handler process still starts in a few
milliseconds with nothing to import, as from a preloaded fork server of
``multiprocessing``, but nothing here is pickled: the connection travels as
wire frames (wire/), its mailbox as a file descriptor.

In the worker (the parent), per child:

* a feeder thread writes the connection's messages, in order, to the child's
  pipe (the I/O loop only puts them in a queue and never blocks on a child);
  the first record is the Connect itself, with the edges to reply to;
* the fork server reports each child's exit status; a child that died by a
  signal or an uncaught error gets its connection closed with 1011 by the
  parent, so a segfault in a C extension costs one connection and nothing more.

The handler process opens its own ZeroMQ context and reply sockets, runs
the connection's handshake, messages and on_close, flushes its sockets and
exits.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import socket
import struct
import threading
import typing

from django_ws import wire

from .child import run_handler_process
from .connection import STOP
from .modes import Mode
from .pipes import ChildMailbox, read_exact

logger = logging.getLogger("django_ws.worker")

#: A child's exit, as the fork server reports it: pid, exit code (negative: the signal).
_EXIT = struct.Struct("!ii")


class ChildProcess:
    """The parent's handle on one handler process: ``join`` waits until the fork server saw it exit."""

    def __init__(self, pid: int):
        self.pid = pid
        self.exited = threading.Event()

    def join(self, timeout: float | None = None) -> None:
        self.exited.wait(timeout)


class ForkServer:
    """A single-threaded process that forks the handler processes (see the module's docstring).

    The parent asks over a Unix socket pair: one datagram per child, carrying
    the child's mailbox pipe as a file descriptor, answered with the child's
    pid. Exits come back on a pipe, read by one thread of the parent. When
    the parent closes its end (or dies), the fork server waits for its
    children, reports them, and exits.
    """

    def __init__(self, run_child: typing.Callable[[int], int]):
        #: In a new handler process: run the connection whose mailbox is this fd; return the exit code.
        self.run_child = run_child
        self.pid = 0
        self._control: socket.socket | None = None
        self._exits_fd = -1
        self._lock = threading.Lock()
        self._children: dict[int, typing.Callable[[int], None]] = {}
        self._early_exits: dict[int, int] = {}
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        parent_end, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        exits_read, exits_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the fork server
            code = 1
            try:
                parent_end.close()
                os.close(exits_read)
                code = self._serve(server_end, exits_write)
            except BaseException:
                logger.exception("the fork server of --multiprocess failed")
            finally:
                os._exit(code)
        server_end.close()
        os.close(exits_write)
        self.pid, self._control, self._exits_fd = pid, parent_end, exits_read
        self._reader = threading.Thread(target=self._read_exits, name="ws-fork-server-exits", daemon=True)
        self._reader.start()

    def spawn(self, mailbox_fd: int, on_exit: typing.Callable[[int], None]) -> int:
        """Fork a handler process that serves the mailbox at ``mailbox_fd``; ``on_exit(code)`` follows."""
        with self._lock:
            if self._control is None:
                raise RuntimeError("the fork server is not running")
            socket.send_fds(self._control, [b"spawn"], [mailbox_fd])
            reply = self._control.recv(64)
            if not reply:
                raise RuntimeError("the fork server has gone")
            pid = int(reply)
            if pid in self._early_exits:  # exited before we got here
                code = self._early_exits.pop(pid)
            else:
                self._children[pid] = on_exit
                return pid
        on_exit(code)
        return pid

    def _read_exits(self) -> None:
        try:
            while True:
                pid, code = _EXIT.unpack(read_exact(self._exits_fd, _EXIT.size))
                with self._lock:
                    on_exit = self._children.pop(pid, None)
                    if on_exit is None:
                        self._early_exits[pid] = code
                        continue
                on_exit(code)
        except EOFError:
            pass  # the fork server exited
        finally:
            os.close(self._exits_fd)
            with self._lock:
                orphans, self._children = self._children, {}
            for on_exit in orphans.values():
                on_exit(1)  # their exit statuses are lost with the fork server

    def stop(self, timeout: float = 10.0) -> None:
        """Close the control socket; the fork server reports its last children and exits."""
        with self._lock:
            control, self._control = self._control, None
        if control is None:
            return
        control.close()
        if self._reader is not None:
            self._reader.join(timeout)
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass

    # The fork server's side. It has one thread, so forking is safe here.

    def _serve(self, control: socket.socket, exits_fd: int) -> int:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the worker, which stops us
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # so does SIGTERM: we end when the worker closes
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the selector
        children: set[int] = set()

        def reap(block: bool) -> None:
            while children:
                try:
                    pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
                except ChildProcessError:
                    children.clear()
                    return
                if pid == 0:
                    return
                children.discard(pid)
                os.write(exits_fd, _EXIT.pack(pid, os.waitstatus_to_exitcode(status)))

        selector = selectors.DefaultSelector()
        selector.register(control, selectors.EVENT_READ, "control")
        selector.register(wake_read, selectors.EVENT_READ, "wake")
        while True:
            for key, _ in selector.select():
                if key.data == "wake":
                    os.read(wake_read, 512)
                    reap(block=False)
                    continue
                try:
                    _, fds, _, _ = socket.recv_fds(control, 64, 1)
                except (ConnectionError, OSError):
                    fds = None
                if not fds:  # the worker closed its end: stopping
                    reap(block=True)
                    return 0
                (mailbox_fd,) = fds
                pid = os.fork()
                if pid == 0:  # a handler process
                    code = 1
                    try:
                        selector.close()
                        control.close()
                        for fd in (exits_fd, wake_read, wake_write):
                            os.close(fd)
                        signal.set_wakeup_fd(-1)
                        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
                            signal.signal(sig, signal.SIG_DFL)
                        code = self.run_child(mailbox_fd)
                    except BaseException:
                        logger.exception("a handler process failed")
                    finally:
                        os._exit(code)
                os.close(mailbox_fd)
                children.add(pid)
                control.send(str(pid).encode())


class MultiprocessMode(Mode):
    """One process per connection, forked by the fork server, at most ``max_processes``."""

    name = "multiprocess"

    def __init__(self, max_processes: int | None = None):
        self.capacity = 64 if max_processes is None else int(max_processes)
        if self.capacity < 1:
            raise ValueError("--max-processes must be at least 1")
        self.fork_server = ForkServer(run_handler_process)

    def describe(self) -> str:
        return f"multiprocess, at most {self.capacity} processes"

    def prepare(self) -> None:
        self.fork_server.start()

    def close(self) -> None:
        self.fork_server.stop()

    def abandon(self, task: ChildProcess) -> None:
        """Shutdown ran out of time: a handler process still running is killed, not orphaned."""
        try:
            os.kill(task.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def interrupt(self, task: ChildProcess) -> None:
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
        outbox = connection._outbox  # the ReplySocket of the edge this connection came through
        start = {"reply_to": outbox.endpoint, "edges": self.edges()}
        connect = wire.Connect(connection.id, connection.route, connection.request_meta)
        mailbox.put([json.dumps(start).encode(), *connect.encode()])  # the first record the child reads
        task = ChildProcess(0)

        def exited(code: int) -> None:
            mailbox.put(STOP)  # ends the feeder if the child died first
            task.exited.set()
            if self.on_child_exit is not None:
                self.on_child_exit(connection, code)

        try:
            task.pid = self.fork_server.spawn(mailbox.read_fd, exited)
        finally:
            os.close(mailbox.read_fd)
        threading.Thread(target=mailbox.feed, name=f"feed:{name}", daemon=True).start()
        return task
