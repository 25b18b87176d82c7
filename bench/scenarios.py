"""The scenarios: each runs one round of one target and returns its figures.

Around the client's run, every scenario reads /proc for the server's
processes: CPU time by role, and for echo and chat the context switches of
every thread, so the figures per round trip (or per chat message) sit next
to each other. The client counts its own warm-up too (``all_round_trips``,
``completed``), so the per-operation figures divide the whole run's cost by
the whole run's work.
"""

from __future__ import annotations

import time
from pathlib import Path

from .client import Client, ClientRun
from .procs import context_switches, cpu_seconds, fd_count, rss_bytes
from .profile import finish_profile, start_profile
from .targets import Server, Target

#: Per scenario, the parameters of the full run and of --quick.
PARAMS = {
    "full": {
        "echo": {"conns": 50, "size": 64, "seconds": 6, "warmup": 1},
        "chat": {"rooms": 20, "members": 25, "window": 1, "size": 64, "seconds": 6, "warmup": 1},
        "broadcast": {"receivers": 1000, "messages": 60, "window": 4, "size": 64, "timeout": 150},
        "hold": {"conns": 10000, "seconds": 6, "batch": 200},
    },
    "quick": {
        "echo": {"conns": 20, "size": 64, "seconds": 2, "warmup": 1},
        "chat": {"rooms": 4, "members": 10, "window": 1, "size": 64, "seconds": 2, "warmup": 1},
        "broadcast": {"receivers": 200, "messages": 20, "window": 4, "size": 64, "timeout": 30},
        "hold": {"conns": 1000, "seconds": 2, "batch": 200},
    },
}


def role_cpu(server: Server) -> dict[str, float]:
    """CPU seconds so far by role (edge, worker, uvicorn, ...), summed over its processes."""
    by_role: dict[str, float] = {}
    for pid, role in server.roles().items():
        by_role[role] = by_role.get(role, 0.0) + cpu_seconds(pid)
    return by_role


def thread_kind(pid: int, thread: str) -> str:
    """Which of a process's threads a count belongs to: its main thread, libzmq's, or the others."""
    name, _, tid = thread.rpartition("/")
    if tid == str(pid):
        return "main"
    if name.startswith("ZMQbg"):
        return "zmq"
    return "threads"


def role_switches(server: Server) -> dict[str, dict[str, list[int]]]:
    """Context switches so far: role -> thread kind -> [voluntary, involuntary]."""
    totals: dict[str, dict[str, list[int]]] = {}
    for pid, role in server.roles().items():
        for thread, (vol, invol) in context_switches(pid).items():
            slot = totals.setdefault(role, {}).setdefault(thread_kind(pid, thread), [0, 0])
            slot[0] += vol
            slot[1] += invol
    return totals


class Meter:
    """CPU and context switches of a server between ``__init__`` and ``per(n)``."""

    def __init__(self, server: Server):
        self.server = server
        self.cpu0, self.switches0 = role_cpu(server), role_switches(server)

    def per(self, n: int) -> dict:
        """The deltas divided by ``n`` operations: CPU in microseconds, switches as counts."""
        cpu1, switches1 = role_cpu(self.server), role_switches(self.server)
        out = {"cpu_us": {role: round((s - self.cpu0.get(role, 0.0)) * 1e6 / n, 1) for role, s in cpu1.items()},
               "switches": {}}
        for role, kinds in switches1.items():
            before = self.switches0.get(role, {})
            out["switches"][role] = {
                kind: [round((v - before.get(kind, [0, 0])[0]) / n, 2), round((i - before.get(kind, [0, 0])[1]) / n, 2)]
                for kind, (v, i) in kinds.items()}
        return out


class Context:
    """What a round may need besides its server: the client, the database, the profile directory."""

    def __init__(self, client: Client, database=None, profile_dir: Path | None = None):
        self.client, self.database, self.profile_dir = client, database, profile_dir


class Scenario:
    """One way of loading a server; ``run`` measures one round of one target."""

    name = ""
    #: Whether servers stay up from one round to the next (hold needs a fresh one to measure memory).
    warm = True
    #: The target's route this scenario uses.
    route = "echo"

    def applies_to(self, target: Target) -> bool:
        return self.route in target.routes()

    def header(self, p: dict) -> str:
        raise NotImplementedError

    def run(self, server: Server, target: Target, params: dict, ctx: Context, first: bool) -> dict:
        raise NotImplementedError


class Echo(Scenario):
    name = "echo"

    def header(self, p):
        return f"echo: {p['conns']} connections, closed loop, {p['size']}-byte frames, {p['seconds']} s"

    def run(self, server, target, params, ctx, first):
        meter = Meter(server)
        run = ClientRun(ctx.client, "echo", server.url(target.routes()["echo"]), params,
                        timeout=params["seconds"] + params["warmup"] + 60)
        profiles = []
        if first and ctx.profile_dir is not None and target.kind == "djws":
            time.sleep(params["warmup"] + 0.5)
            duration = max(1, int(params["seconds"]) - 2)
            profiles = [start_profile(pid, role, target.name, duration, ctx.profile_dir)
                        for pid, role in server.roles().items()]
        result = run.finish()
        done = result.get("all_round_trips") or result.get("round_trips")
        if done:
            result.update(meter.per(done))
        if profiles:
            result["profile"] = [finish_profile(p) for p in profiles]
        return result


class Chat(Scenario):
    name = "chat"
    route = "chat"

    def header(self, p):
        return (f"chat: {p['rooms']} rooms x {p['members']} members, each message saved to PostgreSQL "
                f"then sent to its room, {p['window']} in flight per room, {p['seconds']} s")

    def run(self, server, target, params, ctx, first):
        ctx.database.empty()
        meter = Meter(server)
        db0 = ctx.database.cpu_seconds()
        run = ClientRun(ctx.client, "chat", server.url(target.routes()["chat"]), params,
                        timeout=params["seconds"] + params["warmup"] + 120)
        result = run.finish()
        result["saved"] = ctx.database.count()
        if result.get("completed"):
            result.update(meter.per(result["completed"]))
            db1 = ctx.database.cpu_seconds()
            if db1 is not None:
                result["cpu_us"]["postgres"] = round((db1 - db0) * 1e6 / result["completed"], 1)
        return result


class Broadcast(Scenario):
    name = "broadcast"
    route = "room"

    def header(self, p):
        return f"broadcast: {p['receivers']} receivers in one group, {p['messages']} messages (window {p['window']})"

    def run(self, server, target, params, ctx, first):
        cpu0 = sum(role_cpu(server).values())
        run = ClientRun(ctx.client, "broadcast", server.url(target.routes()["room"]), params,
                        timeout=params["timeout"] + params["receivers"] / 20 + 60)
        result = run.finish()
        result["server_cpu_s"] = round(sum(role_cpu(server).values()) - cpu0, 2)
        return result


class Hold(Scenario):
    """Open ``conns`` connections, sum the server's RSS before and after, then a round trip on each.

    The client holds the connections ``seconds`` after the last one opened.
    Opening is seen from here as the server's file descriptors growing by
    ``conns``; memory is sampled a little after that, before the round trips.
    """

    name = "hold"
    warm = False

    def header(self, p):
        return f"hold: {p['conns']:,} idle connections, then one round trip on each"

    def run(self, server, target, params, ctx, first):
        conns = params["conns"]
        time.sleep(1.0)
        rss_before, fds_before = _tree(server, rss_bytes), _tree(server, fd_count)
        pids_before = len(server.pids())
        roles_before, roles_after = _rss_by_role(server), {}
        cpu_before = _by_role(server, cpu_seconds)
        run = ClientRun(ctx.client, "hold", server.url(target.routes()["echo"]), params,
                        timeout=conns / 20 + params["seconds"] + 120)
        grown, last_growth = 0, time.monotonic()
        while run.running():
            grown_now = _tree(server, fd_count) - fds_before
            if grown_now > grown:
                grown, last_growth = grown_now, time.monotonic()
            if grown >= conns or (grown > 0 and time.monotonic() - last_growth > 3.0):
                break
            time.sleep(0.25)
        # CPU of the opening: the handshakes and nothing else (the client holds them idle now).
        cpu_opening = {role: seconds - cpu_before.get(role, 0.0)
                       for role, seconds in _by_role(server, cpu_seconds).items()}
        rss_after = None
        if run.running():
            time.sleep(min(2.0, params["seconds"] / 3))  # let the last handlers settle
            rss_after, roles_after = _tree(server, rss_bytes), _rss_by_role(server)
        result = run.finish()
        opened = result.get("opened") or 0
        result.update(server_processes=pids_before, server_fds_grown=grown, rss_before_bytes=rss_before,
                      rss_after_bytes=rss_after)
        if rss_after is not None and opened:
            result["rss_per_conn_kb"] = round((rss_after - rss_before) / opened / 1024, 2)
            result["rss_per_conn_kb_by_role"] = {
                role: round((roles_after.get(role, 0) - roles_before.get(role, 0)) / opened / 1024, 2)
                for role in roles_after}
        if opened:
            # What one handshake cost each server process's CPU, in microseconds (kernel time included).
            result["cpu_us_per_handshake_by_role"] = {role: round(seconds / opened * 1e6)
                                                      for role, seconds in cpu_opening.items()}
        return result


def _tree(server: Server, measure) -> int:
    return sum(measure(pid) for pid in server.pids())


def _rss_by_role(server: Server) -> dict[str, int]:
    return _by_role(server, rss_bytes)


def _by_role(server: Server, measure):
    """``measure(pid)`` summed over the server's processes of each role (edge, worker, ...)."""
    roles: dict = {}
    for pid, role in server.roles().items():
        roles[role] = roles.get(role, 0) + measure(pid)
    return roles


SCENARIOS = {s.name: s for s in (Echo(), Chat(), Broadcast(), Hold())}
