"""The bench project as bench/soak.py runs it: rooms that keep history, cluster mode if asked.

``DJWS_BENCH_BROKER`` (the Redis URL) turns cluster mode on, as in
cluster_settings. Every ``room.*`` group keeps its last 1,000 messages for
60 s, so that a member that reconnects with ``dws_since`` recovers what it
missed, and the churners' rooms, left empty, are forgotten a minute later:
over a long run the history must stay as flat as everything else.
"""

from .cluster_settings import *  # noqa: F403

WS_GROUP_HISTORY = {"room.*": {"size": 1000, "ttl": 60}}
