"""``manage.py ws_keygen``: fresh CURVE keys for the ZeroMQ links, ready to paste."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = ("Prints a new WS_CURVE setting: the key pairs that encrypt and authenticate "
            "tcp:// links between edges, workers and senders.")
    requires_system_checks = ()  # a fresh project with broken settings may still want keys

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true",
                            help="Print the keys as one line of JSON (for an environment variable or a secret store).")

    def handle(self, *args, **options):
        import zmq

        if not zmq.has("curve"):
            raise CommandError("this libzmq was built without CURVE (zmq.has('curve') is False); "
                               "install a pyzmq wheel, which bundles a libzmq with CURVE")
        from django_ws.security import generate_curve

        keys = generate_curve()
        if options["json"]:
            self.stdout.write(json.dumps(keys))
            return
        lines = [
            "# ZeroMQ CURVE for tcp:// endpoints (django-ws). The same value on every host:",
            "# edges use server_secret, workers and senders client_secret. Keep it out of",
            "# version control: anyone holding client_secret can pose as a worker.",
            "WS_CURVE = {",
            *(f"    {name!r}: {value!r}," for name, value in keys.items()),
            "}",
        ]
        self.stdout.write("\n".join(lines))
