from django_ws.routing import ws_path

from .reliability_handlers import RecordedEchoHandler, SlowEchoHandler

app_name = "rel"
urlpatterns = [
    ws_path(r"^echo/(?P<tag>[\w-]+)$", RecordedEchoHandler, name="echo"),
    ws_path(r"^slow/(?P<tag>[\w-]+)$", SlowEchoHandler, name="slow"),
]
