"""``manage.py run_wsworker``: Django workers for edges that run elsewhere."""

from __future__ import annotations

import os
import sys

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from django_ws.conf import ws_settings
from django_ws.worker.main import (
    add_worker_arguments,
    banner,
    edge_follower,
    follows_broker,
    mode_options,
    parse_edges,
    run_worker,
)


class Command(BaseCommand):
    help = "Runs one worker process that serves handlers for one or more edges (run_wsserver --edge-only)."
    requires_system_checks = "__all__"

    def add_arguments(self, parser):
        parser.add_argument("--push-socket", default=None,
                            help=f"The edge's push endpoint (default {ws_settings.WS_PUSH_SOCKET}).")
        parser.add_argument("--sub-socket", default=None,
                            help=f"The edge's sub endpoint (default {ws_settings.WS_SUB_SOCKET}).")
        add_worker_arguments(parser)

    def handle(self, *args, **options):
        follow = follows_broker(options["edge"], options["push_socket"], options["sub_socket"])
        try:
            edges = [] if follow else parse_edges(options["edge"], options["push_socket"] or ws_settings.WS_PUSH_SOCKET,
                                                  options["sub_socket"] or ws_settings.WS_SUB_SOCKET)
            extra = mode_options(options)
            follower = edge_follower() if follow else None
        except (ValueError, ImproperlyConfigured) as exc:
            raise CommandError(str(exc)) from None
        if options["mode"] == "gevent":
            # Django is already imported here, too late to patch: start over
            # in a process that patches first.
            argv = [sys.executable, "-m", "django_ws.worker", "--gevent"]
            for push, sub in edges:
                argv += ["--edge", f"{push},{sub}"]
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (sys.path[0] or os.getcwd(), env.get("PYTHONPATH")) if p)
            os.execve(sys.executable, argv, env)
        self.stdout.write(banner(options["mode"], edges, follower))
        run_worker(options["mode"], edges, follow=follow, **extra)
