"""The mailbox of a handler process: wire messages, in order, through a pipe.

A record is a count of frames, then each frame with its length (network
byte order); an empty record means STOP. The parent writes from a feeder
thread, the handler process reads.
"""

from __future__ import annotations

import os
import queue
import struct
import typing

from django_ws import wire

from .connection import STOP

_COUNT = struct.Struct("!I")
#: A child's exit, as the fork server reports it: pid, exit code (negative: the signal).
_EXIT = struct.Struct("!ii")


def write_record(fd: int, frames: typing.Sequence[bytes]) -> None:
    parts = [_COUNT.pack(len(frames))]
    for frame in frames:
        parts.append(_COUNT.pack(len(frame)))
        parts.append(frame)
    view = memoryview(b"".join(parts))
    while view:
        written = os.write(fd, view)
        view = view[written:]


def read_exact(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            raise EOFError("pipe closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_record(fd: int) -> list[bytes]:
    (count,) = _COUNT.unpack(read_exact(fd, 4))
    frames = []
    for _ in range(count):
        (size,) = _COUNT.unpack(read_exact(fd, 4))
        frames.append(read_exact(fd, size))
    return frames


class ChildMailbox:
    """A mailbox whose two ends live in two processes.

    In the parent, ``put`` only appends to an in-memory queue (the feeder
    thread does the writing). In the child, ``get`` reads the pipe.
    """

    def __init__(self):
        self.queue = queue.SimpleQueue()
        self.read_fd, self.write_fd = os.pipe()

    @classmethod
    def reading(cls, fd: int) -> "ChildMailbox":
        """The child's end: a mailbox that only reads ``fd``."""
        mailbox = cls.__new__(cls)
        mailbox.read_fd, mailbox.write_fd = fd, -1
        return mailbox

    def put(self, item) -> None:
        self.queue.put(item)

    def qsize(self) -> int:
        return self.queue.qsize()

    def get(self):
        try:
            frames = read_record(self.read_fd)
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
                    write_record(self.write_fd, [])
                    return
                # The first record is the child's start (a list of frames); then wire messages.
                write_record(self.write_fd, item if isinstance(item, list) else item.encode())
        except OSError:
            pass  # the child has gone; its exit status says how
        finally:
            os.close(self.write_fd)
