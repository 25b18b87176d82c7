"""``manage.py ws_send``: say something to connected clients from the shell or cron."""

from __future__ import annotations

import uuid

from django.core.management.base import BaseCommand, CommandError

from django_ws.exceptions import SendError
from django_ws.sending import group_members, send_to_connection, send_to_group

#: Exit status when some edges were not reached but some clients got the message.
PARTIAL = 3


class Command(BaseCommand):
    help = ("Sends a message to a group or a connection, or lists a group's members, across every edge. "
            f"Exit status 0: every edge confirmed; 1: no client got it; {PARTIAL}: some clients got it, "
            "some edges were not reached (retry with the --key printed).")

    def add_arguments(self, parser):
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--group", help="Send to every connection in this group.")
        target.add_argument("--connection", help="Send to this connection id.")
        target.add_argument("--members", metavar="GROUP", help="Print the connection ids in GROUP, one a line.")
        parser.add_argument("message", nargs="?", help="The text to send (a text frame).")
        parser.add_argument("--exclude", help="With --group: a connection id to leave out.")
        parser.add_argument("--timeout", type=float, default=None, help="Seconds to wait for every edge (default WS_SEND_TIMEOUT).")
        parser.add_argument("--key", default=None,
                            help="Idempotency key: edges that delivered a message with this key within "
                                 "WS_SEND_KEY_TTL do not deliver it again. Default: a fresh one, printed on failure.")

    def handle(self, *args, **options):
        if options["members"]:
            try:
                for conn_id in group_members(options["members"], timeout=options["timeout"]):
                    self.stdout.write(conn_id)
            except SendError as exc:
                raise CommandError(str(exc)) from None
            return
        if options["message"] is None:
            raise CommandError("give the message to send")
        key = options["key"] or uuid.uuid4().hex
        try:
            if options["group"]:
                n = send_to_group(options["group"], options["message"], exclude=options["exclude"],
                                  timeout=options["timeout"], key=key).delivered
                if n is None:  # cluster mode: one publish, and the edges count no clients
                    self.stdout.write(f"Published to {options['group']!r} through the broker.")
                else:
                    self.stdout.write(f"Delivered to {n} connection(s) in {options['group']!r}.")
            else:
                if not send_to_connection(options["connection"], options["message"], timeout=options["timeout"], key=key):
                    raise CommandError(f"no edge holds connection {options['connection']!r}")
                self.stdout.write("Delivered.")
        except SendError as exc:
            for endpoint, why in exc.unreached.items():
                self.stderr.write(f"Not reached: {endpoint} ({why})")
            retry = f"retry with --key {exc.key} so that no client gets it twice"
            if exc.delivered:
                raise CommandError(f"Delivered to {exc.delivered} connection(s) on {len(exc.reached)} edge(s), "
                                   f"{len(exc.unreached)} edge(s) not reached; {retry}.", returncode=PARTIAL) from None
            raise CommandError(f"Delivered to no connection: {exc}; {retry}.") from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
