"""Handlers for the fault tests: they leave a trace that outlives edges and workers."""

import os
import time

from django_ws import WebSocketHandler


def record(line: str) -> None:
    """Append one line to DJANGO_WS_CLOSE_LOG (O_APPEND: whole lines, from any process)."""
    path = os.environ.get("DJANGO_WS_CLOSE_LOG")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


class RecordedEchoHandler(WebSocketHandler):
    """Echoes; on_close writes "close <tag> <connection id>" to the close log."""

    def on_message(self, message):
        self.send(message)

    def on_close(self):
        record(f"close {self.kwargs['tag']} {self.connection_id} {self.connection.close_code}")


class SlowEchoHandler(RecordedEchoHandler):
    """Takes a while per message, so a shutdown finds handlers mid-frame."""

    def on_message(self, message):
        time.sleep(0.2)
        self.send(message)
