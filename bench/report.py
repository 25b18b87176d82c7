"""Figures over rounds: medians with their range, per-round ratios, the tables, the project's targets."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import resource
import shutil
import statistics
import subprocess

from .client import Client
from .targets import REFERENCE, REPO, SECOND_REFERENCE


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _command_output(command: list[str], env: dict | None = None) -> str | None:
    try:
        return subprocess.run(command, check=False, capture_output=True, text=True, timeout=10,
                              env=env).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def machine_info(client: Client) -> dict:
    cpu_model = None
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_kb = None
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
                break
    ws_version = _command_output(["node", "-e", "console.log(require('ws/package.json').version)"], env=client.env)
    import zmq

    versions = {name: _version(dist) for name, dist in (
        ("django", "Django"), ("django-ws", "django-ws"), ("tornado", "tornado"), ("pyzmq", "pyzmq"),
        ("gevent", "gevent"), ("channels", "channels"), ("channels_redis", "channels-redis"),
        ("asgiref", "asgiref"), ("uvicorn", "uvicorn"), ("uvloop", "uvloop"), ("httptools", "httptools"),
        ("websockets", "websockets"), ("daphne", "daphne"), ("psycopg", "psycopg"))}
    versions["libzmq"] = zmq.zmq_version()
    versions["python"] = platform.python_version()
    versions["node"] = _command_output(["node", "--version"])
    versions["ws (client)"] = ws_version
    if shutil.which("redis-server"):
        versions["redis-server"] = _command_output(["redis-server", "--version"])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1) if mem_kb else None,
        "kernel": platform.release(),
        "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "versions": versions,
    }


def source_state() -> dict:
    """Which django-ws is measured: the commit, files changed since, and a digest of django_ws/."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((REPO / "django_ws").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    state = {"django_ws_sha256": digest.hexdigest()[:16]}
    head = _command_output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    if head:
        state["commit"] = head
        changed = _command_output(["git", "-C", str(REPO), "status", "--porcelain", "--", "django_ws"])
        state["django_ws_uncommitted"] = [line.split(maxsplit=1)[-1] for line in (changed or "").splitlines()]
    return state



# -- over rounds -----------------------------------------------------------------------------------


class Spread:
    """The median of some rounds' values, with their min and max."""

    def __init__(self, values: list[float]):
        self.values = values
        self.median = statistics.median(values)
        self.low, self.high = min(values), max(values)

    def crosses_one(self) -> bool:
        return self.low < 1.0 < self.high

    def as_dict(self) -> dict:
        return {"median": self.median, "min": self.low, "max": self.high, "rounds": self.values}


def spread(rounds: list[dict], key: str) -> Spread | None:
    """The spread of ``key`` over the rounds that have it (none if a round failed: figures would mix)."""
    values = [r.get(key) for r in rounds]
    if not values or any(v is None for v in values):
        return None
    return Spread(values)


def ratio_spread(rounds: list[dict], refs: list[dict], key: str) -> Spread | None:
    """Per round, this figure over the reference's figure in the same round; their spread.

    Taking the ratio within a round, then the median over rounds, is what
    keeps the machine's drift out of it: both figures of a round were
    measured a few seconds apart.
    """
    if len(rounds) != len(refs):
        return None
    values = []
    for r, ref in zip(rounds, refs):
        v, w = r.get(key), ref.get(key)
        if v is None or not w:
            return None
        values.append(v / w)
    return Spread(values) if values else None


def nested_median(rounds: list[dict], path: tuple[str, ...]):
    """The median over rounds of a nested figure (a dict of dicts of numbers or [vol, invol] pairs)."""
    present = []
    for r in rounds:
        value = r
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            return None
        present.append(value)
    first = present[0]
    if isinstance(first, dict):
        keys = [k for k in first if all(isinstance(p, dict) and k in p for p in present)]
        return {k: nested_median([{"v": p[k]} for p in present], ("v",)) for k in keys}
    if isinstance(first, list):
        return [statistics.median(p[i] for p in present) for i in range(len(first))]
    return statistics.median(present)


# -- the tables -------------------------------------------------------------------------------------

#: Per scenario: (column title, result key, format of one value, the ratios shown beside it).
#: Every ratio of every figure is in the JSON; the table keeps the ones the targets speak of.
BOTH, ASYNC = ("/async", "/sync"), ("/async",)
COLUMNS = {
    "echo": [("round trips/s", "rate_per_s", "{:,.0f}", BOTH), ("p50 ms", "p50_ms", "{:.2f}", ()),
             ("p99 ms", "p99_ms", "{:.2f}", ASYNC)],
    "chat": [("messages/s", "messages_per_s", "{:,.0f}", BOTH), ("p50 ms", "p50_ms", "{:.1f}", ()),
             ("p99 ms", "p99_ms", "{:.1f}", BOTH)],
    "broadcast": [("deliveries/s", "deliveries_per_s", "{:,.0f}", BOTH), ("p50 ms", "p50_ms", "{:.0f}", ()),
                  ("p99 ms", "p99_ms", "{:.0f}", ASYNC)],
    "hold": [("open s", "open_seconds", "{:.2f}", BOTH), ("KB/conn", "rss_per_conn_kb", "{:.1f}", ASYNC),
             ("rt p99 ms", "p99_ms", "{:.0f}", ())],
}


def _roles(values: dict | None, fmt: str) -> str:
    if not values:
        return "-"
    return " + ".join(f"{role} {fmt.format(v)}" for role, v in values.items())


def _switch_total(switches: dict | None) -> str:
    """role -> kind -> [vol, invol]: per role, the sums over its threads, as vol/invol."""
    if not switches:
        return "-"
    parts = []
    for role, kinds in switches.items():
        vol = sum(v[0] for v in kinds.values())
        invol = sum(v[1] for v in kinds.values())
        parts.append(f"{role} {vol:.1f}/{invol:.1f}")
    return " + ".join(parts)


def _sum(rounds: list[dict], key: str) -> str:
    return f"{sum(r.get(key) or 0 for r in rounds):,}"


#: Columns without ratios: (title, function of the rounds).
NOTES = {
    "echo": [("CPU us/rt", lambda rs: _roles(nested_median(rs, ("cpu_us",)), "{:.0f}")),
             ("switches/rt vol/invol", lambda rs: _switch_total(nested_median(rs, ("switches",))))],
    "chat": [("lost", lambda rs: _sum(rs, "lost")),
             ("out of order", lambda rs: _sum(rs, "reordered")),
             ("gaps", lambda rs: _sum(rs, "gaps")),
             ("CPU us/msg", lambda rs: _roles(nested_median(rs, ("cpu_us",)), "{:.0f}")),
             ("switches/msg vol/invol", lambda rs: _switch_total(nested_median(rs, ("switches",))))],
    "broadcast": [("lost", lambda rs: _sum(rs, "lost")),
                  ("sent", lambda rs: f"{_sum(rs, 'sent')}/{_sum(rs, 'messages')}")],
    "hold": [("opened", lambda rs: f"{_sum(rs, 'opened')}/{_sum(rs, 'conns')}"),
             ("answered", lambda rs: _sum(rs, "answered")),
             ("SYN drops", lambda rs: _sum(rs, "listen_overflows"))],
}


def _value(s: Spread | None, fmt: str) -> str:
    if s is None:
        return "-"
    return f"{fmt.format(s.median)} [{fmt.format(s.low)}-{fmt.format(s.high)}]"


def _ratio(s: Spread | None) -> str:
    if s is None:
        return "-"
    return f"{s.median:.2f}x [{s.low:.2f}-{s.high:.2f}]" + ("!" if s.crosses_one() else "")


def summarize(results: dict, scenarios: list[str]) -> dict:
    """Medians, spreads and ratios of every figure, for the JSON and the tables."""
    summary = {}
    for scenario in scenarios:
        by_target = results.get(scenario, {})
        refs = {name: [r for r in by_target.get(name, []) if "error" not in r] for name in (REFERENCE, SECOND_REFERENCE)}
        for name, rounds in by_target.items():
            ok = [r for r in rounds if "error" not in r]
            if len(ok) != len(rounds):
                continue
            figures = {}
            for _, key, _, _ in COLUMNS[scenario]:
                s = spread(ok, key)
                entry = {"value": s.as_dict() if s else None}
                for label, ref_name in (("/async", REFERENCE), ("/sync", SECOND_REFERENCE)):
                    complete = len(refs[ref_name]) == len(by_target.get(ref_name, ()))
                    r = ratio_spread(ok, refs[ref_name], key) if complete else None
                    entry[label] = r.as_dict() if r else None
                figures[key] = entry
            summary.setdefault(scenario, {})[name] = figures
    return summary


def render_tables(results: dict, targets: list, scenarios: list[str], params: dict, headers: dict) -> tuple[str, list[str]]:
    """The tables, and the warnings about ratios whose spread crosses 1.0."""
    summary = summarize(results, scenarios)
    out, warnings = [], []
    for scenario in scenarios:
        by_target = results.get(scenario, {})
        titles = ["target"]
        for title, _, _, shown in COLUMNS[scenario]:
            titles += [title, *shown]
        titles += [title for title, _ in NOTES[scenario]]
        rows = []
        for target in targets:
            rounds = by_target.get(target.name)
            if rounds is None:
                continue
            errors = [r["error"] for r in rounds if "error" in r]
            if errors:
                rows.append([target.name, f"ERROR in {len(errors)} of {len(rounds)} rounds: "
                             + errors[0].splitlines()[0][:90]])
                continue
            row = [target.name]
            figures = summary.get(scenario, {}).get(target.name, {})
            for title, key, fmt, shown in COLUMNS[scenario]:
                entry = figures.get(key, {})
                value = spread(rounds, key)
                row.append(_value(value, fmt))
                for label in ("/async", "/sync"):
                    r = entry.get(label)
                    s = Spread(r["rounds"]) if r else None
                    if label in shown:
                        row.append(_ratio(s))
                    ref_name = REFERENCE if label == "/async" else SECOND_REFERENCE
                    if s is not None and s.crosses_one() and target.name != ref_name:
                        warnings.append(f"warning: {scenario} {title} of {target.name} {label}: per-round ratios "
                                        f"{s.low:.2f}x to {s.high:.2f}x cross 1.0; this run cannot tell which is better")
            row += [fn(rounds) for _, fn in NOTES[scenario]]
            rows.append(row)
        full = [r for r in rows if len(r) == len(titles)]
        widths = [max(len(str(x[i])) for x in [titles, *full]) for i in range(len(titles))]
        rounds_n = max((len(v) for v in by_target.values()), default=0)
        out.append(f"{headers[scenario]}; median [min-max] of {rounds_n} rounds")
        out.append("  ".join(t.rjust(w) if i else t.ljust(w) for i, (t, w) in enumerate(zip(titles, widths))))
        out.append("  ".join("-" * w for w in widths))
        for row in rows:
            if len(row) != len(titles):
                out.append(f"{row[0].ljust(widths[0])}  {row[1]}")
            else:
                out.append("  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if scenario in ("echo", "chat"):
            out += _switch_detail(by_target, targets, "round trip" if scenario == "echo" else "message")
        out += _compared(by_target, scenario, warnings)
        out.append("")
    out.append("Ratios: per round, the figure over the same round's figure of channels-async (/async) or")
    out.append("channels-sync (/sync); then their median [min-max]. Above 1 is better for rates, below 1 for")
    out.append("times and memory. '!' marks a ratio whose rounds fall on both sides of 1.0.")
    return "\n".join(out), warnings


def _compared(by_target: dict, scenario: str, warnings: list[str]) -> list[str]:
    """--compare: each django-ws target over the same target on the other commit, per round."""
    lines = []
    for name, rounds in by_target.items():
        base, _, commit = name.partition("@")
        if not commit or base not in by_target:
            continue
        new = [r for r in by_target[base] if "error" not in r]
        old = [r for r in rounds if "error" not in r]
        if len(new) != len(by_target[base]) or len(old) != len(rounds):
            continue
        parts = []
        for title, key, _, _ in COLUMNS[scenario]:
            s = ratio_spread(new, old, key)
            parts.append(f"{title} {_ratio(s)}")
            if s is not None and s.crosses_one():
                warnings.append(f"warning: {scenario} {title} of {base} over {commit}: per-round ratios "
                                f"{s.low:.2f}x to {s.high:.2f}x cross 1.0; this run cannot tell which is better")
        lines.append(f"  {base} (this checkout) over {commit}: " + ", ".join(parts))
    return lines


def _switch_detail(by_target: dict, targets: list, unit: str) -> list[str]:
    """Context switches per operation by process and thread kind: where the wake-ups go."""
    title = (f"  context switches per {unit}, voluntary/involuntary (median of rounds), by process: "
             "main thread, libzmq's I/O threads, other threads")
    lines = [title]
    for target in targets:
        rounds = [r for r in by_target.get(target.name, []) if "error" not in r]
        switches = nested_median(rounds, ("switches",)) if rounds else None
        if not switches:
            continue
        parts = []
        for role, kinds in switches.items():
            inner = ", ".join(f"{kind} {v:.2f}/{i:.2f}" for kind, (v, i) in kinds.items() if v or i)
            parts.append(f"{role}: {inner or '0'}")
        lines.append(f"    {target.name}: " + "; ".join(parts))
    return lines


# -- the project's targets -------------------------------------------------------------------------


def check_targets(results: dict) -> list[dict]:
    """The project's goals, each judged on the median of per-round ratios (and every round where noted)."""
    summary = summarize(results, list(results))
    checks = []

    def ratio(scenario, name, key, label):
        entry = summary.get(scenario, {}).get(name, {}).get(key) or {}
        return entry.get(label)

    def add(target, goal, r, ok):
        checks.append({"target": target, "goal": goal,
                       "ratio": None if r is None else {k: round(r[k], 2) for k in ("median", "min", "max")},
                       "met": None if ok is None else bool(ok)})

    for name in summary.get("echo", {}):
        if not name.startswith("djws-") or "@" in name:
            continue
        least_sync = 2.0 if "gevent" in name else 2.5
        r = ratio("echo", name, "rate_per_s", "/sync")
        add(name, f"echo round trips/s >= {least_sync}x channels-sync", r, r and r["median"] >= least_sync)
        if "gevent" not in name:
            r = ratio("echo", name, "rate_per_s", "/async")
            add(name, "echo round trips/s >= 1.0x channels-async", r, r and r["median"] >= 1.0)
            r = ratio("echo", name, "p99_ms", "/async")
            add(name, "echo p99 <= channels-async's", r, r and r["median"] <= 1.0)
    for name, rounds in results.get("chat", {}).items():
        if not name.startswith("djws-") or "@" in name or name not in summary.get("chat", {}):
            continue
        r = ratio("chat", name, "messages_per_s", "/sync")
        add(name, "chat messages/s >= 2x channels-sync", r, r and r["median"] >= 2.0)
        r = ratio("chat", name, "messages_per_s", "/async")
        add(name, "chat messages/s >= 1.2x channels-async", r, r and r["median"] >= 1.2)
    for name, rounds in results.get("chat", {}).items():
        if all("error" not in r for r in rounds):
            bad = sum((r.get("lost") or 0) + (r.get("gaps") or 0) + (r.get("reordered") or 0)
                      + (r.get("misrouted") or 0) for r in rounds)
            add(name, "chat: nothing lost, reordered or misrouted, every round", None, bad == 0)
    for name in summary.get("broadcast", {}):
        if name.startswith("djws-") and "@" not in name:
            r = ratio("broadcast", name, "deliveries_per_s", "/async")
            add(name, "broadcast deliveries/s >= 5x channels-async (in-memory group_send)", r, r and r["median"] >= 5)
            lost = sum(x.get("lost", 0) for x in results["broadcast"][name])
            add(name, "broadcast: no loss, every round", None, lost == 0)
    for name, rounds in results.get("hold", {}).items():
        if not name.startswith("djws-") or "@" in name or name not in summary.get("hold", {}):
            continue
        r = ratio("hold", name, "open_seconds", "/async")
        add(name, "hold: opening all >= 5x faster than channels-async", r, r and r["median"] <= 0.2)
        kb = spread(rounds, "rss_per_conn_kb")
        limit = 25 if "gevent" in name else 40
        checks.append({"target": name, "goal": f"hold: <= {limit} KB per connection, every round",
                       "ratio": None, "met": None if kb is None else kb.high <= limit})
        add(name, "hold: every connection answered its round trip, every round", None,
            all(r.get("answered") == r.get("conns") for r in rounds))
    return checks


def render_checks(checks: list[dict]) -> str:
    lines = ["Targets (ratios: median [min-max] of the rounds):"]
    for c in checks:
        mark = {True: "met", False: "MISSED", None: "n/a"}[c["met"]]
        r = c["ratio"]
        detail = f" ({r['median']:.2f}x [{r['min']:.2f}-{r['max']:.2f}])" if r else ""
        lines.append(f"  [{mark:>6}] {c['target']}: {c['goal']}{detail}")
    return "\n".join(lines)
