"""Which cause each refused handshake is given, on either side (links.py), from libzmq's monitor events."""

import pytest
import zmq

from django_ws import links

AUTH, PROTOCOL, NO_DETAIL = (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                             zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
MISMATCH, CRYPTO = zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH, zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC
EPIPE = 32


@pytest.mark.parametrize("event, value, curve, says", [
    (AUTH, 400, True, "does not know this process's CURVE client key"),
    (PROTOCOL, MISMATCH, False, "requires CURVE and this process has no keys"),
    (NO_DETAIL, EPIPE, False, "requires CURVE and this process has no keys"),  # the edge hung up first
    (PROTOCOL, MISMATCH, True, "does not use CURVE"),
    (NO_DETAIL, EPIPE, True, "server_public here is most likely not that edge's key"),
    (zmq.EVENT_HANDSHAKE_SUCCEEDED, 0, True, None),
])
def test_a_worker_or_sender_names_the_likely_cause(event, value, curve, says):
    cause = links._client_cause(event, value, curve)
    assert (cause is None) if says is None else (says in cause), f"expected {says!r}, got {cause!r}"


@pytest.mark.parametrize("event, value, curve, says", [
    (PROTOCOL, MISMATCH, True, "it has no CURVE keys"),
    (NO_DETAIL, EPIPE, True, "it has no CURVE keys"),
    (PROTOCOL, CRYPTO, True, "server_public is not this edge's key"),
    (PROTOCOL, MISMATCH, False, "uses CURVE, and WS_CURVE is not set here"),
    (AUTH, 400, True, None),  # the ZAP handler logs it, with the key
])
def test_the_edge_names_the_likely_cause(event, value, curve, says):
    cause = links._server_cause(event, value, curve)
    assert (cause is None) if says is None else (says in cause), f"expected {says!r}, got {cause!r}"


def test_the_edge_logs_a_refusal_once_per_peer_and_cause(caplog):
    log = links.RefusalLog()
    push, sub = log.watch("tcp://192.0.2.1:5555", True), log.watch("tcp://192.0.2.1:5556", True)

    def retry(handle, fd):  # a refused attempt as libzmq reports it; fd -1: the peer's address is unknown
        for kind, value in ((zmq.EVENT_ACCEPTED, fd), (PROTOCOL, CRYPTO), (zmq.EVENT_DISCONNECTED, fd)):
            handle([kind.to_bytes(2, "little") + value.to_bytes(4, "little", signed=True), b"tcp://192.0.2.1"])

    with caplog.at_level("WARNING", logger="django_ws.security"):
        for _ in range(5):
            retry(push, -1)
            retry(sub, -1)
    refused = [r.getMessage() for r in caplog.records]
    assert refused == ["refused a ZeroMQ peer from an unknown address on tcp://192.0.2.1:5555: "
                       "its WS_CURVE server_public is not this edge's key (it could not encrypt to us)"], refused
