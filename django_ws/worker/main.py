"""Command line of a worker process, shared by run_wsworker and run_wsserver."""

from __future__ import annotations

import argparse
import os
import sys


def add_worker_arguments(parser, *, edge_option: bool = True) -> None:
    """The options that choose how handlers run (the original README's flags)."""
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--threaded", dest="mode", action="store_const", const="threaded",
                       help="Run handlers on a pool of threads, each connection's messages in order (default).")
    modes.add_argument("--gevent", dest="mode", action="store_const", const="gevent",
                       help="Run handlers on greenlets (gevent, monkey-patched), each connection's messages in order.")
    modes.add_argument("--multiprocess", dest="mode", action="store_const", const="multiprocess",
                       help="Run each connection's handler in its own process.")
    parser.set_defaults(mode="threaded")
    parser.add_argument("--max-processes", type=int, default=None, metavar="N",
                        help="With --multiprocess: most handler processes per worker (default 64); "
                             "connections past it are closed with 1013 (try again later).")
    if edge_option:
        parser.add_argument("--edge", action="append", default=[], metavar="PUSH,SUB",
                            help="Serve the edge at these two endpoints (repeat for several edges); "
                                 "default: --push-socket,--sub-socket, or, with WS_BROKER set and none of "
                                 "these options, every edge announced on the broker, as they come and go.")


def mode_options(options) -> dict:
    max_processes = options.get("max_processes") if isinstance(options, dict) else options.max_processes
    mode = options["mode"] if isinstance(options, dict) else options.mode
    if max_processes is not None and mode != "multiprocess":
        raise ValueError("--max-processes only applies to --multiprocess")
    return {"max_processes": max_processes} if max_processes is not None else {}


def parse_edges(edges: list[str], push: str, sub: str) -> list[tuple[str, str]]:
    if not edges:
        return [(push, sub)]
    pairs = []
    for edge in edges:
        push_endpoint, sep, sub_endpoint = edge.partition(",")
        if not sep or not push_endpoint or not sub_endpoint:
            raise ValueError(f"--edge {edge!r}: expected PUSH,SUB such as tcp://10.0.0.1:5555,tcp://10.0.0.1:5556")
        pairs.append((push_endpoint, sub_endpoint))
    return pairs


def follows_broker(edges: list[str], push: str | None, sub: str | None) -> bool:
    """Whether a worker given these options follows the edges announced on the broker (cluster mode)."""
    from django_ws.conf import ws_settings

    return bool(ws_settings.WS_BROKER) and not edges and not push and not sub


def edge_follower():
    """The EdgeFollower of the configured broker (the worker starts it when it serves)."""
    from django_ws.broker import config
    from django_ws.broker.discovery import EdgeFollower
    from django_ws.broker.keys import Keys

    return EdgeFollower(config.configured(), Keys(config.prefix()), config.lease())


def banner(mode_name: str, edges: list[tuple[str, str]], follower) -> str:
    """The line a worker prints when it starts (scripts and tests wait for "serving")."""
    if follower is not None:
        return f"Worker ({mode_name}) serving the edges announced on {follower.config.name}; quit with CONTROL-C."
    return f"Worker ({mode_name}) serving {', '.join(p for p, _ in edges)}; quit with CONTROL-C."


def get_mode(name: str, **options):
    """The Mode called ``name`` (threaded, gevent, multiprocess), made with ``options``.

    The modes are imported here, when a worker starts, not when this module is:
    ``--gevent`` monkey-patches before threading is imported (worker/__main__.py).
    """
    from django_ws.worker.modes import GeventMode, ThreadedMode
    from django_ws.worker.multiprocess import MultiprocessMode

    modes = {"threaded": ThreadedMode, "gevent": GeventMode, "multiprocess": MultiprocessMode}
    try:
        mode = modes[name]
    except KeyError:
        raise ValueError(f"unknown worker mode {name!r}; choose threaded, gevent or multiprocess") from None
    return mode(**options)


def run_worker(mode_name: str, edges: list[tuple[str, str]], follow: bool = False, **mode_kwargs) -> None:
    from django_ws.worker.server import Worker

    follower = edge_follower() if follow else None
    mode = get_mode(mode_name, **mode_kwargs)
    worker = Worker(mode, edges, follower=follower)
    worker.install_signal_handlers()
    worker.serve()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m django_ws.worker", description=__doc__)
    add_worker_arguments(parser)
    parser.add_argument("--push-socket", default=None)
    parser.add_argument("--sub-socket", default=None)
    parser.add_argument("--settings", default=None, help="Django settings module")
    args = parser.parse_args(argv)
    if args.settings:
        os.environ["DJANGO_SETTINGS_MODULE"] = args.settings
    import django

    django.setup()
    from django_ws.conf import ws_settings

    follow = follows_broker(args.edge, args.push_socket, args.sub_socket)
    try:
        edges = [] if follow else parse_edges(args.edge, args.push_socket or ws_settings.WS_PUSH_SOCKET,
                                              args.sub_socket or ws_settings.WS_SUB_SOCKET)
        kwargs = mode_options(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if "DJANGO_WS_SUPERVISOR_PID" not in os.environ:
        # run_wsworker --gevent starts over here before it could say so itself (run_wsserver's workers keep quiet).
        print(banner(args.mode, edges, edge_follower() if follow else None), flush=True)
    run_worker(args.mode, edges, follow=follow, **kwargs)
    return 0
