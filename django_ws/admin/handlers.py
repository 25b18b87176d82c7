"""The live view's socket: a route of the project's own, served by its own edges and workers.

Mount it in WS_URLCONF (``ws_path(r"^django-ws/admin/", include("django_ws.admin.ws_urls"))``);
the page finds it by its name and falls back to reloading when it is not
mounted or the socket is refused.
"""

from __future__ import annotations

import typing

from django_ws.exceptions import HandshakeDenied
from django_ws.handlers import JsonWebSocketHandler

from .live import gather


class RealtimeHandler(JsonWebSocketHandler):
    """Answers each query of the admin page (``{"group": ..., "offset": ...}``) with the gathered figures.

    The page asks every few seconds, so a page left open in a background tab
    that the browser throttles asks less, and a closed one not at all: the
    edges are asked only for someone looking. Staff with
    ``django_ws.view_realtime`` only, as the page.
    """

    login_required = True
    permission_required = "django_ws.view_realtime"

    def on_connect(self) -> None:
        if not getattr(self.request.user, "is_staff", False):  # the admin's own rule: staff, then permissions
            raise HandshakeDenied(403, "staff only")

    def on_json(self, content: typing.Any) -> None:
        self.send_json(gather(content if isinstance(content, dict) else {}))
