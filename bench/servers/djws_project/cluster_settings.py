"""The bench project as one edge of a cluster (bench/cluster.py).

``DJWS_BENCH_EDGES`` (JSON list): the sub endpoint of every edge, for the
sending process of the static configuration. ``DJWS_BENCH_BROKER``: the
Redis URL of cluster mode (``WS_BROKER``); unset, the cluster is static.
``DJWS_BENCH_LEASE``: ``WS_BROKER_LEASE`` in seconds (``--lease``).
"""

import json
import os

from .settings import *

WS_EDGES = json.loads(os.environ.get("DJWS_BENCH_EDGES", "null"))
if os.environ.get("DJWS_BENCH_BROKER"):
    WS_BROKER = os.environ["DJWS_BENCH_BROKER"]
# 100,000 handshakes on two shared cores: a worker may take longer than the
# default 5 s to run on_connect, which would refuse the connection with 503.
# The benchmark measures the group message, not the handshake rate.
WS_HANDSHAKE_TIMEOUT = 60.0
# Eight client processes opening connections as fast as they can, six edges
# and six workers on two cores: a worker's heartbeat can be late by more
# than the default 2 s, and its edge would close its connections with 1012.
WS_HEARTBEAT_TIMEOUT = 10.0
if os.environ.get("DJWS_BENCH_LEASE"):
    WS_BROKER_LEASE = float(os.environ["DJWS_BENCH_LEASE"])
