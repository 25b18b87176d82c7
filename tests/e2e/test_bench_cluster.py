"""bench/cluster.py, run small end to end, so that the scale benchmark keeps working.

The figures are not checked (this machine's timings mean nothing at 200
connections); what is checked is what the benchmark itself promises: every
connection, spread evenly over the edges, got every message exactly once,
in the static configuration and in cluster mode on Redis.
"""

import json
import os
import subprocess
import sys

from tests.conftest import ROOT, node_client, require_redis

CLUSTER = os.path.join(ROOT, "bench", "cluster.py")


def run_cluster(*args: str) -> dict:
    client = node_client()  # skips (or fails in CI) without Node and the ws package
    env = dict(os.environ, DJANGO_WS_TEST_NODE_PATH=client.node_path)
    result = subprocess.run([sys.executable, CLUSTER, *args, "--json"], env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, f"bench/cluster.py should succeed; it said:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_one_group_message_reaches_every_connection_of_every_edge_once():
    result = run_cluster("--edges", "2", "--connections", "200", "--sends", "2", "--per-client", "120")

    assert result["opened"] == 200, f"all 200 connections should open: {result}"
    assert result["client_processes"] == 2, f"200 connections at 120 per client take 2 processes: {result}"
    assert result["per_edge"] == [100, 100], f"the connections should be spread evenly over the 2 edges: {result}"
    assert result["ok"], f"every send should reach every connection once: {result['sends']}"
    for send in result["sends"]:
        assert (send["delivered"], send["duplicates"]) == (200, 0), f"200 deliveries, no duplicate: {send}"
        assert send["written"] == 200, f"the edges should acknowledge 200 clients written to: {send}"
        assert 0 < send["first_ms"] <= send["last_ms"], f"first and last delivery after the send: {send}"
    assert result["rss_per_connection_kb"] > 0, f"the servers should grow with their connections: {result}"
    assert result["closed_by_server"] == 0, f"no connection should be closed by the servers: {result}"


def test_in_cluster_mode_one_publish_reaches_every_connection_once_through_workers_that_found_the_edges():
    require_redis()
    result = run_cluster("--edges", "2", "--connections", "200", "--sends", "2", "--broker", "--workers", "2")

    assert result["mode"] == "broker" and result["opened"] == 200, f"200 connections in cluster mode: {result}"
    assert result["per_edge"] == [100, 100], f"the connections should be spread evenly over the 2 edges: {result}"
    assert result["ok"], f"every send should reach every connection once: {result['sends']}"
    for send in result["sends"]:
        assert (send["delivered"], send["duplicates"]) == (200, 0), f"200 deliveries, no duplicate: {send}"
        assert send["redis"]["commands"] >= 1, f"Redis should have run the send's publish: {send}"
    presence = result["redis_keys"]["by_type"]
    assert presence.get("hash", {}).get("keys") == 1, f"one presence hash, that of the one group: {presence}"
    assert result["redis_connect"]["keys"] >= 4, f"the group's hash, the registry and 2 announcements: {result}"
