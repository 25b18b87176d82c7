"""Users' presence: the pure counts and window (django_ws.presence), and the edge core telling each user once."""

from __future__ import annotations

import pytest

from django_ws import wire
from django_ws.edge.core import Answer, FlushPresenceLater, ToWorker
from django_ws.presence import Coalescer, UserCounts, check_info, merge_pages
from tests.unit.edge.test_core import core, hello, only, open_connection  # noqa: F401  (fixture)


def test_a_user_is_one_entry_with_a_count_and_joins_and_leaves_once():
    users = UserCounts()
    assert users.add("c1", "7", {"username": "alice"}) is True
    assert users.add("c2", "7", {"username": "alice"}) is False
    assert users.add("c3", "8", {"username": "bob"}) is True
    assert users.page(10) == {"users": {"7": {"info": {"username": "alice"}, "connections": 2},
                                        "8": {"info": {"username": "bob"}, "connections": 1}}, "next": None}
    assert users.page(1) == {"users": {"7": {"info": {"username": "alice"}, "connections": 2}}, "next": "7"}
    assert users.page(1, after="7")["users"].keys() == {"8"}
    assert users.remove("c1") is None, "alice still has a connection"
    assert users.remove("c2") == "7"
    assert users.remove("c2") is None and len(users) == 1


def test_pages_of_several_edges_merge_into_one_exact_page():
    a = UserCounts()
    b = UserCounts()
    for n in range(6):
        a.add(f"a{n}", f"u{n}", {})
    for n in range(3, 9):
        b.add(f"b{n}", f"u{n}", {})
    first = merge_pages([a.page(4), b.page(4)], 4)
    assert list(first["users"]) == ["u0", "u1", "u2", "u3"] and first["users"]["u3"]["connections"] == 2
    second = merge_pages([a.page(4, first["next"]), b.page(4, first["next"])], 4)
    assert list(second["users"]) == ["u4", "u5", "u6", "u7"] and second["users"]["u5"]["connections"] == 2
    last = merge_pages([a.page(4, second["next"]), b.page(4, second["next"])], 4)
    assert last == {"users": {"u8": {"info": {}, "connections": 1}}, "next": None}


def test_the_window_tells_the_net_change():
    window = Coalescer()
    assert window.note("g", {"7": {"v": 1}}, []) is True, "the first change opens the window"
    assert window.note("g", {"8": {}}, []) is False
    window.note("g", {}, ["8"])  # came and went within the window: never told
    window.note("g", {}, ["9"])  # was there before
    window.note("g", {"7": {"v": 2}}, [])
    assert window.drain() == {"g": ({"7": {"v": 2}}, ["9"])}
    assert not window and window.drain() == {}


@pytest.mark.parametrize("info, why", [([1], "a dict"), ({"x": object()}, "JSON-serialisable"),
                                       ({"x": "y" * 100}, "WS_PRESENCE_INFO_MAX allows 50")])
def test_info_must_be_a_small_json_object(info, why):
    with pytest.raises(ValueError, match=why):
        check_info(info, 50)


def test_the_edge_tells_a_user_once_per_window_and_answers_counts_without_ids(core):  # noqa: F811
    hello(core)
    watcher, tab1, tab2, bob = (open_connection(core) for _ in range(4))
    core.reply(b"w1", wire.Watch(watcher.id, "room", True))
    first = core.reply(b"w1", wire.JoinAs(tab1.id, "room", "7", {"username": "alice"}))
    assert only(first, FlushPresenceLater).delay == 0.1
    assert not any(isinstance(a, FlushPresenceLater) for a in core.reply(b"w1", wire.JoinAs(tab2.id, "room", "7",
                                                                                              {"username": "alice"})))
    core.reply(b"w1", wire.JoinAs(bob.id, "room", "8", {"username": "bob"}))
    told = [a.message for a in core.flush_presence() if isinstance(a, ToWorker)]
    assert told == [wire.UserPresenceDiff(watcher.id, "room", {
        "joined": {"7": {"username": "alice"}, "8": {"username": "bob"}}, "left": []})], "one message per window"
    left = core.reply(b"w1", wire.Leave(tab1.id, "room"))
    assert [type(a.message) for a in left] == [wire.PresenceDiff], "on_presence still hears the connection leave"
    assert core.flush_presence() == [], "alice's first tab leaving tells no user change"
    core.reply(b"w1", wire.Leave(tab2.id, "room"))
    assert [a.message.diff for a in core.flush_presence()] == [{"joined": {}, "left": ["7"]}], "her last: once"
    counts = only(core.reply(b"s", wire.PresenceQuery("r", "room", "count", 0, "")), Answer).message.members
    assert counts == {"size": 1, "users": 1}
    page = only(core.reply(b"s", wire.PresenceQuery("r", "room", "users", 10, "")), Answer).message.members
    assert page == {"users": {"8": {"info": {"username": "bob"}, "connections": 1}}, "next": None}


class _Joins:
    """A handler's connection that records its joins (the HandlerConnection members join() uses)."""

    id = "e.1"
    args: tuple = ()
    kwargs: dict = {}

    def __init__(self, user):
        from types import SimpleNamespace

        self.request = SimpleNamespace(user=user)
        self.joins: list = []

    def join(self, group):
        self.joins.append((group,))

    def join_as(self, group, user, info):
        self.joins.append((group, user, info))


@pytest.mark.django_db
def test_a_handler_joins_as_its_user_and_refuses_too_large_info_in_the_call(settings):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import AnonymousUser

    from django_ws import WebSocketHandler

    alice = get_user_model().objects.create_user("alice")
    connection = _Joins(alice)
    handler = WebSocketHandler(connection)
    handler.join("room", presence=True)
    handler.join("room", presence={"username": "Alice", "status": "away"})
    handler.join("plain")
    assert connection.joins == [("room", str(alice.pk), {"username": "alice"}),
                                ("room", str(alice.pk), {"username": "Alice", "status": "away"}), ("plain",)]
    settings.WS_PRESENCE_INFO_MAX = 20
    with pytest.raises(ValueError, match="presence info is 30 bytes as JSON; WS_PRESENCE_INFO_MAX allows 20"):
        handler.update_presence("room", {"username": "alice" * 3})
    anonymous = _Joins(AnonymousUser())
    WebSocketHandler(anonymous).join("room", presence=True)
    assert anonymous.joins == [("room",)], "anonymous: a member, not listed"
