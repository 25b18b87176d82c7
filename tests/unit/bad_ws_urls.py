"""A websocket URLconf with broken handlers, for the system-check tests."""

from django_ws.routing import ws_path
from tests.project import handlers

urlpatterns = [
    ws_path(r"^echo$", handlers.EchoHandler, name="echo"),
    # The module exists, the class does not.
    ws_path(r"^ghost$", "tests.project.handlers.NoSuchHandler", name="ghost"),
]
