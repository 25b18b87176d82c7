"""Engine.IO payloads and Socket.IO packets, as the edge receives them.

The bytes are an Engine.IO long-polling body (python-engineio decodes it),
whose message packets are Socket.IO packets (python-socketio decodes them;
what those libraries refuse, they log and drop, and the edge never sees).
Every EVENT packet that decodes goes to the edge's own
``SocketIOConnection.received`` on a connection opened in a real EdgeCore:
it must forward the event to the worker, or close the connection with a
documented code (1007 for an event without a name or text that is not
UTF-8, 1003 for binary data out of place), and raise nothing.
"""

from __future__ import annotations

import types

import engineio.packet
import engineio.payload
import socketio.packet

from django_ws import wire
from django_ws.edge.core import CloseClient, EdgeCore, Forward, ToWorker
from django_ws.edge.transports.socketio import SocketIOConnection


class _Edge:
    """What SocketIOConnection needs of the edge: the core, and a place for the actions it executes."""

    def __init__(self) -> None:
        self.core = EdgeCore(resolve=lambda route: route, heartbeat_timeout=60.0, edge_id="fuzz")
        self.executed: list = []

    def execute(self, actions: list) -> None:
        self.executed += actions


def _open_connection() -> tuple[_Edge, SocketIOConnection]:
    edge = _Edge()
    core = edge.core
    core.worker_event(b"w", wire.Hello("w", 0, 0, "threaded"))
    owner = types.SimpleNamespace(edge=edge)
    transport = SocketIOConnection(owner, "sid", "eio", "/sio")
    conn, actions = core.connect("sio", {"path": "/sio"}, transport)
    assert any(isinstance(a, ToWorker) for a in actions)
    core.reply(b"w", wire.Accept(conn.id, ""))
    core.opened(conn)
    transport.conn = conn
    transport._task = True  # acknowledgements stay in the outbox: no loop runs here
    return edge, transport


def _events(data: bytes) -> list[socketio.packet.Packet]:
    try:
        payload = engineio.payload.Payload(encoded_payload=data.decode("utf-8"))
    except Exception:  # noqa: BLE001 - python-engineio refuses the body (400): the edge never sees it
        return []
    packets = []
    for eio in payload.packets:
        if eio.packet_type != engineio.packet.MESSAGE or not isinstance(eio.data, str):
            continue
        try:
            packet = socketio.packet.Packet(encoded_packet=eio.data)
        except Exception:  # noqa: BLE001, S112 - python-socketio logs it and drops it
            continue
        if packet.packet_type == socketio.packet.EVENT:
            packets.append(packet)
    return packets


def test_one_input(data: bytes) -> None:
    for packet in _events(data):
        edge, transport = _open_connection()
        transport.received(packet.data, packet.id)
        closes = [a for a in edge.executed if isinstance(a, CloseClient)]
        forwards = [a for a in edge.executed if isinstance(a, Forward)]
        assert len(closes) + len(forwards) == 1, f"{packet.data!r}: {edge.executed}"
        if closes:
            assert closes[0].code in (1003, 1007), closes
            if closes[0].code == 1003:
                assert _has_bytes(packet.data), f"{packet.data!r} closed with 1003 but carries no binary data"
        else:
            forwards[0].payload.decode("utf-8")


def _has_bytes(value: object) -> bool:
    if isinstance(value, (bytes, bytearray)):
        return True
    if isinstance(value, list):
        return any(_has_bytes(v) for v in value)
    if isinstance(value, dict):
        return any(_has_bytes(v) for v in value.values())
    return False
