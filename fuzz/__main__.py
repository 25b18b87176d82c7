"""``python -m fuzz <target> [--seconds N] [--runs N]``: fuzz one target (see fuzz/__init__.py).

New inputs that reach new code go to a scratch directory (``--workdir``),
not into the seed corpus in the repository; a crash is written there as
``crash-<sha1>`` and the command exits non-zero. ``--merge --workdir DIR``
copies the inputs of DIR that add coverage into the seed corpus.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
import tempfile

from fuzz import TARGETS

HERE = os.path.dirname(os.path.abspath(__file__))


def corpus_dir(target: str) -> str:
    return os.path.join(HERE, "corpus", target)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", nargs="?", choices=sorted(TARGETS), help="what to fuzz")
    parser.add_argument("--list", action="store_true", help="list the targets and stop")
    parser.add_argument("--seconds", type=int, default=60, help="how long to run (default 60)")
    parser.add_argument("--runs", type=int, default=-1, help="stop after this many inputs (default: no limit)")
    parser.add_argument("--workdir", help="where new inputs and crashes go (default: a new temporary directory)")
    parser.add_argument("--merge", action="store_true",
                        help="copy the inputs of --workdir that add coverage into fuzz/corpus/<target>/, and stop")
    # libFuzzer's own -flags (and directories after them) pass through: its merge runs this command again.
    args, libfuzzer_flags = parser.parse_known_args(argv)
    if libfuzzer_flags and not libfuzzer_flags[0].startswith("-"):
        parser.error(f"unrecognized arguments: {' '.join(libfuzzer_flags)}")
    if args.list or not args.target:
        for name, what in TARGETS.items():
            print(f"{name:10} {what}")
        return
    try:
        import atheris
    except ImportError:
        parser.exit(2, "python -m fuzz: atheris is not installed (pip install 'django-ws-edge[test]', "
                       "or pip install atheris)\n")
    if args.merge and not args.workdir:
        parser.error("--merge takes the inputs of an earlier run: give its --workdir")
    workdir = args.workdir or tempfile.mkdtemp(prefix=f"django-ws-fuzz-{args.target}-")
    os.makedirs(workdir, exist_ok=True)
    # Only the project's modules are instrumented: the fuzzer looks for new paths in our code.
    with atheris.instrument_imports(include=["django_ws"]):
        module = importlib.import_module(f"fuzz.{args.target}")
    # What libFuzzer runs when it starts this target again (a merge does): a shell command line.
    command = f"{shlex.quote(sys.executable)} -m fuzz {args.target}"
    if libfuzzer_flags:
        atheris.Setup([command, *libfuzzer_flags], module.test_one_input)
        atheris.Fuzz()
        return
    seeds = corpus_dir(args.target)
    options = [f"-max_total_time={args.seconds}", f"-runs={args.runs}", "-print_final_stats=1",
               f"-artifact_prefix={workdir}/", "-rss_limit_mb=1024", "-timeout=10"]
    if args.merge:
        options += ["-merge=1", seeds, workdir]
    else:
        options += [workdir, seeds]  # libFuzzer writes new inputs into the first directory
    print(f"fuzz {args.target}: {TARGETS[args.target]}; seeds {seeds}, new inputs and crashes in {workdir}",
          flush=True)
    atheris.Setup([command, *options], module.test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
