"""Instructions per echo round trip, by process: a figure that a busy machine does not move.

Round trips per second depend on what else the machine is doing; the
instructions a server executes for a round trip hardly do. So for an A/B
(``--compare``) each django-ws target is also started under valgrind's
callgrind (``--trace-children=yes``: the edge and the worker it spawns),
and the echo client makes a fixed number of round trips twice, ``short``
then ``long`` per connection. Around each run every process's counters are
zeroed and dumped (``callgrind_control``); the difference between the two
runs, divided by the round trips it adds, is the cost of a round trip
alone: opening and closing the connections, and whatever the processes do
on a timer, cancel out.

Under callgrind the threads of a process run one at a time, so the
figures are those of a machine with one slow core per process: good for
comparing two versions, not to be multiplied by a clock rate.
(``perf stat -e instructions`` would be cheaper, but needs hardware
counters that virtual machines often lack.)
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .client import Client, ClientRun
from .targets import DjwsServer, Target

#: Connections, and round trips per connection in the short and the long run.
PARAMS = {"conns": 20, "size": 64, "short": 20, "long": 120}


def unavailable() -> str | None:
    """Why instructions cannot be counted here, or None."""
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH (Debian: apt-get install valgrind)"
    return None


class CallgrindServer(DjwsServer):
    """A django-ws target whose processes (edge and workers) run under callgrind."""

    def __init__(self, target: Target, workdir: Path):
        self.workdir = workdir
        wrapper = workdir / "python"
        wrapper.write_text(
            "#!/bin/sh\n"
            f"exec valgrind --tool=callgrind --trace-children=yes --fair-sched=yes -q "
            f"--callgrind-out-file={workdir}/cg.%p {sys.executable} \"$@\"\n")
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
        super().__init__(env={"BENCH_UNDER_VALGRIND": "1"}, **target.options)
        self.inner.python = str(wrapper)
        self.inner.ready_timeout = 600

    def _control(self, pid: int, command: str) -> None:
        subprocess.run(["callgrind_control", command, str(pid)], capture_output=True, check=False, timeout=120)

    def counted(self, pids: list[int], action) -> dict[int, int]:
        """Zero every process's counters, run ``action()``, dump them: pid -> instructions meanwhile."""
        for pid in pids:
            self._control(pid, "-z")
        action()
        totals = {}
        for pid in pids:
            before = set(self.workdir.glob(f"cg.{pid}.*"))
            self._control(pid, "-d")
            totals[pid] = _read_dump(self.workdir, pid, before)
        return totals


def _read_dump(workdir: Path, pid: int, before: set, timeout: float = 60.0) -> int:
    """The instruction total of the dump of ``pid`` that was not there before."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in set(workdir.glob(f"cg.{pid}.*")) - before:
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("summary:"):
                    return int(line.split()[1])
        time.sleep(0.2)
    raise RuntimeError(f"callgrind wrote no dump for pid {pid} within {timeout:.0f}s")


def count(target: Target, client: Client, params: dict = PARAMS) -> dict:
    """Instructions per round trip of ``target``'s edge and worker(s), and what they were measured on."""
    workdir = Path(tempfile.mkdtemp(prefix="django-ws-callgrind."))
    server = CallgrindServer(target, workdir)
    began = time.monotonic()
    try:
        server.start()
        roles = server.roles()
        pids = sorted(roles)
        runs, timings = {}, {"started": round(time.monotonic() - began, 1)}
        for name in ("short", "long"):
            result = {}

            def echo(n=params[name], out=result):
                run = ClientRun(client, "echo", server.url(target.routes()["echo"]),
                                {"conns": params["conns"], "size": params["size"], "count": n}, timeout=1800)
                out.update(run.finish())

            totals = server.counted(pids, echo)
            if result.get("mismatches") or result.get("closed_by_server") or result.get("opened") != params["conns"]:
                raise RuntimeError(f"the echo run under callgrind went wrong: {result}")
            runs[name] = (totals, result["all_round_trips"])
            timings[name] = result.get("client_wall_s")
        extra = runs["long"][1] - runs["short"][1]
        per_role: dict[str, float] = {}
        for pid, role in roles.items():
            added = runs["long"][0][pid] - runs["short"][0][pid]
            per_role[role] = per_role.get(role, 0.0) + added / extra
        out = {role: round(v) for role, v in per_role.items()}
        out["total"] = sum(out.values())
        return {"per_round_trip": out, "round_trips": [runs["short"][1], runs["long"][1]], "params": params,
                "seconds": timings}
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def measure(targets: list[Target], client: Client, repeats: int) -> dict[str, list[dict]]:
    """``count`` for every django-ws target, ``repeats`` times, interleaved like the rounds."""
    results: dict[str, list[dict]] = {}
    for n in range(1, repeats + 1):
        for target in targets:
            if target.kind != "djws":
                continue
            print(f"[instructions {n}/{repeats}] {target.name} under callgrind ...", end=" ", flush=True)
            started = time.monotonic()
            try:
                figure = count(target, client)
            except Exception as exc:  # noqa: BLE001 - one failure must not cost the other figures
                figure = {"error": f"{type(exc).__name__}: {exc}"}
                print("ERROR " + figure["error"].splitlines()[0], flush=True)
            else:
                per = figure["per_round_trip"]
                print(", ".join(f"{role} {v:,}" for role, v in per.items())
                      + f" instructions per round trip ({time.monotonic() - started:.0f} s)", flush=True)
            results.setdefault(target.name, []).append(figure)
    return results


def render(results: dict[str, list[dict]]) -> str:
    """The table: per target, the median instructions per round trip by role, and each A/B as a ratio."""
    if not results:
        return ""
    from statistics import median

    rows = [(f"instructions per echo round trip (callgrind; {PARAMS['conns']} connections, "
             f"{PARAMS['long'] - PARAMS['short']} round trips each between two runs)")]
    medians: dict[str, dict[str, float]] = {}
    for name, runs in results.items():
        ok = [r["per_round_trip"] for r in runs if "per_round_trip" in r]
        if not ok:
            rows.append(f"  {name:<34} {runs[-1].get('error', 'no figure')}")
            continue
        medians[name] = {role: median(r[role] for r in ok) for role in ok[0]}
        spread = {role: (min(r[role] for r in ok), max(r[role] for r in ok)) for role in ok[0]}
        rows.append(f"  {name:<34} " + ", ".join(
            f"{role} {medians[name][role]:,.0f} [{spread[role][0]:,}-{spread[role][1]:,}]" for role in ok[0]))
    for name, figures in medians.items():
        for other, base in medians.items():  # this checkout over --compare's commit
            if other.startswith(name + "@"):
                ratios = ", ".join(f"{role} {figures[role] / base[role]:.3f}x" for role in figures if base.get(role))
                rows.append(f"  {name} / {other}: {ratios}")
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover - python -m bench.instructions, for a quick look
    from .client import find_client
    from .targets import TARGETS

    found = unavailable()
    if found:
        raise SystemExit(found)
    chosen = [t for t in TARGETS if t.name == (sys.argv[1] if len(sys.argv) > 1 else "djws-threaded")]
    print(render(measure(chosen, find_client(None, os.environ.get("BENCH_NODE_PATH")), 1)))
