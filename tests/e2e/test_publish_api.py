"""The edge's HTTP publish API (POST /_django_ws/publish), from curl, Node's fetch and urllib, to two edges."""

import base64
import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request

import pytest
from websockets.sync.client import connect

from tests.conftest import require, start_server
from tests.e2e.test_groups import join

KEY = "k3y-for-the-publish-api-tests-0123456789abcdef"
OTHER_KEY = "an0ther-key-for-the-publish-api-tests-0123456789"
MAX_MESSAGE_SIZE = 4096


@pytest.fixture(scope="module")
def edges(server_db):
    """Two servers (an edge and a worker each) in static mode: WS_EDGES names both, so either reaches both."""
    directory = tempfile.mkdtemp(prefix="dws-api-")  # short: an ipc:// path must fit in 107 bytes
    subs = [f"ipc://{directory}/a-sub", f"ipc://{directory}/b-sub"]
    env = {"DJANGO_WS_EDGES": ",".join(subs), "DJANGO_WS_API_KEYS": json.dumps({"tests": KEY, "other": OTHER_KEY}),
           "DJANGO_WS_MAX_MESSAGE_SIZE": str(MAX_MESSAGE_SIZE), "DJANGO_WS_LOG_ALL": "1"}
    started = []
    try:
        for sub in subs:
            started.append(start_server(server_db, sub_socket=sub, env=env))
        yield started
    finally:
        for srv in started:
            assert srv.stop() == 0
        shutil.rmtree(directory, ignore_errors=True)


def post(server, body, key=KEY, raw=None, headers=None):
    """POST to ``server``'s publish API with urllib; (status, JSON answer, headers)."""
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(f"{server.http_url}/_django_ws/publish", data=data, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as error:
        with error:
            text = error.read()
            return error.code, (json.loads(text) if error.headers.get("Content-Type") == "application/json"
                                else text.decode()), error.headers


def members_on_both(edges, room, each=2):
    return [join(srv, room) for srv in edges for _ in range(each)]


def receive_all(members, expected):
    for ws, _ in members:
        assert ws.recv(timeout=10) == expected


def close_all(members):
    for ws, _ in members:
        ws.close()


def test_curl_publishes_to_every_member_on_both_edges(edges):
    curl = shutil.which("curl")
    require(curl is not None, "curl is not installed")
    members = members_on_both(edges, "curl")
    result = subprocess.run(
        [curl, "-sS", "-H", f"Authorization: Bearer {KEY}", "-d", '{"group":"room.curl","data":"hi from curl"}',
         f"{edges[0].http_url}/_django_ws/publish"], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"delivered": 4}, "the members on both edges are counted"
    receive_all(members, "hi from curl")
    close_all(members)


def test_node_fetch_publishes_to_every_member_on_both_edges(edges):
    node = shutil.which("node")
    require(node is not None, "node is not installed")
    members = members_on_both(edges, "node")
    script = """
const [url, key] = process.argv.slice(1);
const response = await fetch(url, {
  method: "POST",
  headers: {"Authorization": `Bearer ${key}`, "Content-Type": "application/json"},
  body: JSON.stringify({group: "room.node", data: "hi from node"}),
});
console.log(response.status, JSON.stringify(await response.json()));
"""
    # Published to the second edge this time: it reaches the first one too.
    result = subprocess.run([node, "--input-type=module", "-e", script, f"{edges[1].http_url}/_django_ws/publish",
                             KEY], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    status, answer = result.stdout.split(" ", 1)
    assert status == "200" and json.loads(answer) == {"delivered": 4}, result.stdout
    receive_all(members, "hi from node")
    close_all(members)


def test_a_wrong_or_missing_key_is_401_and_never_in_the_output(edges):
    wrong = "wr0ng-key-that-must-never-be-logged-5a7c9e"
    lines = len(edges[0].lines)
    members = members_on_both(edges, "locked", each=1)
    for key, headers in ((wrong, None), (None, None), (None, {"Authorization": f"Basic {wrong}"}),
                         (KEY[:-1], None), (KEY + "x", None)):
        status, answer, response_headers = post(edges[0], {"group": "room.locked", "data": "no"}, key=key,
                                                headers=headers)
        assert status == 401, answer
        assert response_headers["WWW-Authenticate"].startswith("Bearer")
    # The second key works too, and what went before reached nobody.
    assert post(edges[0], {"group": "room.locked", "data": "yes"}, key=OTHER_KEY)[:2] == (200, {"delivered": 2})
    receive_all(members, "yes")
    edges[0].wait_for("401 POST /_django_ws/publish", start=lines)  # the access log has the refusals...
    output = "\n".join(edges[0].lines[lines:])
    for secret in (wrong, KEY, OTHER_KEY):
        assert secret not in output, "a key appeared in the server's output"  # ...and no key
    close_all(members)


@pytest.mark.parametrize("body, reason", [
    (b"not json", "not JSON"),
    (b"[1, 2]", "JSON object"),
    ({"data": "x"}, 'exactly one of "group" and "connection"'),
    ({"group": "g", "connection": "e.1", "data": "x"}, 'exactly one of "group" and "connection"'),
    ({"group": "", "data": "x"}, '"group" must be a non-empty string'),
    ({"group": "g"}, '"data" is missing'),
    ({"group": "g", "data": 3}, '"data" must be a string'),
    ({"group": "g", "data": "x", "binary": "yes"}, '"binary" must be true or false'),
    ({"group": "g", "data": "not base64!", "binary": True}, "not valid base64"),
    ({"group": "g", "data": "x", "key": ""}, '"key" must be'),
    ({"connection": "e.1", "data": "x", "exclude": "e.2"}, '"exclude" goes with "group" only'),
    ({"group": "g", "data": "x", "colour": "red"}, "unknown field(s) 'colour'"),
], ids=lambda value: None)
def test_a_bad_body_is_400_naming_what_is_wrong(edges, body, reason):
    raw = body if isinstance(body, bytes) else None
    status, answer, _ = post(edges[0], body, raw=raw)
    assert status == 400, answer
    assert reason in answer["error"], f"expected {reason!r} in {answer['error']!r}"


def test_data_past_ws_max_message_size_is_413(edges):
    status, answer, _ = post(edges[0], {"group": "room.big", "data": "x" * (MAX_MESSAGE_SIZE + 1)})
    assert status == 413 and "WS_MAX_MESSAGE_SIZE" in answer["error"], answer
    encoded = base64.b64encode(b"\x00" * (MAX_MESSAGE_SIZE + 1)).decode()
    status, answer, _ = post(edges[0], {"group": "room.big", "data": encoded, "binary": True})
    assert status == 413, "measured decoded, as the client would get it"
    status, _, _ = post(edges[0], {}, raw=b"{" + b" " * (3 * MAX_MESSAGE_SIZE + 65536) + b"}")
    assert status == 413, "a body too large to hold a message is refused unread"
    assert post(edges[0], {"group": "room.big", "data": "x" * MAX_MESSAGE_SIZE})[:2] == (200, {"delivered": 0})


def test_binary_data_in_base64_arrives_as_a_binary_frame(edges):
    members = members_on_both(edges, "bin", each=1)
    payload = bytes(range(256))
    assert post(edges[0], {"group": "room.bin", "data": base64.b64encode(payload).decode(), "binary": True})[:2] \
        == (200, {"delivered": 2})
    receive_all(members, payload)
    close_all(members)


def test_exclude_and_one_connection(edges):
    (a, a_id), (b, b_id) = members_on_both(edges, "excl", each=1)
    assert post(edges[0], {"group": "room.excl", "data": "not to a", "exclude": a_id})[:2] == (200, {"delivered": 1})
    assert b.recv(timeout=10) == "not to a"
    # To one connection on the other edge, then to the whole group: a gets the latter first, so nothing came before.
    assert post(edges[0], {"connection": b_id, "data": "to b"})[:2] == (200, {"delivered": 1})
    assert b.recv(timeout=10) == "to b"
    assert post(edges[0], {"connection": "nosuchedge.1", "data": "nobody"})[:2] == (200, {"delivered": 0})
    assert post(edges[0], {"group": "room.excl", "data": "to all"})[:2] == (200, {"delivered": 2})
    assert a.recv(timeout=10) == "to all", "a got nothing before: the exclude held"
    assert b.recv(timeout=10) == "to all"
    close_all([(a, a_id), (b, b_id)])


def test_the_same_idempotency_key_twice_delivers_once(edges):
    members = members_on_both(edges, "once", each=1)
    body = {"group": "room.once", "data": "only once", "key": "order-1234-shipped"}
    assert post(edges[0], body)[:2] == (200, {"delivered": 2})
    assert post(edges[1], body)[:2] == (200, {"delivered": 2}), "a retry reports the first delivery"
    assert post(edges[0], {"group": "room.once", "data": "the next one"})[:2] == (200, {"delivered": 2})
    for ws, _ in members:
        assert ws.recv(timeout=10) == "only once"
        assert ws.recv(timeout=10) == "the next one", "the retry was not delivered a second time"
    close_all(members)


def test_a_group_with_history_keeps_what_the_api_publishes_on_each_edge(edges):
    def kept():
        return [json.loads(urllib.request.urlopen(f"{srv.http_url}/_django_ws/stats", timeout=10).read())
                ["history"]["messages"] for srv in edges]

    before = kept()
    ws = connect(edges[1].url("history/api"))  # hist.api keeps history (the tests' WS_GROUP_HISTORY)
    assert json.loads(ws.recv(timeout=10))["joined"] == "api"
    assert post(edges[0], {"group": "hist.api", "data": "kept"})[:2] == (200, {"delivered": 1})
    assert ws.recv(timeout=10) == "kept"
    assert kept() == [n + 1 for n in before], "each edge keeps the message in the group's history"
    ws.close()


def test_without_keys_the_api_is_404_and_a_key_is_rate_limited(make_server):
    off = make_server(edge_only=True)
    status, _, _ = post(off, {"group": "g", "data": "x"})
    assert status == 404, "no WS_API_KEYS: no API"
    limited = make_server(edge_only=True, env={"DJANGO_WS_API_KEYS": json.dumps([KEY, OTHER_KEY]),
                                               "DJANGO_WS_API_RATE": "0.01"})
    assert post(limited, {"group": "g", "data": "x"})[:2] == (200, {"delivered": 0})
    status, answer, headers = post(limited, {"group": "g", "data": "x"})
    assert status == 429 and "WS_API_RATE" in answer["error"], answer
    assert int(headers["Retry-After"]) >= 1
    assert post(limited, {"group": "g", "data": "x"}, key=OTHER_KEY)[0] == 200, "each key has its own bucket"


def test_a_get_is_405(edges):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{edges[0].http_url}/_django_ws/publish", timeout=10)
    refused.value.close()
    assert refused.value.code == 405


def test_in_cluster_mode_a_publish_reaches_every_edge_through_the_broker(redis_server, server_db):
    from tests.e2e.test_cluster import Cluster
    from tests.e2e.test_hosts import served

    class KeyedCluster(Cluster):
        @property
        def env(self):
            return {**super().env, "DJANGO_WS_API_KEYS": json.dumps([KEY])}

    cluster = KeyedCluster(redis_server, server_db)
    try:
        edges = [cluster.edge() for _ in range(2)]
        cluster.worker()
        for edge in edges:
            served(edge, 30)
        (a, a_id), (b, b_id) = [join(edge, "wide") for edge in edges]
        body = {"group": "room.wide", "data": "through redis", "key": "cluster-once"}
        assert post(edges[0], body)[:2] == (200, {"delivered": None}), "one publish: Redis counts no clients"
        assert post(edges[1], body)[:2] == (200, {"delivered": None})
        assert post(edges[0], {"connection": b_id, "data": "to b"})[:2] == (200, {"delivered": 1})
        assert post(edges[1], {"group": "room.wide", "data": "next", "exclude": b_id})[:2] == \
            (200, {"delivered": None})
        assert post(edges[1], {"group": "room.wide", "data": "last"})[:2] == (200, {"delivered": None})
        assert [a.recv(timeout=10) for _ in range(3)] == ["through redis", "next", "last"], "once, despite the retry"
        assert [b.recv(timeout=10) for _ in range(3)] == ["through redis", "to b", "last"], "b was excluded"
        a.close()
        b.close()
    finally:
        failed = cluster.stop()
    assert not failed, f"every process exits as expected on SIGTERM: {failed}"


def test_each_edge_measures_the_delivery_latency_of_what_it_delivered(edges):
    """Without OpenTelemetry: the histogram, in the stats JSON and the Prometheus metrics of both edges."""
    def latency(server):
        with urllib.request.urlopen(f"{server.http_url}/_django_ws/stats", timeout=10) as response:
            return json.loads(response.read())["delivery_latency"]

    before = [latency(srv)["count"] for srv in edges]
    members = members_on_both(edges, "timed")
    assert post(edges[0], {"group": "room.timed", "data": "timed"})[:2] == (200, {"delivered": 4})
    receive_all(members, "timed")
    for srv, count in zip(edges, before):
        figures = latency(srv)
        assert figures["count"] == count + 2, "one observation per client reached"
        assert figures["buckets"][-1] == [None, figures["count"]] and 0 <= figures["p50_s"] <= figures["p99_s"]
        with urllib.request.urlopen(f"{srv.http_url}/_django_ws/metrics", timeout=10) as response:
            metrics = response.read().decode()
        assert "# TYPE django_ws_delivery_latency_seconds histogram" in metrics
        assert f'le="+Inf"}} {figures["count"]}' in metrics
    close_all(members)
