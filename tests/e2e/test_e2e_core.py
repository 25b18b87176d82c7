"""The handler contract, end to end: real run_wsserver, Tornado, ZeroMQ and worker."""

import asyncio
import json

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect


def test_original_readme_example(make_server):
    """The original README: DEFAULT_WS_HANDLERS + --websocket-url with a namespace group."""
    srv = make_server(websocket_url=r"/socket/(?P<namespace>\w*)")
    with connect(srv.url("")) as ws:  # ws://host:port/socket/ is the "default" namespace
        ws.send("First msg")
        assert ws.recv(timeout=10) == "First msg"  # EchoHandler: on_open returned None
    with connect(srv.url("upper")) as ws:
        ws.send("shout")
        assert ws.recv(timeout=10) == "SHOUT"
    with pytest.raises(InvalidStatus) as refused:
        connect(srv.url("nosuchnamespace"))
    assert refused.value.response.status_code == 404
    # ws_urls.py routes work beside the namespaces, under the same prefix.
    with connect(srv.url("echo")) as ws:
        ws.send("routed")
        assert ws.recv(timeout=10) == "routed"


def test_route_kwargs_and_extra_kwargs_reach_the_handler(server):
    with connect(server.url("info")) as ws:
        ws.send("{}")
        info = json.loads(ws.recv(timeout=10))
    assert info["kwargs"] == {"extra": "yes"}
    assert info["url_name"] == "info"
    with connect(server.url("shop/item/42")) as ws:
        ws.send("{}")
        info = json.loads(ws.recv(timeout=10))
    assert info["kwargs"] == {"pk": "42"}
    assert info["namespace"] == "shop"


@pytest.mark.parametrize("path", ["nope", "echo/extra", "open/maybe", "shop/item/x"])
def test_unknown_paths_are_refused_with_404(server, path):
    with pytest.raises(InvalidStatus) as refused:
        connect(server.url(path))
    assert refused.value.response.status_code == 404
    assert f"404 GET {server.prefix}/{path}" in server.wait_for(f"{server.prefix}/{path}")


def test_text_stays_text_and_bytes_stay_bytes(server):
    with connect(server.url("echo")) as ws:
        for message in ["plain", "ünïcødé ✓", "", b"\x00\xff\x10", b"", "x" * 100_000, bytes(range(256)) * 400]:
            ws.send(message)
            echoed = ws.recv(timeout=10)
            assert type(echoed) is type(message)
            assert echoed == message


@pytest.mark.parametrize(
    "result, expected",
    [
        ("none", ["open:first", "message:first", "message:second"]),
        ("true", ["open:first", "message:second"]),
        ("false", ["open:first", "message:second"]),
    ],
)
def test_on_open_return_value_contract(server, result, expected):
    with connect(server.url(f"open/{result}")) as ws:
        ws.send("first")
        ws.send("second")
        assert [ws.recv(timeout=10) for _ in expected] == expected


def test_on_close_runs_once_after_the_client_leaves(server, observer):
    ws = connect(server.url("tracked/leaver"))
    ws.send("hi")
    assert ws.recv(timeout=10) == "hi"
    opened = observer.wait(event="open", tag="leaver")
    ws.close()
    closed = observer.wait(event="close", tag="leaver")
    assert closed["conn"] == opened["conn"]
    assert (closed["code"], closed["reason"]) == (1000, "")
    with pytest.raises(AssertionError):
        observer.wait(timeout=1.0, event="close", tag="leaver")  # exactly once


def test_on_close_runs_for_a_client_that_never_sent_anything(server, observer):
    """A client that only listens (a dashboard, a feed) and leaves: on_close runs, with its close code."""
    ws = connect(server.url("tracked/listener"))
    ws.close(code=4001, reason="done listening")
    closed = observer.wait(event="close", tag="listener")
    assert (closed["code"], closed["reason"]) == (4001, "done listening")
    assert not [r for r in observer.seen if r.get("tag") == "listener"]  # on_open never ran: no "open" report
    with pytest.raises(AssertionError):
        observer.wait(timeout=1.0, event="close", tag="listener")  # exactly once


def test_on_close_runs_when_the_client_drops_without_a_close_frame(server, observer):
    ws = connect(server.url("tracked/dropper"))
    ws.send("hi")
    assert ws.recv(timeout=10) == "hi"
    ws.socket.close()  # TCP gone, no closing handshake
    assert observer.wait(event="close", tag="dropper")["code"] == 1006


def test_handler_exception_closes_only_its_connection_with_1011(server, observer):
    bystander = connect(server.url("echo"))
    failing = connect(server.url("fail/one"))
    failing.send("fine")
    assert failing.recv(timeout=10) == "fine"
    failing.send("boom")
    with pytest.raises(ConnectionClosed) as closed:
        failing.recv(timeout=10)
    assert closed.value.rcvd.code == 1011
    observer.wait(event="close", tag="one")  # on_close still ran
    server.wait_for("boom, as the test asked")  # the handler's exception is in the log (or this raises)
    bystander.send("still here")
    assert bystander.recv(timeout=10) == "still here"
    with connect(server.url("echo")) as fresh:
        fresh.send("new")
        assert fresh.recv(timeout=10) == "new"
    bystander.close()


def test_server_side_close_and_send_after_close_raises(server, observer):
    with connect(server.url("closer")) as ws:
        ws.send("close")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd.code == 4000
    assert closed.value.rcvd.reason == "bye"
    assert observer.wait(event="send-after-close")["error"] == "ConnectionClosed"


def test_a_looping_handler_stops_when_its_client_leaves(server, observer):
    ws = connect(server.url("loop/visitor"))
    ws.send("start")
    assert ws.recv(timeout=10) == "0"
    assert ws.recv(timeout=10) == "1"
    ws.close()
    observer.wait(timeout=2.0, event="close", tag="visitor")


def test_handlers_that_never_return_do_not_hold_up_each_other_or_anyone_else(server):
    """30 hooks that loop forever at once (in threaded mode the pool grows a thread
    for each; gevent a greenlet; multiprocess a process): all of them progress,
    and a plain echo on the same worker still answers."""
    loops = [connect(server.url(f"loop/busy{i}")) for i in range(30)]
    try:
        for ws in loops:
            ws.send("start")
        for ws in loops:
            assert [ws.recv(timeout=10) for _ in range(3)] == ["0", "1", "2"]
        with connect(server.url("echo")) as ws:
            ws.send("still served")
            assert ws.recv(timeout=10) == "still served"
        for ws in loops:  # and they are still going
            ws.recv(timeout=10)
    finally:
        for ws in loops:
            ws.close()


def test_handshake_of_a_non_websocket_request_is_400_and_reaches_no_worker(server):
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(server.http_url + "/socket/echo", timeout=10)
    assert refused.value.code == 400


def test_many_connections_many_messages_nothing_lost_duplicated_or_reordered(server):
    from websockets.asyncio.client import connect as aconnect

    conns, messages = 100, 100

    async def client(i):
        async with aconnect(server.url("echo"), max_queue=None) as ws:
            async def send_all():
                for n in range(messages):
                    await ws.send(f"{i}:{n}")

            sender = asyncio.ensure_future(send_all())
            received = [await asyncio.wait_for(ws.recv(), 30) for _ in range(messages)]
            await sender
            return received

    async def main():
        return await asyncio.gather(*(client(i) for i in range(conns)))

    results = asyncio.run(main())
    for i, received in enumerate(results):
        assert received == [f"{i}:{n}" for n in range(messages)], f"connection {i} got {received[:5]}..."


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_edge_runs_on_the_event_loop_ws_event_loop_names(make_server, loop):
    srv = make_server(env={"DJANGO_WS_EVENT_LOOP": loop})
    assert srv.wait_for("WebSocket server at").endswith(f", {loop})")
    with connect(srv.url("echo")) as ws:
        ws.send(f"on {loop}")
        assert ws.recv(timeout=10) == f"on {loop}"


def test_an_unknown_event_loop_stops_run_wsserver_with_a_clear_error(make_server):
    with pytest.raises(AssertionError) as failed:
        make_server(env={"DJANGO_WS_EVENT_LOOP": "trio"})
    assert "exited" in str(failed.value)
    assert "WS_EVENT_LOOP is 'trio'; choose one of 'auto', 'asyncio', 'uvloop'" in str(failed.value)
