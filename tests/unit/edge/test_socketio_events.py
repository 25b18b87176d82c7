"""SocketIOConnection.received: what the edge does with each Socket.IO event packet's data, on a real EdgeCore.

Regressions found by fuzz/socketio.py live here, one test each.
"""

from __future__ import annotations

import types

import pytest

from django_ws import wire
from django_ws.edge.core import CloseClient, EdgeCore, Forward
from django_ws.edge.transports.socketio import SocketIOConnection


class Edge:
    """What SocketIOConnection needs of the edge: the core, and the actions it executes."""

    def __init__(self):
        self.core = EdgeCore(resolve=lambda route: route, heartbeat_timeout=60.0, edge_id="e1")
        self.executed = []

    def execute(self, actions):
        self.executed += actions


@pytest.fixture
def received():
    """Feed one event packet's data to an open connection; return the actions it led to."""
    def feed(data, ack_id=None):
        edge = Edge()
        edge.core.worker_event(b"w", wire.Hello("w", 0, 0, "threaded"))
        transport = SocketIOConnection(types.SimpleNamespace(edge=edge), "sid", "eio", "/sio")
        conn, _ = edge.core.connect("sio", {"path": "/sio"}, transport)
        edge.core.reply(b"w", wire.Accept(conn.id, ""))
        edge.core.opened(conn)
        transport.conn = conn
        transport.received(data, ack_id)
        return edge.executed
    return feed


def test_a_message_event_is_forwarded_as_text(received):
    (forward,) = received(["message", "héllo"])
    assert isinstance(forward, Forward) and forward.payload == "héllo".encode()


@pytest.mark.parametrize("data", [["message", "\ud800"], ["chat", "a\udfff"], ["\ud800"], ["message", ["\ud83d"]]])
def test_a_lone_surrogate_closes_with_1007_not_1003(received, data):
    """JSON can spell a lone surrogate (``"\\ud800"``): no UTF-8 text, so 1007, as a WebSocket text frame gets.

    Found by fuzz/socketio.py: it used to be taken for binary data (1003, "binary data only as...").
    """
    closes = [a for a in received(data) if isinstance(a, CloseClient)]
    assert [(c.code, c.reason) for c in closes] == [(1007, "text that is not valid UTF-8")]


def test_binary_data_out_of_place_still_closes_with_1003(received):
    closes = [a for a in received(["chat", b"\x00"]) if isinstance(a, CloseClient)]
    assert [c.code for c in closes] == [1003]
