"""``python bench/run.py``: every scenario, every target, in interleaved rounds.

Each scenario runs its targets in rounds, A B C, A B C, ... so that whatever
the machine does meanwhile (other work, frequency changes, a noisy
neighbour) falls on every target alike, and each ratio is taken within a
round. Servers stay up from one round to the next except in hold, which
needs a fresh one to measure memory.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from . import database as db
from . import instructions
from .client import find_client
from .procs import listen_overflows, load_average, raise_nofile
from .profile import render_profiles
from .report import check_targets, machine_info, render_checks, render_tables, source_state, summarize
from .scenarios import PARAMS, SCENARIOS, Context
from .targets import REPO, SERVERS, TARGETS, Target, baseline_targets, select_targets, skipped_targets

RESULTS = REPO / "bench" / "results"


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short smoke run: fewer connections and seconds")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per scenario (default 3; at least 3 "
                        "for a median with a spread worth quoting)")
    parser.add_argument("--only", metavar="NAME[,NAME]",
                        help="targets to run (a prefix such as 'djws' or 'channels' selects a family): "
                             + ", ".join(t.name for t in TARGETS))
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), metavar=",".join(SCENARIOS),
                        help="scenarios to run (default: all)")
    parser.add_argument("--client", default=None, metavar="PATH",
                        help="another load client with loadgen.js's arguments and output (default: $WSLOAD, "
                             "else node bench/loadgen.js)")
    parser.add_argument("--node-path", default=None, metavar="DIR",
                        help="node_modules directory holding the ws package (default: $BENCH_NODE_PATH, "
                             "$DJANGO_WS_TEST_NODE_PATH, then Node's own lookup)")
    parser.add_argument("--database", default=os.environ.get("BENCH_DATABASE"), metavar="DSN",
                        help="PostgreSQL for the chat, 'name=...;user=...;host=...;port=...' (default: "
                             "$BENCH_DATABASE, else a private cluster started with this machine's initdb)")
    parser.add_argument("--compare", default=None, metavar="COMMIT",
                        help="also run every django-ws target on the django_ws/ of COMMIT, in the same rounds (A/B)")
    parser.add_argument("--instructions", type=int, default=None, metavar="N",
                        help="count instructions per echo round trip of every django-ws target under callgrind, "
                             "N times each (default: 1 with --compare, else 0); see bench/instructions.py")
    parser.add_argument("--profile", action="store_true",
                        help="sample the django-ws processes with py-spy during echo (figures are then perturbed)")
    parser.add_argument("--set", action="append", default=[], metavar="SCENARIO.PARAM=N", dest="overrides",
                        help="change one parameter of a scenario, e.g. --set echo.conns=500 "
                             "(repeatable; the parameters are in bench/scenarios.py PARAMS)")
    parser.add_argument("--output", default=None, metavar="FILE",
                        help="where to write the JSON (default bench/results/<timestamp>.json)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.instructions is None:
        args.instructions = 1 if args.compare else 0
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"--scenarios: unknown {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    args.scenarios = [s for s in SCENARIOS if s in scenarios]
    args.params = PARAMS["quick" if args.quick else "full"]
    for override in args.overrides:
        name, _, value = override.partition("=")
        scenario, _, param = name.partition(".")
        if scenario not in args.params or param not in args.params[scenario] or not value.isdigit():
            parser.error(f"--set {override}: expected SCENARIO.PARAM=N with one of "
                         + ", ".join(f"{s}.{p}" for s, ps in args.params.items() for p in ps))
        args.params = {**args.params, scenario: {**args.params[scenario], param: int(value)}}
    return args


def run_scenario(name: str, targets: list[Target], params: dict, rounds: int, ctx: Context,
                 env: dict, report: dict) -> None:
    """All rounds of one scenario; each round's result goes to report["results"][name][target]."""
    scenario = SCENARIOS[name]
    targets = [t for t in targets if scenario.applies_to(t)]
    results = report["results"].setdefault(name, {})
    warm = {}
    try:
        if scenario.warm:
            for target in targets:
                warm[target.name] = server = target.server(env)
                try:
                    server.start()
                except Exception as exc:  # noqa: BLE001 - one that fails must not cost the others' figures
                    warm[target.name] = exc
        for round_no in range(1, rounds + 1):
            for target in targets:
                started, load = time.monotonic(), load_average()
                print(f"[{name} {round_no}/{rounds}] {target.name} ...", end=" ", flush=True)
                result = run_round(scenario, target, warm.get(target.name), params, ctx, env, round_no == 1)
                result["round"], result["loadavg"] = round_no, [load, load_average()]
                results.setdefault(target.name, []).append(result)
                print(f"{summary_line(name, result)} (load {load}; {time.monotonic() - started:.0f} s)", flush=True)
                time.sleep(0.5)
    finally:
        for server in warm.values():
            if not isinstance(server, Exception):
                server.stop()


def run_round(scenario, target: Target, server, params: dict, ctx: Context, env: dict, first: bool) -> dict:
    if isinstance(server, Exception):
        return {"error": f"the server did not start: {type(server).__name__}: {server}"}
    fresh = server is None
    if fresh:
        server = target.server(env)
    try:
        if fresh:
            server.start()
        overflows = listen_overflows()
        result = scenario.run(server, target, params, ctx, first)
        if overflows is not None:
            # SYNs the kernel dropped because the server's accept queue was full;
            # each costs the client a retransmission a second later.
            result["listen_overflows"] = listen_overflows() - overflows
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - one failure must not cost the other figures
        result = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        with contextlib.suppress(Exception):
            notable = server.notable_output()
            if notable:
                result["server_log"] = notable
        if fresh:
            server.stop()
    return result


def summary_line(scenario: str, r: dict) -> str:
    if "error" in r:
        return "ERROR " + r["error"].splitlines()[0]
    if scenario == "echo":
        return f"{r['rate_per_s']:,} rt/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, mismatches {r['mismatches']}"
    if scenario == "chat":
        return (f"{r['messages_per_s']:,} msg/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, lost {r['lost']}, "
                f"gaps {r['gaps']}, out of order {r['reordered']}, misrouted {r['misrouted']}, "
                f"saved {r.get('saved')}/{r['sent']} sent")
    if scenario == "broadcast":
        return (f"{r['deliveries_per_s']:,} deliveries/s, p99 {r['p99_ms']} ms, lost {r['lost']:,}, "
                f"sent {r['sent']}/{r['messages']}")
    kb = r.get("rss_per_conn_kb")
    return (f"opened {r['opened']}/{r['conns']} in {r['open_seconds']:.2f} s, "
            f"{'-' if kb is None else kb} KB/conn, answered {r['answered']}")


def main(argv=None) -> int:
    args = parse_args(argv)
    client = find_client(args.client, args.node_path)
    params = args.params
    skipped = skipped_targets()
    targets = select_targets(args.only, skipped)
    if args.compare:
        targets = baseline_targets(targets, args.compare)
    if args.profile and shutil.which("py-spy") is None:
        raise SystemExit("--profile needs py-spy on PATH (pip install py-spy)")
    nofile = raise_nofile(params["hold"]["conns"] + 1024 if "hold" in args.scenarios else 1024)

    signal.signal(signal.SIGTERM, _on_sigterm)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    output = Path(args.output) if args.output else RESULTS / f"{stamp}.json"
    profile_dir = None
    if args.profile:
        profile_dir = RESULTS / f"{stamp}-profiles"
        profile_dir.mkdir(parents=True, exist_ok=True)

    machine = machine_info(client)
    print(f"django-ws benchmark ({'quick' if args.quick else 'full'} run, {args.rounds} rounds), "
          f"{machine['nproc']} x {machine['cpu_model']}, {machine['memory_gib']} GiB, open-file limit {nofile}, "
          f"load average {load_average()}", flush=True)
    print(f"client: {client.describe()}", flush=True)
    source = source_state()
    print(f"django-ws: commit {source.get('commit', '?')}, django_ws/ digest {source['django_ws_sha256']}"
          + (f", {len(source['django_ws_uncommitted'])} files changed since" if source.get("django_ws_uncommitted")
             else ""), flush=True)
    for name, why in skipped.items():
        if not args.only or name in [t.name for t in select_targets(args.only, {})]:
            print(f"skipped {name}: {why}", flush=True)
    print(f"targets: {', '.join(t.name for t in targets)}; scenarios: {', '.join(args.scenarios)}", flush=True)

    report = {
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["bench/run.py", *(sys.argv[1:] if argv is None else argv)]),
        "quick": args.quick, "rounds": args.rounds, "machine": machine, "source": source,
        "params": {s: params[s] for s in args.scenarios},
        "targets": {t.name: t.label for t in targets}, "skipped": skipped, "results": {},
    }
    database = None
    interrupted = False
    try:
        for name in args.scenarios:
            env, ctx = {}, Context(client, profile_dir=profile_dir)
            if name == "chat":
                try:
                    database = database or db.open_database(args.database)
                    database.migrate(SERVERS, REPO)
                except (RuntimeError, ImportError) as exc:
                    print(f"skipped chat: {exc}", flush=True)
                    report["skipped"]["chat"] = str(exc)
                    continue
                env, ctx.database = {"BENCH_DATABASE": database.dsn}, database
            run_scenario(name, targets, params[name], args.rounds, ctx, env, report)
        if args.instructions:
            why = instructions.unavailable()
            if why:
                print(f"skipped instructions: {why}", flush=True)
                report["skipped"]["instructions"] = why
            else:
                report["instructions"] = instructions.measure(targets, client, args.instructions)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted; servers stopped", flush=True)
    finally:
        if database is not None:
            database.stop()
    report["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    report["interrupted"] = interrupted
    if source_state()["django_ws_sha256"] != source["django_ws_sha256"]:
        report["source"]["changed_during_run"] = True
        print("warning: django_ws/ changed while the benchmark ran; its figures may mix versions", flush=True)
    results = report["results"]
    ran = [s for s in args.scenarios if results.get(s)]
    headers = {s: SCENARIOS[s].header(params[s]) for s in ran}
    table, warnings = render_tables(results, targets, ran, params, headers)
    checks = check_targets(results)
    loads = [load for by_target in results.values() for rounds in by_target.values() for r in rounds
             for load in r.get("loadavg", [])]
    report.update(table=table, warnings=warnings, checks=checks, summary=summarize(results, ran))
    print()
    print(table)
    if report.get("instructions"):
        print()
        print(instructions.render(report["instructions"]))
    if loads:
        one_minute = sorted(float(x.split()[0]) for x in loads)
        print(f"\nLoad average (1 min) during the rounds: {one_minute[0]:.2f} to {one_minute[-1]:.2f} "
              f"on {machine['nproc']} cores")
    if warnings:
        print()
        print("\n".join(warnings))
    if checks:
        print()
        print(render_checks(checks))
    if args.profile and "echo" in results:
        print()
        print(render_profiles(results["echo"]))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwrote {os.path.relpath(output, Path.cwd())}")
    return 130 if interrupted else 0
