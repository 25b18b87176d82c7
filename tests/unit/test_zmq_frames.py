"""Multipart send and receive of the edge and the worker: the same messages as pyzmq's send_multipart/recv_multipart."""

import pytest
import zmq

from django_ws import wire
from django_ws.worker.connection import Connection
from django_ws.zmq_frames import receiver, send_now, sender


def _pair(zmq_module, name):
    ctx = zmq_module.Context()
    a, b = ctx.socket(zmq_module.DEALER), ctx.socket(zmq_module.DEALER)
    b.bind(f"inproc://{name}")
    a.connect(f"inproc://{name}")
    return ctx, a, b


@pytest.mark.parametrize("green", [False, True], ids=["plain", "green"])
def test_frames_go_through_as_one_message_each(green):
    if green:
        import zmq.green as zmq_module
    else:
        zmq_module = zmq
    ctx, a, b = _pair(zmq_module, f"frames-{green}")
    try:
        send, recv = sender(a), receiver(b)
        messages = [[b"one"], [b"h", b"payload"], [b"x", b"", b"z"]]
        for frames in messages:
            send(frames)
        b.poll(2000)
        got = [recv() for _ in messages]
        assert got == messages
        with pytest.raises(zmq.Again):
            recv()
        a.send_multipart([b"sugar", b"too"])  # interleaves with pyzmq's own calls
        b.poll(2000)
        assert recv() == [b"sugar", b"too"]
    finally:
        a.close(0)
        b.close(0)
        ctx.term()


def test_a_connections_send_is_the_wire_send():
    sent = []
    conn = Connection("e-1.42", "echo", {}, sent.append)
    conn.send("héllo")
    conn.send(b"\x00\x01")
    conn.send("again")
    assert sent == [wire.Send("e-1.42", False, "héllo".encode()).encode(),
                    wire.Send("e-1.42", True, b"\x00\x01").encode(),
                    wire.Send("e-1.42", False, b"again").encode()]


def test_send_now_sends_a_whole_message_to_a_router_peer_or_says_why_not():
    ctx = zmq.Context()
    router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    try:
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.bind("inproc://send-now")
        dealer.setsockopt(zmq.IDENTITY, b"worker-1")
        dealer.connect("inproc://send-now")
        dealer.send(b"hello")  # the router learns the peer's identity
        assert router.recv_multipart() == [b"worker-1", b"hello"]
        send_now(router, b"worker-1", [b"header", b"payload"])
        send_now(router, b"worker-1", [b"alone"])
        assert dealer.recv_multipart() == [b"header", b"payload"]
        assert dealer.recv_multipart() == [b"alone"]
        with pytest.raises(zmq.ZMQError) as unroutable:
            send_now(router, b"nobody", [b"header"])
        assert unroutable.value.errno == zmq.EHOSTUNREACH
        assert dealer.poll(0) == 0, "nothing of the unroutable message reached anyone (inproc delivers at once)"
    finally:
        router.close(linger=0)
        dealer.close(linger=0)
        ctx.term()
