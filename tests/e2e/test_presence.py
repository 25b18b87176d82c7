"""Presence of users, end to end: real edges, a worker, Redis; users logged in through their session cookie."""

from __future__ import annotations

import json
import time

from websockets.sync.client import connect

from django_ws import group_presence, group_size, group_user_count
from tests.e2e.test_cluster import FORGOTTEN_BOUND, LEASE, cluster, kill_9  # noqa: F401  (fixture)
from tests.e2e.test_hosts import served
from tests.e2e.test_security import login


def person(edge, room: str, session: str | None = None, **first) -> tuple:
    """A client of PeopleHandler in ``room``, logged in with ``session`` (None: anonymous), which sent ``first``."""
    headers = {"Cookie": f"sessionid={session}"} if session else None
    ws = connect(edge.url(f"people/{room}"), additional_headers=headers)
    ws.send(json.dumps(first))
    reply = json.loads(ws.recv(timeout=10))
    assert reply["joined"] == room
    return ws


class UserEvents:
    """What a watcher's handler relays of on_user_presence, one message per call."""

    def __init__(self, ws):
        self.ws = ws

    def next(self, timeout: float = 10.0) -> tuple[dict, list]:
        event = json.loads(self.ws.recv(timeout=timeout))
        return {user: info["username"] for user, info in event["users_joined"].items()}, event["users_left"]


def wait_for(check, what: str, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_two_edges_alice_twice_bob_once_told_once_per_person(cluster, server_db):
    sessions = {name: login(server_db, name) for name in ("alice", "bob")}
    here, there = cluster.edge(), cluster.edge()
    cluster.worker()
    served(here, 30)
    served(there, 30)
    watcher = UserEvents(person(here, "lobby", watch=True))  # anonymous: a member, never listed
    alice_1 = person(here, "lobby", sessions["alice"])
    alice_2 = person(there, "lobby", sessions["alice"])
    bob = person(there, "lobby", sessions["bob"], info={"username": "bob", "status": "away"})

    names: dict[str, str] = {}
    while len(names) < 2:
        joined, left = watcher.next()
        assert left == [] and not set(joined) & set(names), f"each person is told as joined once: {joined}"
        names.update(joined)
    keys = {name: key for key, name in names.items()}
    with cluster.settings():
        wait_for(lambda: group_size("people.lobby") == 4, "4 connections: alice twice, bob, the watcher")
        assert group_user_count("people.lobby") == 2, "2 people: the anonymous watcher is not listed"
        assert group_presence("people.lobby") == {"users": {
            keys["alice"]: {"info": {"username": "alice"}, "connections": 2},
            keys["bob"]: {"info": {"username": "bob", "status": "away"}, "connections": 1}}, "next": None}
        first = group_presence("people.lobby", limit=1)
        assert list(first["users"]) == [min(keys.values())] and first["next"] == min(keys.values())
        assert list(group_presence("people.lobby", limit=1, after=first["next"])["users"]) == [max(keys.values())]

        alice_1.close()
        wait_for(lambda: group_size("people.lobby") == 3, "alice's first connection left")
        alice_2.close()  # if her first had told anything, it would come first: one channel, in order
        assert watcher.next() == ({}, [keys["alice"]]), "her last connection tells left: [alice], once"

        kill_9(there)
        killed = time.monotonic()
        assert watcher.next(timeout=FORGOTTEN_BOUND + 5) == ({}, [keys["bob"]]), "bob's dead edge: left, once"
        took = time.monotonic() - killed
        print(f"kill -9 of bob's edge: the watcher heard him leave after {took:.2f}s (lease {LEASE}s)")
        assert took < FORGOTTEN_BOUND + 1.0, f"within the lease bound ({FORGOTTEN_BOUND:.1f}s)"
        assert group_presence("people.lobby") == {"users": {}, "next": None}
        assert (group_size("people.lobby"), group_user_count("people.lobby")) == (1, 0)

    again = person(here, "lobby", sessions["alice"], info={"username": "alice", "status": "back"})
    assert watcher.next() == ({keys["alice"]: "alice"}, []), "the next change told: nothing was told twice"
    again.send(json.dumps({"info": {"username": "alice", "status": "away"}}))
    assert watcher.next() == ({keys["alice"]: "alice"}, []), "new info arrives as a join"
    for ws in (again, watcher.ws):
        ws.close()


def test_static_mode_counts_pages_and_tells_once(make_server, server_db):
    from django.test import override_settings

    session = login(server_db, "alice")
    srv = make_server()
    with override_settings(WS_EDGES=[srv.sub_socket]):
        watcher = UserEvents(person(srv, "hall", watch=True))
        tabs = [person(srv, "hall", session) for _ in range(2)]
        joined, left = watcher.next()
        assert list(joined.values()) == ["alice"] and left == []
        (key,) = joined
        assert (group_size("people.hall"), group_user_count("people.hall")) == (3, 1)
        assert group_presence("people.hall") == {"users": {key: {"info": {"username": "alice"}, "connections": 2}},
                                                 "next": None}
        tabs[0].close()
        wait_for(lambda: group_size("people.hall") == 2, "her first tab left")
        tabs[1].close()
        assert watcher.next() == ({}, [key]), "told once, when her last tab left"
        watcher.ws.close()
