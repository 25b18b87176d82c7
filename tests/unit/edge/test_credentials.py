"""Credentials that end, in the edge's core: the record keeps them, a tick closes what expired, a refresh defers it."""

from __future__ import annotations

from django_ws import credentials, wire
from django_ws.codes import CloseCode
from django_ws.edge.core import CloseClient, EdgeCore, ToWorker, Upgrade
from tests.unit.edge.test_core import ROUTES, hello, only, open_connection


def make_core(clock, cluster=False):
    return EdgeCore(resolve=lambda route: route if route in ROUTES else None, heartbeat_timeout=60.0,
                    edge_id="e1", clock=clock, cluster=cluster)


def tied_connection(core, user="7", session="", expires_ms=3000):
    hello(core)
    conn, _ = core.connect("echo", {}, "t")
    assert core.reply(b"w1", wire.Credentials(conn.id, user, session, expires_ms)) == []
    assert core.reply(b"w1", wire.Accept(conn.id, "")) == [Upgrade(conn, "")]
    core.opened(conn)
    return conn


def test_the_record_keeps_user_session_and_expiry_and_joins_their_groups(clock):
    core = make_core(clock)
    conn = tied_connection(core, "7", "abc", 3000)
    assert (conn.user, conn.session, conn.expires) == ("7", "abc", clock() + 3)
    assert [c.id for c in core.members_of(credentials.user_group("7"))] == [conn.id]
    assert [c.id for c in core.members_of(credentials.session_group("abc"))] == [conn.id]


def test_an_expired_token_closes_with_1008_at_the_first_tick_after_and_the_worker_hears(clock):
    core = make_core(clock)
    conn = tied_connection(core)
    clock.now += 2.9
    assert closes(core.tick()) == [], "not yet"
    clock.now += 0.2
    actions = core.tick()
    assert only(actions, CloseClient) == CloseClient(conn, CloseCode.POLICY_VIOLATION, "token expired", False)
    assert [a.message.reason for a in actions if isinstance(a, ToWorker) and isinstance(a.message, wire.Disconnect)
            ] == ["token expired"]
    assert core.expiring == {} and core.connections == {}


def test_a_refresh_goes_to_the_worker_and_its_credentials_push_the_expiry_back(clock):
    core = make_core(clock)
    conn = tied_connection(core)
    actions = core.received(conn, False, b'{"dws_token": "fresh"}')
    assert only(actions, ToWorker).message == wire.Refresh(conn.id, "echo", "fresh")
    clock.now += 2
    core.reply(b"w1", wire.Credentials(conn.id, "7", "", 3000))
    clock.now += 2
    assert closes(core.tick()) == [], "the fresh token holds it open"
    clock.now += 1.5
    assert only(core.tick(), CloseClient).reason == "token expired"


def test_only_a_connection_whose_token_expires_reads_refresh_messages(clock):
    core = make_core(clock)
    hello(core)
    conn = open_connection(core)
    assert kinds_of(core.received(conn, False, b'{"dws_token": "x"}')) == ["Forward"], "the handler's message"
    tied = tied_connection(core, expires_ms=3000)
    for message in (b'{"dws_token": "x", "more": 1}', b'{"dws_token": 3}', b'{"dws_token"', b"hello"):
        assert kinds_of(core.received(tied, False, message)) == ["Forward"], message
    assert kinds_of(core.received(tied, True, b'{"dws_token": "x"}')) == ["Forward"], "binary is data"


def test_a_socketio_refresh_event_and_a_bad_one(clock):
    core = make_core(clock)
    conn = tied_connection(core)
    assert only(core.received_event(conn, "dws_token", -1, b'["fresh"]'), ToWorker).message.token == "fresh"
    actions = core.received_event(conn, "dws_token", -1, b"[1, 2]")
    assert only(actions, CloseClient).code == CloseCode.POLICY_VIOLATION


def test_a_connection_that_ends_leaves_no_expiry_behind(clock):
    core = make_core(clock)
    conn = tied_connection(core)
    core.closed(conn)
    assert core.expiring == {} and core.members_of(credentials.user_group("7")) == []


def test_a_close_group_of_the_users_group_closes_its_connections(clock):
    core = make_core(clock)
    conn = tied_connection(core, "7", "", 0)
    other = tied_connection(core, "8", "", 0)
    actions = core.reply(b"s", wire.CloseConnections("", credentials.user_group("7"), 1008, "user deactivated", ""))
    assert actions == [CloseClient(conn, 1008, "user deactivated", False)] and other.state.value == "open"
    assert core.expiring == {}, "no expiry: nothing to sweep"


def test_cluster_mode_subscribes_the_users_group(clock):
    core = make_core(clock, cluster=True)
    hello(core)
    conn, _ = core.connect("echo", {}, "t")
    actions = core.reply(b"w1", wire.Credentials(conn.id, "7", "", 0))
    assert any(getattr(a, "group", None) == credentials.user_group("7") for a in actions), actions


def closes(actions):
    return [a for a in actions if isinstance(a, CloseClient)]


def kinds_of(actions):
    return [type(a).__name__ for a in actions]
