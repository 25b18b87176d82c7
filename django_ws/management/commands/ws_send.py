"""``manage.py ws_send``: say something to connected clients from the shell or cron."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from django_ws.exceptions import SendError
from django_ws.sending import group_members, send_to_connection, send_to_group


class Command(BaseCommand):
    help = "Sends a message to a group or a connection, or lists a group's members, across every edge."

    def add_arguments(self, parser):
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--group", help="Send to every connection in this group.")
        target.add_argument("--connection", help="Send to this connection id.")
        target.add_argument("--members", metavar="GROUP", help="Print the connection ids in GROUP, one a line.")
        parser.add_argument("message", nargs="?", help="The text to send (a text frame).")
        parser.add_argument("--exclude", help="With --group: a connection id to leave out.")
        parser.add_argument("--timeout", type=float, default=None, help="Seconds to wait for every edge (default WS_SEND_TIMEOUT).")

    def handle(self, *args, **options):
        try:
            if options["members"]:
                for conn_id in group_members(options["members"], timeout=options["timeout"]):
                    self.stdout.write(conn_id)
                return
            if options["message"] is None:
                raise CommandError("give the message to send")
            if options["group"]:
                n = send_to_group(options["group"], options["message"], exclude=options["exclude"],
                                  timeout=options["timeout"])
                self.stdout.write(f"Delivered to {n} connection(s) in {options['group']!r}.")
            else:
                if not send_to_connection(options["connection"], options["message"], timeout=options["timeout"]):
                    raise CommandError(f"no edge holds connection {options['connection']!r}")
                self.stdout.write("Delivered.")
        except SendError as exc:
            raise CommandError(str(exc)) from None
