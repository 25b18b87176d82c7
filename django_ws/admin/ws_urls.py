"""The admin live view's WebSocket route, to include in WS_URLCONF (docs/operating.rst)."""

from django_ws.routing import ws_path

from .handlers import RealtimeHandler

urlpatterns = [
    ws_path(r"^realtime$", RealtimeHandler, name="django_ws_realtime"),
]
