#!/usr/bin/env python3
"""Presence of users in cluster mode at scale: counts, a page, Redis memory, and what a watcher is told.

    python bench/presence.py redis://127.0.0.1:6379/15 [--connections 100000 --users 50000 --edges 6]

Writes one group's presence as ``--edges`` edges would (the edges' own
script, MEMBER_CHANGED, once per connection, each user with two connections
on two edges), under a throwaway prefix, then measures:

* ``group_size`` and ``group_user_count`` (django_ws's own functions, in
  cluster mode), and ``group_members`` for contrast, which moves every id;
* one page of ``group_presence`` (100 users);
* Redis memory per user and per connection (``MEMORY USAGE`` of the keys);
* a watcher's edge (the real EdgeCore, fed by the broker's presence channel,
  its WS_PRESENCE_WINDOW honoured with a timer): how many ``on_user_presence``
  calls, and how many bytes to the watcher's worker, when ``--arrivals`` new
  users arrive within 10 seconds, and when the edge that holds ``--dead``
  users alone dies (its lease lapses, one sweep).

Use a database you can spare: the keys are deleted at the end.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import threading
import time


def setup(url: str, prefix: str) -> None:
    import django
    from django.conf import settings

    settings.configure(INSTALLED_APPS=["django_ws"], WS_BROKER=url, WS_BROKER_PREFIX=prefix, WS_BROKER_LEASE=3600.0,
                       USE_TZ=True)
    django.setup()


def timed(call, repeat: int) -> float:
    """Median milliseconds of ``call()``, round trip included."""
    took = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        took.append(time.perf_counter() - started)
    return statistics.median(took) * 1000


class Watcher:
    """One edge with one handler watching the group: the real core, told by the broker as the edge's link tells it."""

    def __init__(self, client, keys, group: str, window: float):
        import json

        from django_ws import wire
        from django_ws.edge.core import EdgeCore, FlushPresenceLater, ToWorker

        self.wire, self.json, self.to_worker, self.flush_later = wire, json, ToWorker, FlushPresenceLater
        self.core = EdgeCore(resolve=lambda route: route, heartbeat_timeout=3600, cluster=True, edge_id="watcher",
                             presence_window=window)
        self.core.worker_event(b"w", wire.Hello("w", 0, 0))
        conn, _ = self.core.connect("people", {"path": "/people"}, None)
        self.core.reply(b"w", wire.Accept(conn.id, ""))
        self.core.opened(conn)
        self.core.reply(b"w", wire.Watch(conn.id, group, True))
        self.lock = threading.Lock()
        self.calls = self.bytes = self.users_told = 0
        self.pubsub = client.pubsub()
        self.pubsub.subscribe(keys.presence_channel(group))
        self.pubsub.get_message(timeout=5)
        self.group = group
        self.stop = False
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def _listen(self) -> None:
        while not self.stop:
            message = self.pubsub.get_message(timeout=0.1)
            if message is None or message["type"] != "message":
                continue
            change = self.json.loads(message["data"])
            users_joined = {user: self.json.loads(info) for user, info in change.get("ujoined", {}).items()}
            with self.lock:
                self._run(self.core.remote_presence(self.group, change["edge"], [], [], users_joined,
                                                    change.get("uleft", [])))

    def _run(self, actions) -> None:
        for action in actions:
            if isinstance(action, self.flush_later):
                threading.Timer(action.delay, self._flush).start()
            elif isinstance(action, self.to_worker) and isinstance(action.message, self.wire.UserPresenceDiff):
                self.calls += 1
                self.bytes += sum(len(frame) for frame in action.message.encode())
                diff = action.message.diff
                self.users_told += len(diff["joined"]) + len(diff["left"])

    def _flush(self) -> None:
        with self.lock:
            self._run(self.core.flush_presence())

    def settle(self, expected_users: int, limit: float = 60.0) -> tuple[int, int, int]:
        """Wait until ``expected_users`` changes were told; (calls, bytes, users told) since the last settle."""
        deadline = time.monotonic() + limit
        while True:
            with self.lock:
                if self.users_told >= expected_users:
                    out = (self.calls, self.bytes, self.users_told)
                    self.calls = self.bytes = self.users_told = 0
                    return out
            if time.monotonic() > deadline:
                raise SystemExit(f"the watcher was told {self.users_told} of {expected_users} changes")
            time.sleep(0.05)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="a redis:// URL of a database you can spare")
    parser.add_argument("--connections", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--edges", type=int, default=6)
    parser.add_argument("--arrivals", type=int, default=10_000, help="new users arriving within 10 seconds")
    parser.add_argument("--window", type=float, default=0.1, help="WS_PRESENCE_WINDOW of the watcher's edge")
    args = parser.parse_args(argv)
    prefix = f"bench-{secrets.token_hex(4)}:"
    setup(args.url, prefix)

    import redis

    from django_ws import group_members, group_presence, group_size, group_user_count
    from django_ws.broker.keys import MEMBER_CHANGED, SWEEP_DEAD_EDGES, Keys

    client = redis.Redis.from_url(args.url)
    keys = Keys(prefix)
    group = "room.lobby"
    edges = [secrets.token_hex(8) for _ in range(args.edges)]
    for edge in edges:
        client.set(keys.lease(edge), "{}")
    member_changed = client.register_script(MEMBER_CHANGED)
    per_user = args.connections // args.users

    def join(pipe, edge: str, conn: str, user: str) -> None:
        member_changed(keys=[keys.members(group), keys.edge_groups(edge), keys.edges],
                       args=[edge, conn, 1, group, keys.presence_channel(group), 0, keys.users_prefix, user,
                             '{"username":"user%s"}' % user], client=pipe)

    started = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for n in range(args.connections):
        user = n % args.users
        # A user's connections on different edges: the n-th of each user on the next edge.
        edge = edges[(user + n // args.users) % args.edges]
        join(pipe, edge, f"{edge}.{n:x}", str(user))
        if len(pipe) >= 5000:
            pipe.execute()
    pipe.execute()
    print(f"wrote {args.connections} connections of {args.users} users ({per_user} each) on {args.edges} edges "
          f"in {time.perf_counter() - started:.1f}s (one MEMBER_CHANGED each)")

    size, users = group_size(group), group_user_count(group)
    assert (size, users) == (args.connections, args.users), (size, users)
    print(f"group_size: {timed(lambda: group_size(group), 200):.2f} ms (HLEN; two integers cross, no member)")
    print(f"group_user_count: {timed(lambda: group_user_count(group), 200):.2f} ms (ZCARD)")
    print(f"group_members, for contrast: {timed(lambda: group_members(group, timeout=60), 3):.0f} ms "
          f"({args.connections} ids moved)")
    page = group_presence(group)
    assert len(page["users"]) == 100 and page["next"]
    print(f"group_presence, one page of 100 users: {timed(lambda: group_presence(group), 200):.2f} ms; "
          f"the page after it: {timed(lambda: group_presence(group, after=page['next']), 200):.2f} ms")
    counts, infos, order = keys.users(group)
    user_bytes = sum(client.memory_usage(key, samples=0) for key in (counts, infos, order))
    by_connection = client.memory_usage(f"{keys.users_prefix}c:{group}", samples=0)
    member_bytes = client.memory_usage(keys.members(group), samples=0)
    print(f"Redis memory: {user_bytes / args.users:.0f} bytes per user (count, info of ~20 bytes, order), "
          f"{(by_connection + member_bytes) / args.connections:.0f} bytes per connection "
          f"({member_bytes / args.connections:.0f} of them the connection-level presence that was already there)")

    watcher = Watcher(client, keys, group, args.window)
    arrivals, ticks = args.arrivals, 1000  # spread evenly over 10 s: a batch every 10 ms, as edges write theirs
    started = time.monotonic()
    for tick in range(ticks):
        pipe = client.pipeline(transaction=False)
        for n in range(tick * arrivals // ticks, (tick + 1) * arrivals // ticks):
            edge = edges[n % args.edges]
            join(pipe, edge, f"{edge}.new{n:x}", f"new{n}")
        pipe.execute()
        delay = started + (tick + 1) * 10.0 / ticks - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    calls, sent, told = watcher.settle(arrivals)
    print(f"{arrivals} users arriving within {time.monotonic() - started:.1f}s: the watcher's on_user_presence ran "
          f"{calls} times ({told} users told), {sent} bytes to its worker (window {args.window}s)")

    # The dead edge: one whose users have no connection elsewhere. Its lease lapses; one sweep tells them.
    dead = secrets.token_hex(8)
    client.set(keys.lease(dead), "{}")
    alone = args.users // 3  # 16,666 with the defaults: about the share of one edge of six
    pipe = client.pipeline(transaction=False)
    for n in range(alone):
        join(pipe, dead, f"{dead}.{n:x}", f"dead{n}")
        if len(pipe) >= 5000:
            pipe.execute()
    pipe.execute()
    watcher.settle(alone)
    client.delete(keys.lease(dead))
    started = time.perf_counter()
    client.register_script(SWEEP_DEAD_EDGES)(keys=[keys.edges], args=keys.sweep_args())
    swept = time.perf_counter() - started
    calls, sent, told = watcher.settle(alone)
    print(f"an edge with {alone} users (theirs alone) killed: the sweep took {swept * 1000:.0f} ms; the watcher's "
          f"on_user_presence ran {calls} times, {sent} bytes to its worker")
    assert group_user_count(group) == args.users + arrivals
    watcher.stop = True
    watcher.thread.join()
    watcher.pubsub.close()
    for name in client.scan_iter(f"{prefix}*"):
        client.delete(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
