"""A websocket URLconf whose dotted handler is a model, not a WebSocketHandler."""

from django_ws.routing import ws_path

urlpatterns = [
    ws_path(r"^visit$", "tests.project.models.Visit", name="visit"),
]
