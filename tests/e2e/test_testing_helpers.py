"""The public testing helpers: HandlerCommunicator (no servers) and LiveWebSocketTestCase."""

import json

import pytest
from django.contrib.auth.models import User
from django.test import TestCase
from websockets.sync.client import connect

from django_ws import reverse_ws
from django_ws.testing import HandlerCommunicator, LiveWebSocketTestCase
from tests.project.models import Visit


class HandlerCommunicatorTests(TestCase):
    def test_echo_keeps_text_and_bytes(self):
        with HandlerCommunicator("echo") as echo:
            echo.send("hi")
            echo.send(b"\x00\x01")
            assert echo.receive() == "hi"
            assert echo.receive() == b"\x00\x01"
            assert echo.receive_nothing()

    def test_the_handler_sees_the_test_database_and_its_transaction(self):
        Visit.objects.create(tag="tx")
        with HandlerCommunicator(reverse_ws("db", tag="tx")) as db:  # a full URL works too
            db.send("visit")
            assert db.receive() == "2"
        assert Visit.objects.filter(tag="tx").count() == 2  # written inside this test's transaction

    def test_presence_answers_from_the_communicators_groups(self):
        from django_ws import group_members, group_size

        first, second = HandlerCommunicator("room/lobby"), HandlerCommunicator("room/lobby")
        ids = []
        for comm in (first, second):
            assert comm.connect()
            comm.send_json({"hello": True})
            ids.append(comm.receive_json()["id"])
        assert group_size("room.lobby") == 2 and group_members("room.lobby") == sorted(ids)
        assert group_size("room.elsewhere") == 0
        first.close()
        assert group_members("room.lobby") == [ids[1]], "a closed connection leaves its groups"
        second.close()

    def test_presence_events_as_the_edge_sends_them(self):
        watcher = HandlerCommunicator("presence/lobby")
        assert watcher.connect()
        watcher.send_json({})
        assert watcher.receive_json() == {"watching": "lobby"}
        member = HandlerCommunicator("room/lobby")
        assert member.connect()
        member.send_json({})
        member_id = member.receive_json()["id"]
        assert watcher.receive_json() == {"group": "room.lobby", "joined": [member_id], "left": []}
        member.close()
        assert watcher.receive_json() == {"group": "room.lobby", "joined": [], "left": [member_id]}
        watcher.send_json({"unwatch": True})
        assert watcher.receive_json() == {"unwatched": True}
        other = HandlerCommunicator("room/lobby")
        assert other.connect()
        other.send_json({})
        other.receive_json()
        assert watcher.receive_nothing(), "no more events once unwatched"
        other.close()
        watcher.close()

    def test_user_presence_as_the_edge_keeps_it(self):
        from django_ws import group_presence, group_size, group_user_count

        alice = User.objects.create_user("alice", password="pw")
        watcher = HandlerCommunicator("people/hall")
        assert watcher.connect()
        watcher.send_json({"watch": True})
        assert watcher.receive_json()["joined"] == "hall"
        tabs = [HandlerCommunicator("people/hall", user=alice) for _ in range(2)]
        for tab in tabs:
            assert tab.connect()
            tab.send_json({})
            tab.receive_json()
        key = str(alice.pk)
        assert watcher.receive_json() == {"group": "people.hall", "users_joined": {key: {"username": "alice"}},
                                          "users_left": []}
        assert watcher.receive_nothing(), "her second tab is not a second arrival"
        assert (group_size("people.hall"), group_user_count("people.hall")) == (3, 1)
        assert group_presence("people.hall") == {"users": {key: {"info": {"username": "alice"}, "connections": 2}},
                                                 "next": None}
        tabs[0].close()
        assert watcher.receive_nothing()
        tabs[1].close()
        assert watcher.receive_json()["users_left"] == [key]
        watcher.close()

    def test_history_and_recovery_as_the_edge_does_them(self):
        """A client that comes back with its last position gets the gap, and its handler hears it was recovered."""
        import json

        from django.test import override_settings

        from django_ws import send_to_group

        with override_settings(WS_GROUP_HISTORY={"hist.*": {"size": 3, "ttl": 60}}):
            # Someone stays in the room meanwhile (the groups live while a communicator does).
            bystander = HandlerCommunicator("history/r1")
            assert bystander.connect()
            self.addCleanup(bystander.close)
            first = HandlerCommunicator("history/r1")
            assert first.connect()
            assert json.loads(first.receive()) == {"joined": "r1", "recovering": []}
            send_to_group("hist.r1", "one")
            assert first.receive() == "one"
            since = dict(first.positions)
            first.close()
            for text in ("two", "three"):
                send_to_group("hist.r1", text)  # while the client is away

            back = HandlerCommunicator("history/r1", since=since)
            assert back.connect()
            # The handler joined in on_connect, before its greeting: the gap comes first, as from an edge.
            assert [back.receive(), back.receive()] == ["two", "three"], "the gap, in order"
            assert json.loads(back.receive()) == {"joined": "r1", "recovering": ["hist.r1"]}
            assert json.loads(back.receive()) == {"recovered": "hist.r1"}
            assert back.receive_nothing()
            stale = dict(back.positions)
            back.close()

            for n in range(5):  # more than the history's size
                send_to_group("hist.r1", f"later {n}")
            late = HandlerCommunicator("history/r1", since=stale)
            assert late.connect()
            late.receive()  # joined
            assert json.loads(late.receive()) == {"resync": "hist.r1"}, "the gap is no longer covered"
            assert late.receive_nothing()
            late.close()

    def test_on_open_contract(self):
        with HandlerCommunicator("open/true") as comm:
            comm.send("first")
            comm.send("second")
            assert [comm.receive(), comm.receive()] == ["open:first", "message:second"]

    def test_user_given_directly_and_login_required(self):
        alice = User.objects.create_user("alice", password="pw")
        anonymous = HandlerCommunicator("private")
        assert anonymous.connect() is False
        assert anonymous.deny_status == 403
        with HandlerCommunicator("private", user=alice, query="x=1") as comm:
            comm.send_json({})
            reply = comm.receive_json()
        assert reply["user"] == "alice"
        assert reply["query"] == {"x": "1"}

    def test_user_through_the_test_clients_session_cookie(self):
        bob = User.objects.create_user("bob", password="pw")
        self.client.force_login(bob)
        with HandlerCommunicator("whoami", cookies=self.client.cookies) as comm:
            comm.send_json({})
            assert comm.receive_json()["user"] == "bob"

    def test_groups_work_between_communicators_and_on_close_runs(self):
        with HandlerCommunicator("observe") as observer:
            observer.send("hello")
            assert observer.receive() == "observing"
            tracked = HandlerCommunicator("tracked/t1")
            assert tracked.connect()
            tracked.send("x")
            assert tracked.receive() == "x"
            assert json.loads(observer.receive())["event"] == "open"
            tracked.close()
            report = json.loads(observer.receive())
            assert report["event"] == "close" and report["conn"] == tracked.connection_id

    def test_on_close_runs_with_the_close_code_for_a_connection_that_never_sent_a_message(self):
        with HandlerCommunicator("observe") as observer:
            observer.send("hello")
            assert observer.receive() == "observing"
            silent = HandlerCommunicator("tracked/silent")
            assert silent.connect()
            silent.close(4001)
            report = json.loads(observer.receive())  # no "open" report: on_open never ran
            assert (report["event"], report["conn"], report["code"]) == ("close", silent.connection_id, 4001)
            silent.close()
            assert observer.receive_nothing()  # exactly once

    def test_a_refused_handshake_runs_no_on_close(self):
        with HandlerCommunicator("observe") as observer:
            observer.send("hello")
            assert observer.receive() == "observing"
            refused = HandlerCommunicator("private")  # login_required, and no user
            assert refused.connect() is False
            refused.close()
            assert observer.receive_nothing()

    def test_close_with_a_code_no_server_may_send_raises_in_the_handler(self):
        with HandlerCommunicator("closer") as comm:
            for code in (999, 1004, 1005, 1006, 1015, 2000, 5000):
                comm.send(f"close {code}")
                assert comm.receive().startswith(f"ValueError: {code} is not a close code")
                assert not comm.closed
            comm.send("close 4999")
            assert (comm.close_code, comm.close_reason) == (4999, "asked")

    def test_a_failing_handler_closes_with_1011(self):
        with HandlerCommunicator("fail/t") as comm:
            comm.send("boom")
            assert comm.close_code == 1011
            assert comm.closed

    def test_a_handler_that_closes(self):
        with HandlerCommunicator("closer") as comm:
            comm.send("close")
            assert (comm.close_code, comm.close_reason) == (4000, "bye")

    def test_unknown_route_is_refused_with_404(self):
        comm = HandlerCommunicator("no/such/route")
        assert comm.connect() is False
        assert comm.deny_status == 404


class LiveServerTests(LiveWebSocketTestCase):
    def test_handlers_see_what_the_test_wrote(self):
        Visit.objects.create(tag="live")
        with connect(self.ws_url("db/live")) as ws:
            ws.send("visit")
            assert ws.recv(timeout=10) == "2"
        assert Visit.objects.filter(tag="live").count() == 2

    def test_send_to_group_from_the_test_reaches_clients(self):
        from django_ws import send_to_group

        with connect(self.ws_url("room/live")) as ws:
            ws.send("{}")
            assert json.loads(ws.recv(timeout=10))["joined"] == "live"
            assert send_to_group("room.live", "from the test") == 1
            assert ws.recv(timeout=10) == "from the test"


class JsonTypeDispatchTests(TestCase):
    def test_messages_route_by_type_and_the_rest_reach_on_json(self):
        with HandlerCommunicator("typed") as comm:
            comm.send_json({"type": "add", "a": 2, "b": 3})
            comm.send_json({"type": "on_close"})  # not a declared type: just data
            comm.send_json([1, 2])
            assert comm.receive_json() == {"sum": 5}
            assert comm.receive_json() == {"other": {"type": "on_close"}}
            assert comm.receive_json() == {"other": [1, 2]}
            assert not comm.closed

    def test_a_request_is_answered_with_what_the_on_type_method_returned(self):
        """django-ws.js's request(): {"dws_request": id} in, {"dws_reply": id, "data": ...} out (docs/client.rst)."""
        with HandlerCommunicator("requests") as comm:
            comm.send_json({"type": "add", "a": 2, "b": 3, "dws_request": 1})
            comm.send_json({"type": "nothing", "dws_request": 2})
            comm.send_json({"type": "nope", "dws_request": 3})
            comm.send_json({"type": "add", "a": 2, "b": 3})  # no request id: the return value goes nowhere
            comm.send_json({"x": 1, "dws_request": 4})  # no type at all
            comm.send_json({"plain": True})
            assert comm.receive_json() == {"dws_reply": 1, "data": 5}
            assert comm.receive_json() == {"dws_reply": 2, "data": None}
            assert comm.receive_json() == {"dws_reply": 3, "error": "no @on_type method for type 'nope'"}
            assert comm.receive_json() == {"dws_reply": 4, "error": "no @on_type method for type None"}
            assert comm.receive_json() == {"echo": {"plain": True}}  # the id never reaches on_json
            assert comm.receive_nothing()
            comm.send_json({"type": "add", "a": 1, "b": 1, "dws_request": "7"})
            assert (comm.close_code, comm.close_reason) == (1007, "dws_request must be an integer")

    def test_a_message_that_is_not_json_closes_with_1007(self):
        with HandlerCommunicator("typed") as comm:
            comm.send("{not json")
            assert comm.close_code == 1007


class SocketIOEventTests(TestCase):
    """Socket.IO events reach a handler's @on_type methods and on_event; what they return is the ack."""

    def test_emit_calls_the_on_type_method_with_the_payload_and_returns_the_ack(self):
        with HandlerCommunicator("sio/unit") as events:
            assert events.receive_json()["welcome"] == "unit"
            assert events.emit("add", {"a": 2, "b": 3}) == [5]
            assert events.emit("pair", 1) == [1, "second"], "a tuple is several arguments"
            assert events.emit("shout", "hey") == [], "None is an ack without arguments"
            assert events.receive_json() == {"shouted": "hey"}
            assert events.emit("other", 1, 2) == [{"unrouted": "other", "payload": [1, 2]}], \
                "several arguments reach on_event as a list"
            assert events.emit("other") == [{"unrouted": "other", "payload": None}], "none is None"

    def test_a_plain_handler_ignores_named_events_and_an_exception_closes_with_1011(self):
        with HandlerCommunicator("echo") as echo:
            assert echo.emit("anything", {"x": 1}) == [], "WebSocketHandler.on_event ignores it"
        failing = HandlerCommunicator("sio/unit")
        assert failing.connect()
        with pytest.raises(AssertionError, match="closed the connection"):
            failing.emit("boom")
        assert failing.close_code == 1011


class OnConnectTests(TestCase):
    def test_send_and_join_in_on_connect_reach_the_client_first(self):
        with HandlerCommunicator("eager") as comm:
            assert comm.receive() == "welcome"
            comm.send_json({"n": 1})
            assert comm.receive_json() == {"n": 1}
