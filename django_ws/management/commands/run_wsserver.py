"""``manage.py run_wsserver``: the edge and its workers, as one command."""

from __future__ import annotations

import asyncio
import errno
import re
import signal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

import django_ws
from django_ws.conf import ws_settings
from django_ws.edge.loop import loop_runner
from django_ws.worker.main import add_worker_arguments, mode_options

naiveip_re = re.compile(r"""^(?:(?P<addr>(?P<ipv4>\d{1,3}(?:\.\d{1,3}){3})|(?P<ipv6>\[[a-fA-F0-9:]+\])|(?P<fqdn>[a-zA-Z0-9\-.]+)):)?(?P<port>\d+)$""")


class Command(BaseCommand):
    help = "Starts the WebSocket server: a Tornado edge and the Django workers behind it."

    default_addr = "127.0.0.1"
    default_port = "8888"
    requires_system_checks = "__all__"

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", help="Optional port number, or ipaddr:port (default 127.0.0.1:8888)")
        parser.add_argument("--websocket-url", default="/socket",
                            help='URL prefix of the websocket routes, optionally with the original '
                                 'namespace group: "/socket/(?P<namespace>\\w*)" (default /socket).')
        parser.add_argument("--push-socket", default=None,
                            help=f"Endpoint that carries client messages to the workers (default {ws_settings.WS_PUSH_SOCKET}).")
        parser.add_argument("--sub-socket", default=None,
                            help=f"Endpoint that carries replies from the workers (default {ws_settings.WS_SUB_SOCKET}).")
        add_worker_arguments(parser, edge_option=False)
        parser.add_argument("--workers", type=int, default=1, metavar="N", help="Worker processes to start (default 1).")
        parser.add_argument("--edge-only", action="store_true",
                            help="Start no workers; they run elsewhere (manage.py run_wsworker).")
        parser.add_argument("--announce-host", default=None, metavar="HOST",
                            help="With WS_BROKER: the address or name other hosts reach this edge's tcp:// "
                                 "endpoints at, announced in their place (required when they are bound to "
                                 "0.0.0.0; default: the endpoints as given).")
        parser.add_argument("--max-connections", type=int, default=0, metavar="N",
                            help="Refuse handshakes with 503 past N open connections (default: no limit).")
        reload = parser.add_mutually_exclusive_group()
        reload.add_argument("--reload", action="store_true", dest="use_reloader", default=None,
                            help="Restart the workers when a file of the project changes (default with DEBUG = True).")
        reload.add_argument("--noreload", action="store_false", dest="use_reloader",
                            help="Do not restart the workers when a file changes (the default with DEBUG = False).")

    def handle(self, *args, **options):
        from django_ws.edge.tornado_compat import TornadoIncompatible

        try:
            from django_ws.edge.app import Edge
        except TornadoIncompatible as exc:
            raise CommandError(str(exc)) from None
        from django_ws.routing import Mount

        addr, port = self._addrport(options["addrport"])
        try:
            mount = Mount(options["websocket_url"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options["workers"] < 0 or (options["workers"] == 0 and not options["edge_only"]):
            raise CommandError("--workers must be at least 1 (use --edge-only to start no workers)")
        try:
            extra = mode_options(options)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options["mode"] == "gevent":
            try:
                import gevent  # noqa: F401
            except ImportError:
                raise CommandError("--gevent needs gevent: pip install 'django-ws-edge[gevent]'") from None
        push = options["push_socket"] or ws_settings.WS_PUSH_SOCKET
        sub = options["sub_socket"] or ws_settings.WS_SUB_SOCKET
        if options["use_reloader"] and options["edge_only"]:
            raise CommandError("--reload restarts this server's workers, and with --edge-only it has none "
                               "(restart each run_wsworker instead)")
        if options["announce_host"] and not ws_settings.WS_BROKER:
            raise CommandError("--announce-host only applies with WS_BROKER set (cluster mode)")
        try:
            edge = Edge(mount, push, sub, max_connections=options["max_connections"],
                        announce_host=options["announce_host"])
        except (ValueError, ImproperlyConfigured) as exc:  # a rate limit's window of 0, WS_BROKER, ...
            raise CommandError(str(exc)) from None
        try:
            run, self.loop_name = loop_runner(ws_settings.WS_EVENT_LOOP)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        try:
            run(self._serve(edge, addr, port, push, sub, options, extra))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CommandError(f"port {port} on {addr} is already in use.") from None
            raise CommandError(str(exc)) from None
        except RuntimeError as exc:  # EndpointInUse and friends
            raise CommandError(str(exc)) from None

    def _addrport(self, addrport):
        if not addrport:
            return self.default_addr, int(self.default_port)
        match = naiveip_re.match(addrport)
        if match is None:
            raise CommandError(f'"{addrport}" is not a valid port number or address:port pair.')
        addr = match["addr"] or self.default_addr
        if addr.startswith("["):
            addr = addr[1:-1]
        return addr, int(match["port"])

    @staticmethod
    def _reloading(options) -> bool:
        """--reload, --noreload, or else DEBUG, as runserver decides."""
        return settings.DEBUG if options["use_reloader"] is None else options["use_reloader"]

    def _reload_state(self, options, wanted: int) -> str:
        """The banner's word on autoreload."""
        if not wanted:
            return "off (--edge-only: no workers here to restart)"
        if not self._reloading(options):
            return "off" + (" (--noreload)" if options["use_reloader"] is False else " (DEBUG = False; --reload turns it on)")
        why = "--reload" if options["use_reloader"] else "DEBUG = True"
        return f"on ({why}): the workers restart when a file of the project changes; --noreload turns it off"

    def _say(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    async def _serve(self, edge, addr, port, push, sub, options, extra):
        from django_ws.edge.supervisor import Supervisor, worker_command
        from django_ws.routing import get_ws_urlconf

        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        wanted = 0 if options["edge_only"] else options["workers"]
        ready = asyncio.Event()

        def worker_change(what, worker):
            self._say(f"Worker {worker.worker_id} {what}; {len(edge.core.workers)} connected")
            if len(edge.core.workers) >= wanted:
                ready.set()

        edge.on_worker_change = worker_change
        edge.start(addr, port)
        root = get_ws_urlconf()
        legacy = len(root.legacy_regexes)
        host = f"[{addr}]" if ":" in addr else addr
        self._say(
            f"django-ws {django_ws.__version__}, using settings {settings.SETTINGS_MODULE!r}\n"
            f"WebSocket server at ws://{host}:{port}{edge.mount.prefix}/ (edge {edge.edge_id}, {self.loop_name})\n"
            + (f"Socket.IO at http://{host}:{port}{edge.mount.prefix}/socket.io/ (namespaces are routes)\n"
               if edge.socketio is not None else "")
            + f"Routes: {len(root.urlpatterns) - legacy} from {root.source}, "
            f"{len(ws_settings.DEFAULT_WS_HANDLERS)} namespaces from DEFAULT_WS_HANDLERS\n"
            f"Workers: {wanted} x {options['mode']}; push {push}, sub {sub}\n"
            + (f"Broker: {edge.broker_config.name}; announced as {edge.broker.announced_endpoints}\n"
               if edge.broker is not None else "")
            + f"Autoreload: {self._reload_state(options, wanted)}\n"
            + "Quit the server with CONTROL-C."
        )
        supervisor = None
        if wanted:
            command = worker_command(options["mode"], push, sub,
                                     [f"--max-processes={extra['max_processes']}"] if extra else [])
            supervisor = Supervisor(command, wanted, self._say)
            supervisor.start()

        async def announce_ready():
            await ready.wait()
            self._say(f"Ready: {len(edge.core.workers)} workers connected.")

        # Before "Ready:": a SIGHUP sent as soon as the server says it is
        # ready must find its handler, not the default action (exit).
        timeout = float(ws_settings.WS_SHUTDOWN_TIMEOUT)
        reloader = None
        if supervisor:
            def restart_workers(why: str = "SIGHUP"):
                self._say(f"{why}: restarting the workers; the edge and its clients stay.")
                # The new workers load the routes now on disk; the edge's may be stale.
                edge.core.routes_from_workers = True
                supervisor.request_restart(lambda: len(edge.core.workers), timeout)

            loop.add_signal_handler(signal.SIGHUP, restart_workers)
            if self._reloading(options):
                from django_ws.edge.autoreload import WorkerReloader

                def files_changed(paths: list[str]) -> None:
                    more = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
                    restart_workers(f"Autoreload: {paths[0]}{more} changed")

                reloader = WorkerReloader(loop, files_changed, self._say)
                reloader.start()
        else:
            loop.add_signal_handler(
                signal.SIGHUP, lambda: self._say("SIGHUP: no workers here to restart (--edge-only); ignored.")
            )
        announcer = asyncio.ensure_future(announce_ready()) if wanted else None
        if not wanted:
            self._say("Ready: edge only; waiting for workers.")
        await stop.wait()
        if announcer:
            announcer.cancel()
        if reloader:
            reloader.stop()
        self._say("Shutting down: closing clients with 1001.")
        edge.on_worker_change = None
        await edge.shutdown(timeout)
        if supervisor:
            await supervisor.stop(timeout)
        self._say("Stopped.")
