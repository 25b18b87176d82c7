#!/usr/bin/env python3
"""What cluster mode keeps in Redis: bytes per group member, bytes per group message, and what a sweep costs.

    python bench/cluster_redis.py redis://127.0.0.1:6379/15 [--members 100 10000 100000]

Writes presence hashes as edges do (one field per member: its connection id,
its edge's id) under a throwaway prefix, asks Redis for their size (``MEMORY
USAGE``), then times the sweep that removes them as the members of a dead
edge (one script, during which Redis serves nobody else), and the sweep each
edge runs at each renewal when no edge died. Prints what one publish of a
100-byte message to a group carries beyond its payload. Use a database you
can spare: the keys are deleted at the end, nothing else is touched.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time

import redis

from django_ws import wire
from django_ws.broker.keys import SWEEP_DEAD_EDGES, Keys, pack

#: Live edges for the timing of a sweep that finds no dead one.
LIVE_EDGES = 6
SWEEPS = 1000


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="a redis:// URL of a database you can spare")
    parser.add_argument("--members", type=int, nargs="+", default=[100, 10_000, 100_000])
    args = parser.parse_args(argv)
    client = redis.Redis.from_url(args.url)
    keys = Keys(f"bench-{secrets.token_hex(4)}:")
    edge = secrets.token_hex(8)  # edge ids are 16 hex digits, connection ids "<edge id>.<n in hex>"
    sweep = client.register_script(SWEEP_DEAD_EDGES)
    told = client.pubsub()
    told.subscribe(keys.presence_channel("room.lobby"))
    told.get_message(timeout=5)  # the subscription's confirmation
    for members in args.members:
        key = keys.members("room.lobby")
        pipe = client.pipeline(transaction=False)
        for n in range(members):
            pipe.hset(key, f"{edge}.{n:x}", edge)
            if len(pipe) >= 10_000:
                pipe.execute()
        pipe.execute()
        used = client.memory_usage(key, samples=0)
        print(f"presence of a group of {members:>7} members: {used / members:6.1f} bytes of Redis memory per member")
        # The edge holds no lease: the next sweep tells its members as left.
        client.sadd(keys.edges, edge)
        client.sadd(keys.edge_groups(edge), "room.lobby")
        started = time.perf_counter()
        swept = sweep(keys=[keys.edges], args=keys.sweep_args())
        took = time.perf_counter() - started
        assert swept == [edge.encode()] and not client.exists(key), "the sweep removed the dead edge's members"
        leave = told.get_message(timeout=5)
        print(f"  the sweep of their dead edge: {took * 1000:7.1f} ms, one leave of {members} ids published "
              f"({len(leave['data'])} bytes)")
    for n in range(LIVE_EDGES):
        client.set(keys.lease(f"live{n}"), "{}")
        client.sadd(keys.edges, f"live{n}")
    started = time.perf_counter()
    for _ in range(SWEEPS):
        sweep(keys=[keys.edges], args=keys.sweep_args())
    took = (time.perf_counter() - started) / SWEEPS
    client.delete(keys.edges, *(keys.lease(f"live{n}") for n in range(LIVE_EDGES)))
    told.close()
    print(f"a sweep that finds {LIVE_EDGES} live edges and no dead one: {took * 1e6:.0f} us per call, "
          "round trip included")
    message = pack(wire.GroupSend("room.lobby", "", False, b"x" * 100, ""))
    print(f"one message to 'room.lobby': {len(message) - 100} bytes published beyond its 100-byte payload, "
          "sent once to each edge with members")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
