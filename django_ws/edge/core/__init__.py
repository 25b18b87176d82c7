"""The edge's connection core: who is connected, through which worker, in which groups, and how each ended.

It does no I/O and imports neither Tornado nor ZeroMQ nor asyncio. The
adapters at its rim (a transport per client protocol, the ZeroMQ link to the
workers) feed it events by calling its methods, and each method returns the
actions that follow, for the adapters to carry out:

==============================  ==============================================
event (method)                  typical actions
==============================  ==============================================
``connect()``  a handshake      ``ToWorker(Connect)``, or ``Refuse``
``reply()``    from the sub     ``Deliver``, ``Upgrade``, ``Refuse``,
               endpoint         ``CloseClient``, ``Answer`` (an Ack),
                                ``Acknowledge`` (an EventAck)
``worker_event()`` from the     ``ToWorker(Ping)``, ``WorkerChanged``,
               push endpoint    ``CloseClient`` (1012)
``opened()``   upgrade done     ``Deliver`` (what on_connect sent)
``received()`` a client frame   ``Forward``, or ``CloseClient``
``received_event()`` a          ``Forward`` (a wire.Event), or ``CloseClient``
               Socket.IO event
``closed()``   transport ended  ``ToWorker(Disconnect)``
``tick()``     each heartbeat   ``ToWorker(Ping)``, ``CloseClient`` (1012)
``send_failed()`` the link      ``CloseClient`` (1013), a retry, a backlog
               could not send
``broker_message()`` from the   ``Deliver``
               broker (cluster)
==============================  ==============================================

In cluster mode (``cluster=True``, WS_BROKER set) joins and leaves also
return ``Subscribe`` / ``Unsubscribe`` when a group gets its first member on
this edge or loses its last, and ``MemberChanged`` for the broker's presence.

One :class:`Connection` record per client holds everything the edge knows of
it, with an explicit :class:`ConnectionState`; the transport's own object
is only its ``transport`` handle. Every close race the end-to-end tests met
(a worker's Close overtaking the upgrade, a worker lost mid-handshake, a
client leaving while a worker decides) is a state transition here, unit-tested
event by event in tests/unit/edge/test_core.py.

The modules, one job each (none imports Tornado, ZeroMQ or asyncio):

- :mod:`.edge_core`: :class:`EdgeCore`, the one object events go into: the
  connection table, the workers, placement, handshakes and closes;
- :mod:`.records`: :class:`Connection`, :class:`WorkerState`,
  :class:`ConnectionState`, :class:`Stats`;
- :mod:`.actions`: what the core returns, slotted dataclasses;
- :mod:`.lifecycle`: every rule of a connection's state, in one table;
- :mod:`.groups`: membership, watchers, plain fan-out;
- :mod:`.recovery`: group messages with positions, gaps replayed or fetched,
  the catch-up after an outage of the broker;
- :mod:`.sends`: a sender's message with a ref delivered once;
- :mod:`.admission`: the rate limits, at the handshake and per message.
"""

from .actions import (
    Acknowledge,
    Action,
    Answer,
    CatchUp,
    CloseClient,
    Deliver,
    FetchGap,
    FlushPresenceLater,
    Forward,
    MemberChanged,
    Refuse,
    Subscribe,
    ToWorker,
    Unsubscribe,
    Upgrade,
    WorkerChanged,
)
from .edge_core import HANDSHAKE_ATTEMPTS, EdgeCore
from .records import Connection, ConnectionState, Stats, WorkerState
from .sends import RECENT_SENDS_LIMIT

__all__ = [
    "HANDSHAKE_ATTEMPTS",
    "RECENT_SENDS_LIMIT",
    "Acknowledge",
    "Action",
    "Answer",
    "CatchUp",
    "CloseClient",
    "Connection",
    "ConnectionState",
    "Deliver",
    "EdgeCore",
    "FetchGap",
    "FlushPresenceLater",
    "Forward",
    "MemberChanged",
    "Refuse",
    "Stats",
    "Subscribe",
    "ToWorker",
    "Unsubscribe",
    "Upgrade",
    "WorkerChanged",
    "WorkerState",
]
