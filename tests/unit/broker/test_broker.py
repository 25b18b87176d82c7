"""Cluster mode's pure parts: the core's broker events and actions, WS_BROKER, the packing of messages."""

from __future__ import annotations

import socket

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_ws import wire
from django_ws.broker import config
from django_ws.broker.discovery import announced_endpoint, announcement, reachable
from django_ws.broker.keys import Keys, pack, unpack
from django_ws.edge.core import CatchUp, Deliver, EdgeCore, FetchGap, MemberChanged, Subscribe, ToWorker, Unsubscribe
from django_ws.history import History, HistoryBound, Position, Positions

from tests.unit.edge.test_core import ROUTES, hello, open_connection


@pytest.fixture
def core(clock):
    return EdgeCore(resolve=lambda route: route if route in ROUTES else None, heartbeat_timeout=2.0,
                    edge_id="e1", cluster=True, clock=clock)


def test_the_first_member_subscribes_and_the_last_unsubscribes(core):
    hello(core)
    a, b = open_connection(core), open_connection(core)
    assert core.reply(b"w1", wire.Join(a.id, "room")) == [Subscribe("room"), MemberChanged("room", a.id, True)]
    assert core.reply(b"w1", wire.Join(b.id, "room")) == [MemberChanged("room", b.id, True)], "subscribed already"
    assert core.reply(b"w1", wire.Join(b.id, "room")) == [], "joining twice changes nothing"
    assert core.reply(b"w1", wire.Leave(a.id, "room")) == [MemberChanged("room", a.id, False)]
    assert core.reply(b"w1", wire.Leave(a.id, "room")) == [], "leaving twice changes nothing"
    assert core.reply(b"w1", wire.Leave(b.id, "room")) == [MemberChanged("room", b.id, False), Unsubscribe("room")]
    assert core.groups == {}


def test_a_member_that_closes_leaves_its_groups_in_the_broker_too(core):
    hello(core)
    a = open_connection(core)
    core.reply(b"w1", wire.Join(a.id, "room"))
    core.reply(b"w1", wire.Join(a.id, "other"))
    actions = core.closed(a, (1000, ""))
    assert MemberChanged("room", a.id, False) in actions and Unsubscribe("room") in actions
    assert MemberChanged("other", a.id, False) in actions and Unsubscribe("other") in actions


def test_without_a_broker_joins_return_no_broker_actions(clock):
    core = EdgeCore(resolve=lambda route: route, heartbeat_timeout=2.0, edge_id="e1", clock=clock)
    hello(core)
    a = open_connection(core)
    assert core.reply(b"w1", wire.Join(a.id, "room")) == []
    assert core.reply(b"w1", wire.Leave(a.id, "room")) == []


def test_a_group_message_from_the_broker_reaches_each_local_member_once_but_the_excluded(core):
    hello(core)
    a, b, c = open_connection(core), open_connection(core), open_connection(core)
    for conn in (a, b):
        core.reply(b"w1", wire.Join(conn.id, "room"))
    actions = core.broker_message(wire.GroupSend("room", "", False, b"hi", ""))
    assert len(actions) == 1 and set(actions[0].targets) == {a, b}, f"each member once: {actions}"
    actions = core.broker_message(wire.GroupSend("room", a.id, False, b"hi", ""))
    assert actions == [Deliver([b], False, b"hi")], "exclude= still works"
    assert core.broker_message(wire.SendTo(c.id, True, b"direct", "")) == [Deliver([c], True, b"direct")]
    assert core.broker_message(wire.SendTo("e1.999", True, b"x", "")) == []


def test_a_broker_message_with_a_ref_is_not_acknowledged_nor_remembered(core):
    hello(core)
    a = open_connection(core)
    core.reply(b"w1", wire.Join(a.id, "room"))
    message = wire.GroupSend("room", "", False, b"hi", "some-key")
    for _ in range(2):  # the broker deduplicates keys: the edge delivers what it is given
        assert core.broker_message(message) == [Deliver([a], False, b"hi")]


def test_anything_else_from_the_broker_is_dropped(core):
    assert core.broker_message(wire.Ping("e2")) == []


# -- WS_BROKER -------------------------------------------------------------------------------


def test_a_url_is_read_and_its_password_never_shown():
    broker = config.parse("redis://app:s3cret@redis.internal:6380/2")
    assert broker.url == "redis://app:s3cret@redis.internal:6380/2"
    assert broker.name == "redis://app:***@redis.internal:6380/2"
    assert config.parse("rediss://:pw@h:6379/0").name == "rediss://:***@h:6379/0"
    assert config.parse("redis://h:6379/0").name == "redis://h:6379/0"
    assert config.parse(None) is None and config.parse("") is None


def test_a_sentinel_dict_is_read():
    broker = config.parse({"sentinels": [("s1", 26379), ["s2", 26380]], "service_name": "mymaster", "db": 1,
                           "password": "pw", "ssl": True})
    assert broker.sentinels == (("s1", 26379), ("s2", 26380)) and broker.service_name == "mymaster"
    assert broker.db == 1 and broker.ssl and "pw" not in broker.name
    assert broker.name == "sentinel mymaster@s1:26379,s2:26380/1"


@pytest.mark.parametrize("value, says", [
    ("http://h:6379", "redis://"),
    ("redis://", "redis://"),
    ("redis://:pw@h:99999/0", "bad port"),
    (42, "not int"),
    ({"service_name": "m"}, "sentinels"),
    ({"sentinels": [("h", "26379")], "service_name": "m"}, "sentinels"),
    ({"sentinels": [("h", 26379)]}, "service_name"),
    ({"sentinels": [("h", 26379)], "service_name": "m", "db": -1}, "db"),
    ({"sentinels": [("h", 26379)], "service_name": "m", "hosts": 1}, "unknown keys ['hosts']"),
])
def test_a_bad_broker_setting_says_what_is_wrong(value, says):
    with pytest.raises(ImproperlyConfigured, match=None) as failed:
        config.parse(value)
    assert says in str(failed.value), f"{says!r} in {failed.value}"
    assert "pw" not in str(failed.value), "no password in an error"


@pytest.mark.parametrize("lease", [0, 0.1, "10", True, None])
def test_a_bad_lease_is_refused(settings, lease):
    settings.WS_BROKER_LEASE = lease
    with pytest.raises(ImproperlyConfigured, match="WS_BROKER_LEASE"):
        config.lease()


# -- keys, messages, announcements ---------------------------------------------------------------


def test_messages_survive_packing_and_garbage_does_not_decode():
    for message in (wire.GroupSend("room", "e1.2", True, b"\x00\xff", ""), wire.SendTo("e1.1", False, b"", "")):
        assert unpack(pack(message)) == (message, None)
    positioned = b"\x00\x00\x00\x0a@e-1f 4321" + pack(wire.GroupSend("g", "", False, b"x", ""))
    assert unpack(positioned) == (wire.GroupSend("g", "", False, b"x", ""), ("e-1f", 4321))
    for garbage in (b"", b"\x00\x00", b"\x00\x00\x00\x09abc", pack(wire.Ping("e"))[:-1],
                    b"\x00\x00\x00\x03@e " + pack(wire.Ping("e"))):
        with pytest.raises(wire.ProtocolError):
            unpack(garbage)


def test_every_key_and_channel_starts_with_the_prefix():
    keys = Keys("proj:")
    names = [keys.edges, keys.events, keys.lease("e1"), keys.group_channel("g"), keys.direct_channel("e1"),
             keys.members("g"), keys.send_key("k")]
    assert all(name.startswith("proj:") for name in names) and len(set(names)) == len(names)


def test_an_edge_bound_to_every_address_announces_the_host_it_is_given():
    assert announced_endpoint("tcp://0.0.0.0:5555", "10.0.0.7") == "tcp://10.0.0.7:5555"
    assert announced_endpoint("tcp://10.0.0.7:5555", None) == "tcp://10.0.0.7:5555"
    assert announced_endpoint("tcp://*:5555", "fd00::7") == "tcp://[fd00::7]:5555"
    assert announced_endpoint("ipc:///tmp/ws_push", "10.0.0.7") == "ipc:///tmp/ws_push"
    with pytest.raises(ImproperlyConfigured, match="--announce-host"):
        announced_endpoint("tcp://0.0.0.0:5555", None)
    with pytest.raises(ImproperlyConfigured, match="--announce-host"):
        announcement("e1", "tcp://h:1", "tcp://h:2", "bad host/x", None)


def test_an_ipc_edge_is_only_followed_from_its_own_host():
    here = announcement("e1", "ipc:///tmp/p", "ipc:///tmp/s", None, None)
    assert here["host"] == socket.gethostname() and reachable(here)
    assert not reachable(dict(here, hostname="elsewhere"))
    assert reachable(announcement("e3", "ipc:///tmp/p", "ipc:///tmp/s", "10.0.0.9", None)), (
        "an announced host changes nothing for ipc://: the machine is what counts")
    assert reachable(announcement("e2", "tcp://10.0.0.1:1", "tcp://10.0.0.1:2", None, "KEY"))


# -- history kept by the broker --------------------------------------------------------------


@pytest.fixture
def history_core(clock):
    return EdgeCore(resolve=lambda route: route, heartbeat_timeout=2.0, edge_id="e1", cluster=True, clock=clock,
                    history=History([("hist.*", HistoryBound(100, 300))], clock=clock))


def recovering(core, since):
    """An open connection whose client presented ``since`` ({group: (epoch, offset)})."""
    hello(core)
    conn, _ = core.connect("echo", {}, "t", positions=Positions(dict(since)))
    core.reply(b"w1", wire.Accept(conn.id, ""))
    core.opened(conn)
    return conn


def positioned(core, n, epoch="E"):
    return core.broker_message(wire.GroupSend("hist.x", "", False, b"m%d" % n, ""), (epoch, n))


def delivered(actions):
    return [(a.payload, a.position.offset if a.position else None) for a in actions if isinstance(a, Deliver)]


def test_a_client_with_a_position_has_its_gap_fetched_and_live_messages_held_meanwhile(history_core):
    conn = recovering(history_core, {"hist.x": ("E", 3)})
    actions = history_core.reply(b"w1", wire.Join(conn.id, "hist.x"))
    assert FetchGap(conn, "hist.x", "E", 3) in actions and Subscribe("hist.x") in actions
    assert positioned(history_core, 5) == [] and positioned(history_core, 6) == [], "held until the gap is in"
    # The broker's answer: the group stood at 5 when it read the gap (4 and 5), so 5 is not delivered twice.
    actions = history_core.gap_fetched(conn.id, "hist.x", "E", 5, [(4, False, b"m4"), (5, False, b"m5")])
    assert delivered(actions) == [(b"m4", 4), (b"m5", 5), (b"m6", 6)]
    assert [a.message for a in actions if isinstance(a, ToWorker)] == [wire.Recovery(conn.id, "hist.x", True)]
    assert delivered(positioned(history_core, 7)) == [(b"m7", 7)], "live again"


def test_a_live_message_the_replay_gave_already_is_not_delivered_to_that_client_again(history_core):
    # The gap is read on the command connection, live messages come on the subscription (another
    # connection): the answer can overtake a message published just before it (found by bench/soak.py).
    hello(history_core)
    staying = recovering(history_core, {})
    history_core.reply(b"w1", wire.Join(staying.id, "hist.x"))
    assert delivered(positioned(history_core, 3)) == [(b"m3", 3)]
    back = recovering(history_core, {"hist.x": ("E", 2)})
    history_core.reply(b"w1", wire.Join(back.id, "hist.x"))
    actions = history_core.gap_fetched(back.id, "hist.x", "E", 5, [(3, False, b"m3"), (4, False, b"m4"),
                                                                  (5, False, b"m5")])
    assert delivered(actions) == [(b"m3", 3), (b"m4", 4), (b"m5", 5)]
    assert back.replayed_to == {"hist.x": ("E", 5)}, "the subscription has brought 3 only"
    for n in (4, 5):
        deliver, = positioned(history_core, n)
        assert deliver.targets == [staying], f"m{n} live to the member that was there, not to the replayed one"
    deliver, = positioned(history_core, 6)
    assert set(deliver.targets) == {staying, back} and back.replayed_to is None, "past the replay: live for both"


def test_a_replay_the_subscription_has_passed_needs_no_mark_and_leaving_drops_one(history_core):
    hello(history_core)
    staying = recovering(history_core, {})
    history_core.reply(b"w1", wire.Join(staying.id, "hist.x"))
    positioned(history_core, 5)
    back = recovering(history_core, {"hist.x": ("E", 3)})
    history_core.reply(b"w1", wire.Join(back.id, "hist.x"))
    history_core.gap_fetched(back.id, "hist.x", "E", 5, [(4, False, b"m4"), (5, False, b"m5")])
    assert back.replayed_to is None
    again = recovering(history_core, {"hist.x": ("E", 3)})
    history_core.reply(b"w1", wire.Join(again.id, "hist.x"))
    history_core.gap_fetched(again.id, "hist.x", "E", 7, [(4, False, b"m4"), (5, False, b"m5"),
                                                          (6, False, b"m6"), (7, False, b"m7")])
    assert again.replayed_to == {"hist.x": ("E", 7)}
    history_core.reply(b"w1", wire.Leave(again.id, "hist.x"))
    assert again.replayed_to is None, "no record outlives the membership it is about"


def test_a_live_message_a_catch_up_gave_already_is_not_delivered_again(history_core):
    hello(history_core)
    member = recovering(history_core, {})
    history_core.reply(b"w1", wire.Join(member.id, "hist.x"))
    positioned(history_core, 1)
    history_core.broker_resumed()
    history_core.gap_fetched(None, "hist.x", "E", 3, [(2, False, b"m2"), (3, False, b"m3")])
    assert positioned(history_core, 3) == [], "m3 came with the catch-up, ahead of the subscription"
    assert delivered(positioned(history_core, 4)) == [(b"m4", 4)]


def test_a_gap_the_broker_does_not_cover_gives_the_resync_signal_then_the_held_messages(history_core):
    conn = recovering(history_core, {"hist.x": ("OLD", 3)})
    history_core.reply(b"w1", wire.Join(conn.id, "hist.x"))
    positioned(history_core, 9)
    actions = history_core.gap_fetched(conn.id, "hist.x", "E", 8, None)
    resync = next(a for a in actions if isinstance(a, Deliver))
    assert resync.position == Position("hist.x", "E", 8, resync=True)
    assert delivered(actions)[1:] == [(b"m9", 9)]
    assert [a.message for a in actions if isinstance(a, ToWorker)] == [wire.Recovery(conn.id, "hist.x", False)]


def test_a_gap_answered_after_the_client_left_the_group_or_closed_changes_nothing(history_core):
    conn = recovering(history_core, {"hist.x": ("E", 3)})
    history_core.reply(b"w1", wire.Join(conn.id, "hist.x"))
    history_core.reply(b"w1", wire.Leave(conn.id, "hist.x"))
    assert history_core.gap_fetched(conn.id, "hist.x", "E", 5, [(4, False, b"m4")]) == []
    assert conn.holding is None
    history_core.closed(conn, (1000, ""))
    assert history_core.gap_fetched(conn.id, "hist.x", "E", 5, []) == []


def test_the_edge_keeps_no_history_of_its_own_in_a_cluster(history_core):
    hello(history_core)
    conn = open_connection(history_core)
    history_core.reply(b"w1", wire.Join(conn.id, "hist.x"))
    assert delivered(history_core.broker_message(wire.GroupSend("hist.x", "", False, b"plain", ""))) == [
        (b"plain", None)]
    assert history_core.history.logs == {}, "positions come from the broker, not from a log here"


def test_back_from_a_broker_outage_the_edge_catches_up_its_groups_with_history(history_core):
    hello(history_core)
    plain, enveloped = open_connection(history_core), recovering(history_core, {})
    for conn in (plain, enveloped):
        history_core.reply(b"w1", wire.Join(conn.id, "hist.x"))
    positioned(history_core, 1)
    actions = history_core.broker_resumed()
    assert actions == [CatchUp("hist.x", "E", 1)]
    assert positioned(history_core, 4) == [], "held until caught up"
    actions = history_core.gap_fetched(None, "hist.x", "E", 3, [(2, False, b"m2"), (3, False, b"m3")])
    assert delivered(actions) == [(b"m2", 2), (b"m3", 3), (b"m4", 4)], "what the edge missed, then the held one"
    assert all(set(a.targets) == {plain, enveloped} for a in actions)
    assert delivered(positioned(history_core, 5)) == [(b"m5", 5)]


def test_a_history_lost_in_the_outage_tells_the_clients_with_positions_to_resync(history_core):
    hello(history_core)
    plain, enveloped = open_connection(history_core), recovering(history_core, {})
    for conn in (plain, enveloped):
        history_core.reply(b"w1", wire.Join(conn.id, "hist.x"))
    positioned(history_core, 7)
    history_core.broker_resumed()
    positioned(history_core, 1, epoch="NEW")
    actions = history_core.gap_fetched(None, "hist.x", "NEW", 0, None)
    resync, live = actions
    assert resync.targets == [enveloped] and resync.position == Position("hist.x", "NEW", 0, resync=True), (
        "only a client that asked for positions gets the signal (a plain one would see an empty message)")
    assert set(live.targets) == {plain, enveloped} and live.position == Position("hist.x", "NEW", 1)
    assert history_core.broker_resumed() == [CatchUp("hist.x", "NEW", 1)], "the new epoch is where it stands"


def test_a_client_that_recovered_on_its_own_during_the_catch_up_is_not_told_twice(history_core):
    hello(history_core)
    staying = recovering(history_core, {})
    history_core.reply(b"w1", wire.Join(staying.id, "hist.x"))
    positioned(history_core, 7)
    history_core.broker_resumed()
    back = recovering(history_core, {"hist.x": ("OLD", 3)})
    history_core.reply(b"w1", wire.Join(back.id, "hist.x"))
    history_core.gap_fetched(back.id, "hist.x", "NEW", 2, None)  # resynced to NEW:2 on its own
    positioned(history_core, 2, epoch="NEW")
    positioned(history_core, 3, epoch="NEW")
    actions = history_core.gap_fetched(None, "hist.x", "NEW", 1, None)
    resync = actions[0]
    assert resync.targets == [staying], "only the client that was there before the outage is told"
    assert [(a.payload, set(a.targets)) for a in actions[1:]] == [(b"m2", {staying}), (b"m3", {staying, back})]


# -- presence events ---------------------------------------------------------------------------


def diffs(actions):
    return [(a.message.conn_id, a.message.diff) for a in actions
            if isinstance(a, ToWorker) and isinstance(a.message, wire.PresenceDiff)]


@pytest.mark.parametrize("cluster", [False, True])
def test_a_watcher_hears_each_join_and_leave_of_its_group(clock, cluster):
    core = EdgeCore(resolve=lambda route: route, heartbeat_timeout=2.0, edge_id="e1", cluster=cluster, clock=clock)
    hello(core)
    watcher, a = open_connection(core), open_connection(core)
    actions = core.reply(b"w1", wire.Watch(watcher.id, "room", True))
    assert actions == ([Subscribe("room", presence=True)] if cluster else [])
    assert diffs(core.reply(b"w1", wire.Join(a.id, "room"))) == [(watcher.id, {"joined": [a.id], "left": []})]
    assert diffs(core.reply(b"w1", wire.Join(a.id, "room"))) == [], "a second join changes nothing"
    assert diffs(core.closed(a, (1000, ""))) == [(watcher.id, {"joined": [], "left": [a.id]})]
    assert diffs(core.remote_presence("room", "e2", ["e2.5"], [])) == [(watcher.id, {"joined": ["e2.5"], "left": []})]
    assert core.remote_presence("room", "e1", ["e1.9"], []) == [], "this edge's own changes were told already"
    actions = core.reply(b"w1", wire.Watch(watcher.id, "room", False))
    assert actions == ([Unsubscribe("room", presence=True)] if cluster else [])
    b = open_connection(core)
    assert diffs(core.reply(b"w1", wire.Join(b.id, "room"))) == [], "no longer watching"


def test_a_watcher_that_closes_stops_watching(core):
    hello(core)
    watcher, a = open_connection(core), open_connection(core)
    core.reply(b"w1", wire.Watch(watcher.id, "room", True))
    assert Unsubscribe("room", presence=True) in core.closed(watcher, (1000, ""))
    assert core.watchers == {} and diffs(core.reply(b"w1", wire.Join(a.id, "room"))) == []


def test_a_bad_broker_setting_is_a_system_check_error_and_none_is_fine(settings):
    from django_ws.checks import check_broker

    assert check_broker(None) == []  # no WS_BROKER: nothing to check, redis-py not needed
    settings.WS_BROKER = "redis://127.0.0.1:6379/0"
    assert check_broker(None) == []
    settings.WS_BROKER_LEASE = 0
    assert [e.id for e in check_broker(None)] == ["django_ws.E009"]
    settings.WS_BROKER_LEASE = 10
    settings.WS_BROKER = "http://:pw@nowhere"
    errors = check_broker(None)
    assert [e.id for e in errors] == ["django_ws.E009"] and "pw" not in errors[0].msg


def test_a_group_without_a_message_since_its_first_member_joined_resyncs_after_an_outage(history_core):
    enveloped = recovering(history_core, {})
    history_core.reply(b"w1", wire.Join(enveloped.id, "hist.x"))
    assert history_core.broker_resumed() == [CatchUp("hist.x", "", 0)], "no position known: ask from nothing"
    resync, = history_core.gap_fetched(None, "hist.x", "E", 4, None)
    assert resync.targets == [enveloped] and resync.position == Position("hist.x", "E", 4, resync=True)


# -- a following worker: which unannounced edges it drops -----------------------------------------


@pytest.fixture
def following_worker(tmp_path):
    from django_ws import sending
    from django_ws.worker.modes import ThreadedMode
    from django_ws.worker.server import Worker

    previous = sending.use_route(sending.EdgeRoute())
    worker = Worker(ThreadedMode(), [])  # installs its own route: put the previous one back after
    yield worker
    sending.use_route(previous)
    for link in worker.links:
        link.close()
    worker.context.term()


def announced(tmp_path, name: str) -> dict:
    return {"id": name, "push": f"ipc://{tmp_path}/{name}-push", "sub": f"ipc://{tmp_path}/{name}-sub"}


def test_an_edge_whose_lease_lapsed_is_kept_while_it_is_heard_from(following_worker, tmp_path):
    """Too busy to renew is not dead: the worker keeps the edge, and its connections, until it falls silent."""
    import time

    worker = following_worker
    worker.follow({"busy": announced(tmp_path, "busy")})
    link = worker.followed["busy"]
    link.last_seen = time.monotonic()  # it pinged just now
    worker.follow({})
    assert worker.followed == {"busy": link} and "busy" in worker.lapsed_but_alive, "kept, and warned of"
    link.last_seen = time.monotonic() - worker.heartbeat_timeout - 1  # now silent as well: dead
    worker.follow({})
    assert worker.followed == {} and link not in worker.links, "dropped once silent"


def test_an_edge_that_withdrew_is_dropped_at_once(following_worker, tmp_path):
    import time

    worker = following_worker
    worker.follow({"leaving": announced(tmp_path, "leaving")})
    worker.followed["leaving"].last_seen = time.monotonic()
    worker.withdrawn.add("leaving")
    worker.follow({"leaving": announced(tmp_path, "leaving")})  # a read from before it withdrew
    assert "leaving" in worker.followed, "still announced in that read: kept"
    worker.follow({})
    assert worker.followed == {} and worker.withdrawn == set(), "dropped on the first read without it"


def test_the_record_counts_follow_connections_and_groups_and_empty_when_they_end(history_core):
    hello(history_core)
    conn = recovering(history_core, {"hist.x": ("E", 3)})
    history_core.reply(b"w1", wire.Join(conn.id, "hist.x"))
    history_core.gap_fetched(conn.id, "hist.x", "E", 5, [(4, False, b"m4"), (5, False, b"m5")])
    records = history_core.record_counts()
    assert (records["connections"], records["groups"], records["group_members"], records["worker_connections"]) == (
        1, 1, 1, 1), records
    history_core.closed(conn, (1000, ""))
    assert all(count == 0 for count in history_core.record_counts().values()), history_core.record_counts()
