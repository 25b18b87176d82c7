"""Cluster mode: Redis as the broker that edges, workers and senders share (docs/cluster.rst).

Nothing here is imported unless ``WS_BROKER`` is set, and redis-py only then:

* :mod:`.config` reads ``WS_BROKER`` (pure) and makes clients;
* :mod:`.keys` is the key and channel schema, with the Lua scripts;
* :mod:`.edge` is the edge's asyncio adapter (announcement, subscriptions, presence);
* :mod:`.route` is how senders and workers reach clients (one publish per send);
* :mod:`.discovery` is how workers follow the edges as they come and go.
"""
