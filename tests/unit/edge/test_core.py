"""The edge's connection core, event by event, with no sockets and no loop.

Each close race that the end-to-end tests once met is a sequence of events
here, with the actions it must produce.
"""

from __future__ import annotations

import pytest

from django_ws import wire
from django_ws.codes import CloseCode
from django_ws.edge.core import (
    Acknowledge,
    Answer,
    CloseClient,
    ConnectionState,
    Deliver,
    EdgeCore,
    Forward,
    Refuse,
    ToWorker,
    Upgrade,
    WorkerChanged,
)

ROUTES = {"echo", "chat/lobby"}


@pytest.fixture
def core(clock):
    return EdgeCore(resolve=lambda route: route if route in ROUTES else None, heartbeat_timeout=2.0,
                    edge_id="e1", clock=clock)


def hello(core, identity=b"w1", capacity=0, load=0):
    return core.worker_event(identity, wire.Hello(identity.decode(), capacity, load, "threaded"))


def kinds(actions):
    return [type(a).__name__ for a in actions]


def only(actions, kind):
    found = [a for a in actions if isinstance(a, kind)]
    assert len(found) == 1, f"expected one {kind.__name__} in {actions}"
    return found[0]


def open_connection(core, route="echo", worker=b"w1", transport="t"):
    conn, actions = core.connect(route, {"path": "/" + route}, transport)
    connect = only(actions, ToWorker)
    assert isinstance(connect.message, wire.Connect) and connect.worker.identity == worker
    assert core.reply(worker, wire.Accept(conn.id, "")) == [Upgrade(conn, "")]
    assert core.opened(conn) == []
    assert conn.state is ConnectionState.OPEN
    return conn


# -- handshakes --------------------------------------------------------------------------


def test_an_unknown_route_is_refused_with_404_and_leaves_no_record(core):
    hello(core)
    conn, actions = core.connect("nowhere", {}, "t")
    assert conn is None and actions == [Refuse(None, 404, "no websocket route here")]
    assert core.connections == {} and core.stats.refused[404] == 1


def test_no_worker_gives_503(core):
    conn, actions = core.connect("echo", {}, "t")
    assert kinds(actions) == ["Refuse"] and actions[0].status == 503
    assert conn.state is ConnectionState.CLOSED and core.connections == {}


def test_a_worker_joins_and_is_pinged(core):
    actions = hello(core)
    assert kinds(actions) == ["ToWorker", "WorkerChanged"]
    assert isinstance(actions[0].message, wire.Ping) and actions[1].what == "joined"
    assert hello(core) == [], "a second Hello is a heartbeat"


def test_accept_upgrades_and_what_on_connect_sent_comes_first(core):
    hello(core)
    conn, _ = core.connect("echo", {}, "t")
    assert conn.state is ConnectionState.CONNECTING and core.handshakes_pending == 1
    assert core.reply(b"w1", wire.Send(conn.id, False, b"first")) == []
    assert core.reply(b"w1", wire.Join(conn.id, "room")) == []
    assert core.reply(b"w1", wire.Accept(conn.id, "chat")) == [Upgrade(conn, "chat")]
    assert core.reply(b"w1", wire.Send(conn.id, True, b"second")) == []
    assert core.opened(conn) == [Deliver([conn], False, b"first"), Deliver([conn], True, b"second")]
    assert core.open_count == 1 and core.stats.connections_total == 1
    assert [c.id for c in core.members_of("room")] == [conn.id], "joined from on_connect"


def test_the_least_loaded_worker_with_room_takes_the_connection(core):
    hello(core, b"w1", load=5)
    hello(core, b"w2", load=1)
    hello(core, b"w3", capacity=1, load=1)
    _, actions = core.connect("echo", {}, "t")
    assert only(actions, ToWorker).worker.identity == b"w2"


def test_deny_refuses_with_its_status_and_tells_the_worker(core):
    hello(core)
    conn, _ = core.connect("echo", {}, "t")
    actions = core.reply(b"w1", wire.Deny(conn.id, 403, "members only"))
    assert only(actions, Refuse) == Refuse(conn, 403, "members only")
    disconnect = only(actions, ToWorker).message
    assert isinstance(disconnect, wire.Disconnect) and disconnect.code == CloseCode.ABNORMAL
    assert conn.state is ConnectionState.CLOSED and core.stats.refused[403] == 1


def test_a_handshake_that_times_out_gets_503(core):
    hello(core)
    conn, _ = core.connect("echo", {}, "t")
    assert kinds(core.handshake_timed_out(conn)) == ["Refuse", "ToWorker"]
    assert core.reply(b"w1", wire.Accept(conn.id, "")) == [], "a late Accept is ignored"


def test_the_client_leaving_while_a_worker_decides(core):
    hello(core)
    conn, _ = core.connect("echo", {}, "t")
    actions = core.closed(conn)
    assert isinstance(only(actions, ToWorker).message, wire.Disconnect)
    assert core.reply(b"w1", wire.Accept(conn.id, "")) == []
    assert core.connections == {} and core.handshakes_pending == 0


def test_a_workers_close_overtaking_the_upgrade_closes_on_open(core):
    hello(core)
    conn, _ = core.connect("echo", {}, "t")
    core.reply(b"w1", wire.Accept(conn.id, ""))
    assert core.reply(b"w1", wire.Close(conn.id, 1011, "handler failed")) == []
    assert core.opened(conn) == [CloseClient(conn, 1011, "handler failed")]
    actions = core.closed(conn, received=(1000, ""))
    assert only(actions, ToWorker).message.code == 1011, "the code of the close this side started"
    assert core.stats.closed_by_code[1011] == 1


def test_a_worker_lost_mid_handshake_hands_it_to_the_next(core):
    hello(core, b"w1")
    hello(core, b"w2", load=3)
    conn, actions = core.connect("echo", {"path": "/echo"}, "t")
    assert only(actions, ToWorker).worker.identity == b"w1"
    actions = core.worker_event(b"w1", wire.Goodbye("w1"))
    retry = only(actions, ToWorker)
    assert retry.worker.identity == b"w2" and retry.message.request == {"path": "/echo"}
    assert only(actions, WorkerChanged).what == "lost"
    assert conn.state is ConnectionState.CONNECTING


def test_a_handshake_gives_up_after_three_lost_workers(core):
    for n in range(4):
        hello(core, f"w{n}".encode())
    conn, actions = core.connect("echo", {}, "t")
    for _ in range(2):
        actions = core.worker_lost(only(actions, ToWorker).worker, "killed")
    actions = core.worker_lost(only(actions, ToWorker).worker, "killed")
    assert only(actions, Refuse).status == 503


def test_a_worker_lost_while_upgrading_closes_with_1012_on_open(core):
    hello(core)
    conn, _ = core.connect("echo", {}, "t")
    core.reply(b"w1", wire.Accept(conn.id, ""))
    core.worker_lost(core.workers[b"w1"], "killed")
    assert core.opened(conn) == [CloseClient(conn, CloseCode.SERVICE_RESTART, "worker lost")]
    assert core.closed(conn) == [], "no worker left to tell"
    assert core.stats.closed_by_code[1012] == 1


def test_all_workers_at_capacity_upgrades_then_closes_with_1013(core):
    hello(core, capacity=1, load=1)
    conn, actions = core.connect("echo", {}, "t")
    assert actions == [Upgrade(conn, "")]
    assert core.opened(conn) == [CloseClient(conn, CloseCode.TRY_AGAIN_LATER, "all workers at capacity")]
    assert core.stats.connections_total == 0 and core.stats.refused[1013] == 1


def test_max_connections_counts_handshakes_under_way(clock):
    core = EdgeCore(resolve=lambda r: r, heartbeat_timeout=2, max_connections=2, clock=clock)
    hello(core)
    core.connect("a", {}, "t")
    core.connect("b", {}, "t")
    _, actions = core.connect("c", {}, "t")
    assert actions == [Refuse(None, 503, "too many connections")]


# -- traffic ---------------------------------------------------------------------------------


def test_client_frames_go_to_the_connections_worker_with_a_header_made_once(core):
    hello(core)
    conn = open_connection(core)
    first = only(core.received(conn, False, b"hi"), Forward)
    second = only(core.received(conn, True, b"\x00"), Forward)
    assert first.worker.identity == b"w1" and first.payload == b"hi"
    assert wire.decode([first.header, b"hi"]) == wire.Data(conn.id, "echo", False, b"hi")
    assert wire.decode([second.header, b"\x00"]).binary is True
    assert core.received(conn, False, b"again")[0].header is first.header
    assert core.stats.frames_in == 3


def test_socketio_events_go_to_the_worker_in_order_with_data_and_acks_come_back(core):
    hello(core)
    conn = open_connection(core)
    data = only(core.received(conn, False, b"first"), Forward)
    event = only(core.received_event(conn, "move", 3, b'[{"x":1}]'), Forward)
    assert event.worker is data.worker and event.conn is conn
    assert wire.decode([event.header, event.payload]) == wire.Event(conn.id, "echo", "move", 3, b'[{"x":1}]')
    assert core.stats.frames_in == 2, "an event counts as a client message"
    assert core.reply(b"w1", wire.EventAck(conn.id, 3, b"[42]")) == [Acknowledge(conn, 3, b"[42]")]
    assert core.reply(b"w1", wire.EventAck("e1.unknown", 1, b"[]")) == [], "an ack for a gone connection is dropped"
    core.reply(b"w1", wire.Close(conn.id, 1000, "bye"))
    assert core.received_event(conn, "late", -1, b"[]") == [], "nothing reaches the worker once closing"
    assert core.reply(b"w1", wire.EventAck(conn.id, 4, b"[]")) == [], "nor does an ack reach a closing client"


def test_nothing_reaches_the_worker_once_this_side_closes(core):
    hello(core)
    conn = open_connection(core)
    assert core.reply(b"w1", wire.Close(conn.id, 1000, "bye")) == [CloseClient(conn, 1000, "bye")]
    assert conn.state is ConnectionState.CLOSING and core.open_count == 0
    assert core.received(conn, False, b"late") == []
    assert core.reply(b"w1", wire.Send(conn.id, False, b"late")) == []
    assert core.reply(b"w1", wire.Close(conn.id, 1011, "again")) == [], "one close per connection"


def test_a_worker_lost_closes_its_open_connections_with_1012(core):
    hello(core, b"w1")
    hello(core, b"w2", load=9)
    mine, other = open_connection(core), open_connection(core)
    hello(core, b"w1", load=20)
    elsewhere = open_connection(core, worker=b"w2")
    actions = core.worker_lost(core.workers[b"w1"], "silent")
    closes = [a for a in actions if isinstance(a, CloseClient)]
    assert {c.conn.id for c in closes} == {mine.id, other.id} and {c.code for c in closes} == {1012}
    assert elsewhere.state is ConnectionState.OPEN
    assert core.received(elsewhere, False, b"x")[0].worker.identity == b"w2"


@pytest.mark.parametrize("received, clean, expected", [
    ((4001, "app"), False, (4001, "app")),
    (None, True, (1005, "")),
    (None, False, (1006, "connection dropped without a close frame")),
])
def test_how_a_connection_ended_is_recorded(core, received, clean, expected):
    hello(core)
    conn = open_connection(core)
    disconnect = only(core.closed(conn, received=received, clean=clean), ToWorker).message
    assert (disconnect.code, disconnect.reason) == expected
    assert core.stats.closed_by_code[expected[0]] == 1
    assert core.closed(conn) == [], "closed() is idempotent"


def test_groups_fan_out_to_open_members_once_and_forget_closed_ones(core):
    hello(core)
    a, b, c = (open_connection(core) for _ in range(3))
    for conn in (a, b):
        core.reply(b"w1", wire.Join(conn.id, "room"))
    core.reply(b"w1", wire.Join(a.id, "room"))
    actions = core.reply(b"sender", wire.GroupSend("room", b.id, False, b"news", "ref1"))
    assert only(actions, Deliver).targets == [a]
    assert only(actions, Answer) == Answer(b"sender", wire.Ack("ref1", "e1", 1))
    core.reply(b"w1", wire.Leave(a.id, "room"))
    core.closed(b)
    assert core.groups == {}, "an empty group is forgotten"
    actions = core.reply(b"sender", wire.GroupSend("room", "", False, b"news", "ref2"))
    assert kinds(actions) == ["Answer"] and actions[0].message.delivered == 0
    assert c.groups is None


def test_a_senders_stamp_and_trace_reach_the_deliver_and_a_replay_has_none(core):
    hello(core)
    conn = open_connection(core)
    core.reply(b"w1", wire.Join(conn.id, "g"))
    deliver = only(core.reply(b"s", wire.GroupSend("g", "", False, b"hi", "r", 1765000000123456, "00-t-s-01")), Deliver)
    assert (deliver.sent_at, deliver.trace, deliver.targets) == (1765000000123456, "00-t-s-01", [conn])
    deliver = only(core.reply(b"s", wire.SendTo(conn.id, False, b"hi", "r2", 17, "")), Deliver)
    assert deliver.sent_at == 17


def test_send_to_a_connection_and_presence_answer_the_sender(core):
    hello(core)
    conn = open_connection(core)
    core.reply(b"w1", wire.Join(conn.id, "g"))
    actions = core.reply(b"s", wire.SendTo(conn.id, False, b"hi", "r"))
    assert kinds(actions) == ["Deliver", "Answer"] and actions[1].message.delivered == 1
    assert core.reply(b"s", wire.SendTo("e1.gone", False, b"hi", "r1"))[0].message.delivered == 0
    members = only(core.reply(b"s", wire.Presence("r2", "g")), Answer).message
    assert members.members == {"ids": [conn.id]}


def test_a_sender_closes_one_connection_or_a_group_and_is_told_how_many(core):
    hello(core)
    a, b, c = open_connection(core), open_connection(core), open_connection(core)
    for conn in (a, b):
        core.reply(b"w1", wire.Join(conn.id, "g"))
    actions = core.reply(b"s", wire.CloseConnections(c.id, "", 4003, "banned", "r1"))
    assert actions == [CloseClient(c, 4003, "banned"), Answer(b"s", wire.Ack("r1", "e1", 1))]
    assert c.state is ConnectionState.CLOSING
    again = core.reply(b"s", wire.CloseConnections(c.id, "", 4003, "banned", "r2"))
    assert again == [Answer(b"s", wire.Ack("r2", "e1", 0))], "a closing connection is not closed twice"
    actions = core.reply(b"s", wire.CloseConnections("", "g", 1000, "room closed", "r3"))
    assert sorted(a.conn.id for a in actions if isinstance(a, CloseClient)) == sorted([a.id, b.id])
    assert only(actions, Answer).message.delivered == 2
    assert core.reply(b"w1", wire.CloseConnections("", "nobody", 1000, "", "")) == [], "no ref, no answer"


def test_a_close_from_the_broker_closes_without_answering(core):
    hello(core)
    conn = open_connection(core)
    core.reply(b"w1", wire.Join(conn.id, "g"))
    actions = core.broker_message(wire.CloseConnections("", "g", 4001, "bye", ""))
    assert actions == [CloseClient(conn, 4001, "bye")]


# -- workers falling behind --------------------------------------------------------------------


def test_a_full_queue_closes_the_connections_whose_frames_did_not_fit_with_1013(core):
    hello(core)
    a, b = open_connection(core), open_connection(core)
    actions = core.send_failed(core.workers[b"w1"], None, [a])
    assert actions == [CloseClient(a, CloseCode.TRY_AGAIN_LATER, "worker unavailable")]
    assert b.state is ConnectionState.OPEN


def test_a_disconnect_the_full_queue_refused_is_retried_each_tick(core, clock):
    hello(core)
    conn = open_connection(core)
    worker = core.workers[b"w1"]
    disconnect = only(core.closed(conn), ToWorker).message
    assert core.send_failed(worker, disconnect) == []
    clock.now += 0.5
    actions = core.tick()
    assert [a.message for a in actions] == [wire.Ping("e1"), disconnect]
    assert core.tick() == [ToWorker(worker, wire.Ping("e1"))], "sent once it went through"


def test_a_silent_worker_is_lost_at_the_next_tick(core, clock):
    hello(core, b"w1")
    hello(core, b"w2")
    clock.now += 1.0
    core.reply(b"w2", wire.Join("x", "g"))  # any reply is a sign of life
    clock.now += 1.5
    actions = core.tick()
    assert only(actions, WorkerChanged).worker.identity == b"w1"
    assert list(core.workers) == [b"w2"]


def test_shutdown_closes_every_open_client_with_1001(core):
    hello(core)
    a = open_connection(core)
    b, _ = core.connect("echo", {}, "t")
    core.reply(b"w1", wire.Accept(b.id, ""))
    assert core.shutdown() == [CloseClient(a, CloseCode.GOING_AWAY, "server shutdown")]
    assert core.opened(b) == [CloseClient(b, CloseCode.GOING_AWAY, "server shutdown")]


# -- rate limits ------------------------------------------------------------------------------


def test_an_address_over_its_limit_gets_429_with_retry_after_and_is_released_on_close(clock):
    from django_ws.edge.limits import LimitSettings

    core = EdgeCore(resolve=lambda r: r, heartbeat_timeout=2, clock=clock,
                    limits=LimitSettings(new_per_window=100, window=10, concurrent=2))
    hello(core)
    first = open_connection(core, route="a")
    open_connection(core, route="b")
    conn, actions = core.connect("c", {}, "t", address="10.0.0.1")
    assert conn is not None, "another address is not limited"
    conn, actions = core.connect("a", {}, "t", address="127.0.0.1")
    assert conn is not None
    core.connect("b", {}, "t", address="127.0.0.1")
    conn, actions = core.connect("c", {}, "t", address="127.0.0.1")
    (refusal,) = actions
    assert conn is None and refusal.status == 429 and refusal.headers["Retry-After"].isdigit()
    assert core.stats.rate_limited["concurrent"] == 1
    assert first.address is None, "a connection made without an address counts nowhere"
    limited = [c for c in core.connections.values() if c.address == "127.0.0.1"]
    core.closed(limited[0])
    conn, _ = core.connect("c", {}, "t", address="127.0.0.1")
    assert conn is not None, "its slot was released when the first one ended"



def _proxied(name="X-Forwarded-For"):
    return {"headers": [("Host", "example.com"), (name, "198.51.100.7")]}


@pytest.mark.parametrize("header", ["X-Forwarded-For", "X-Real-Ip", "x-real-ip"])
def test_a_limit_that_strikes_a_proxy_is_counted_each_time_and_logged_once_per_address(clock, caplog, header):
    from django_ws.edge.limits import LimitSettings

    core = EdgeCore(resolve=lambda r: r, heartbeat_timeout=2, clock=clock,
                    limits=LimitSettings(new_per_window=0, concurrent=1))
    hello(core)
    with caplog.at_level("WARNING", logger="django_ws.edge"):
        assert core.connect("a", _proxied(header), "t", address="10.0.0.1")[0] is not None
        for _ in range(5):
            conn, (refusal,) = core.connect("a", _proxied(header), "t", address="10.0.0.1")
            assert conn is None and refusal.status == 429
        core.connect("a", {"headers": [("Host", "example.com")]}, "t", address="10.0.0.1")  # no proxy header
        core.connect("a", _proxied(header), "t", address="10.0.0.2")
        core.connect("a", _proxied(header), "t", address="10.0.0.2")
    assert core.stats.rate_limited["concurrent"] == 7
    assert core.stats.proxy_limited == 6, "every refusal that carried a proxy header is counted"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2, f"one warning per address, not per refusal: {warnings}"
    assert "from 10.0.0.1 " in warnings[0] and "from 10.0.0.2 " in warnings[1], warnings
    assert "WS_TRUST_PROXY_HEADERS = True" in warnings[0], warnings[0]
    assert warnings[0].startswith("WS_CONNECTIONS_PER_ADDRESS refused"), warnings[0]


def test_a_proxy_warning_names_the_new_connections_limit_when_that_one_struck(clock, caplog):
    from django_ws.edge.limits import LimitSettings

    core = EdgeCore(resolve=lambda r: r, heartbeat_timeout=2, clock=clock,
                    limits=LimitSettings(new_per_window=1, window=10, concurrent=0))
    hello(core)
    with caplog.at_level("WARNING", logger="django_ws.edge"):
        core.connect("a", _proxied(), "t", address="10.0.0.1")
        core.connect("a", _proxied(), "t", address="10.0.0.1")
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith("WS_NEW_CONNECTIONS_PER_ADDRESS refused") and (
        "raise WS_NEW_CONNECTIONS_PER_ADDRESS" in warning), warning
    assert core.stats.proxy_limited == 1


def test_with_trusted_proxy_headers_a_refusal_is_one_clients_and_says_nothing(clock, caplog):
    from django_ws.edge.limits import LimitSettings

    core = EdgeCore(resolve=lambda r: r, heartbeat_timeout=2, clock=clock,
                    limits=LimitSettings(concurrent=1, trust_proxy_headers=True))
    hello(core)
    with caplog.at_level("WARNING", logger="django_ws.edge"):
        for _ in range(3):
            core.connect("a", _proxied(), "t", address="198.51.100.7")
    assert core.stats.rate_limited["concurrent"] == 2 and core.stats.proxy_limited == 0
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_the_addresses_a_proxy_warning_remembers_are_bounded(clock, caplog, monkeypatch):
    from django_ws.edge.core import admission
    from django_ws.edge.limits import LimitSettings

    monkeypatch.setattr(admission, "PROXY_WARNINGS_KEPT", 2)
    core = EdgeCore(resolve=lambda r: r, heartbeat_timeout=2, clock=clock, limits=LimitSettings(concurrent=1))
    hello(core)
    with caplog.at_level("WARNING", logger="django_ws.edge"):
        for n in range(5):
            for _ in range(2):
                core.connect("a", _proxied(), "t", address=f"10.0.0.{n}")
    assert len(core.admission.proxy_warned) == 2, "a scan from many addresses leaves a bounded record"
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 2
    assert core.stats.proxy_limited == 5, "the counter counts past the bound"

def test_a_connection_over_its_message_budget_is_failed_with_1008_and_its_worker_told_at_once(clock):
    from django_ws.edge.limits import LimitSettings

    core = EdgeCore(resolve=lambda r: r, heartbeat_timeout=2, clock=clock,
                    limits=LimitSettings(messages_per_window=3, message_window=1.0))
    hello(core)
    conn = open_connection(core, route="flood")
    for _ in range(3):
        assert kinds(core.received(conn, False, b"x")) == ["Forward"]
    actions = core.received(conn, False, b"x")
    close = only(actions, CloseClient)
    assert (close.code, close.fail) == (1008, True)
    assert only(actions, ToWorker).message.code == 1008, "the worker hears now, not when the client answers"
    assert core.closed(conn) == [] and core.stats.rate_limited["messages"] == 1


def test_a_retried_send_with_the_same_key_is_acknowledged_but_not_delivered_twice(core, clock):
    hello(core)
    conn = open_connection(core)
    core.reply(b"w1", wire.Join(conn.id, "g"))
    first = core.reply(b"s", wire.GroupSend("g", "", False, b"once", "key-1"))
    assert kinds(first) == ["Deliver", "Answer"]
    again = core.reply(b"s2", wire.GroupSend("g", "", False, b"once", "key-1"))
    assert again == [Answer(b"s2", wire.Ack("key-1", "e1", 1))], "the first delivery's count, nothing sent"
    clock.now += 61  # WS_SEND_KEY_TTL's default is 60 s
    assert kinds(core.reply(b"s", wire.GroupSend("g", "", False, b"once", "key-1"))) == ["Deliver", "Answer"]


# -- group history and recovery ---------------------------------------------------------

from django_ws.history import History, Position, Positions, parse_settings  # noqa: E402


@pytest.fixture
def hcore(clock):
    history = History(parse_settings({"chat.*": {"size": 5, "ttl": 60}}), epoch="ep", clock=clock)
    core = EdgeCore(resolve=lambda route: route if route in ROUTES else None, heartbeat_timeout=2.0,
                    edge_id="e1", history=history, clock=clock)
    hello(core)
    return core


def group_send(core, group, text, exclude=""):
    return core.reply(b"sender", wire.GroupSend(group, exclude, False, text.encode(), ""))


def delivered(actions, conn=None):
    """(payload, offset or 'resync') of every Deliver in ``actions`` (that reaches ``conn``)."""
    return [(a.payload.decode(), "resync" if a.position and a.position.resync else a.position and a.position.offset)
            for a in actions if isinstance(a, Deliver) and (conn is None or conn in a.targets)]


def reconnect(core, positions, route="chat/lobby"):
    """A client that comes back presenting ``positions``; its handshake is pending (CONNECTING)."""
    conn, actions = core.connect(route, {"path": "/" + route}, "t", positions=Positions(dict(positions)))
    assert isinstance(only(actions, ToWorker).message, wire.Connect)
    return conn


def test_messages_to_a_group_with_history_carry_their_position(hcore):
    conn = open_connection(hcore, "chat/lobby")
    hcore.reply(b"w1", wire.Join(conn.id, "chat.lobby"))
    hcore.reply(b"w1", wire.Join(conn.id, "plain"))
    assert delivered(group_send(hcore, "chat.lobby", "a")) == [("a", 1)]
    assert delivered(group_send(hcore, "chat.lobby", "b")) == [("b", 2)]
    assert delivered(group_send(hcore, "plain", "c")) == [("c", None)], "no pattern: no position"


def test_a_join_in_on_connect_replays_the_gap_then_the_live_messages_in_order(hcore):
    epoch = hcore.history.record("chat.lobby", False, b"m1").epoch
    for text in ("m2", "m3"):
        hcore.history.record("chat.lobby", False, text.encode())
    conn = reconnect(hcore, {"chat.lobby": (epoch, 1)})
    actions = hcore.reply(b"w1", wire.Join(conn.id, "chat.lobby"))
    assert actions == [ToWorker(hcore.workers[b"w1"], wire.Recovery(conn.id, "chat.lobby", True))], \
        "the replay waits for the upgrade; the worker hears the outcome now"
    # Live messages arrive during the handshake: they queue behind the replay.
    assert delivered(group_send(hcore, "chat.lobby", "m4")) == []
    assert hcore.reply(b"w1", wire.Accept(conn.id, "")) == [Upgrade(conn, "")]
    assert delivered(group_send(hcore, "chat.lobby", "m5")) == []
    assert delivered(hcore.opened(conn)) == [("m2", 2), ("m3", 3), ("m4", 4), ("m5", 5)]
    assert delivered(group_send(hcore, "chat.lobby", "m6")) == [("m6", 6)], "then live, exactly once"


def test_a_join_once_open_replays_at_once(hcore):
    epoch = hcore.history.record("chat.lobby", False, b"m1").epoch
    hcore.history.record("chat.lobby", False, b"m2")
    conn = reconnect(hcore, {"chat.lobby": (epoch, 0)})
    hcore.reply(b"w1", wire.Accept(conn.id, ""))
    assert hcore.opened(conn) == []
    actions = hcore.reply(b"w1", wire.Join(conn.id, "chat.lobby"))
    assert delivered(actions, conn) == [("m1", 1), ("m2", 2)]
    assert wire.Recovery(conn.id, "chat.lobby", True) in [a.message for a in actions if isinstance(a, ToWorker)]
    assert delivered(hcore.reply(b"w1", wire.Join(conn.id, "chat.lobby"))) == [], "a position is used once"


@pytest.mark.parametrize("gap", ["size", "ttl", "epoch"])
def test_a_gap_the_history_does_not_cover_gets_the_resync_signal(hcore, clock, gap):
    epoch = hcore.history.record("chat.lobby", False, b"m1").epoch
    presented = (epoch, 1)
    if gap == "size":
        for i in range(6):  # size 5: message 2 is gone
            hcore.history.record("chat.lobby", False, b"x")
    elif gap == "ttl":
        hcore.history.record("chat.lobby", False, b"m2")
        clock.now += 61
    else:
        hcore.history.record("chat.lobby", False, b"m2")
        presented = ("an-edge-before-a-restart-1", 1)
    conn = open_connection_with(hcore, {"chat.lobby": presented})
    actions = hcore.reply(b"w1", wire.Join(conn.id, "chat.lobby"))
    (resync,) = [a for a in actions if isinstance(a, Deliver)]
    assert resync.payload == b"" and resync.position == Position("chat.lobby", epoch, hcore.history.logs[
        "chat.lobby"].last, resync=True), "nothing is replayed; the signal says where the group stands"
    assert wire.Recovery(conn.id, "chat.lobby", False) in [a.message for a in actions if isinstance(a, ToWorker)]


def open_connection_with(core, positions):
    conn = reconnect(core, positions)
    core.reply(b"w1", wire.Accept(conn.id, ""))
    core.opened(conn)
    return conn


def test_a_position_for_a_group_the_handler_does_not_join_gives_nothing(hcore):
    epoch = hcore.history.record("chat.secret", False, b"s1").epoch
    hcore.history.record("chat.secret", False, b"s2")
    conn = open_connection_with(hcore, {"chat.secret": (epoch, 0)})
    actions = hcore.reply(b"w1", wire.Join(conn.id, "chat.lobby"))
    assert actions == [], "joining another group replays nothing of chat.secret"
    assert delivered(group_send(hcore, "chat.secret", "s3")) == [], "and it is not a member of it"


def test_a_plain_client_in_its_handshake_gets_no_group_message_as_before(hcore):
    conn, _ = hcore.connect("chat/lobby", {"path": "/chat/lobby"}, "t")
    hcore.reply(b"w1", wire.Join(conn.id, "chat.lobby"))
    group_send(hcore, "chat.lobby", "early")
    hcore.reply(b"w1", wire.Accept(conn.id, ""))
    assert hcore.opened(conn) == [], "only a client that asked for positions gets what was sent during its handshake"


def test_history_of_silent_groups_without_members_is_forgotten_on_tick(hcore, clock):
    conn = open_connection(hcore, "chat/lobby")
    hcore.reply(b"w1", wire.Join(conn.id, "chat.kept"))
    group_send(hcore, "chat.kept", "a")
    group_send(hcore, "chat.gone", "b")
    clock.now += 61
    hcore.reply(b"w1", wire.Hello("w1", 0, 1, "threaded"))
    hcore.tick()
    assert set(hcore.history.logs) == {"chat.kept"}
