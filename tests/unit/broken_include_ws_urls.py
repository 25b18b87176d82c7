"""A websocket URLconf that include()s a module without urlpatterns (tests.unit itself)."""

from django_ws.routing import include, ws_path

urlpatterns = [
    ws_path(r"^nothing/", include("tests.unit")),
]
