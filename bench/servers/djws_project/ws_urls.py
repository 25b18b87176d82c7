from django_ws.routing import ws_path

from .handlers import BroadcastHandler, EchoHandler

urlpatterns = [
    ws_path(r"^echo$", EchoHandler, name="echo"),
    ws_path(r"^room/(?P<room>\w+)$", BroadcastHandler, name="room"),
]
