"""The bench project with Socket.IO on (bench/socketio_bench.py)."""

from .settings import *  # noqa: F403

WS_SOCKETIO = True
