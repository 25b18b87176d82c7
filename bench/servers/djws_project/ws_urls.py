from django_ws.routing import ws_path

from .handlers import BroadcastHandler, ChatHandler, EchoHandler

urlpatterns = [
    ws_path(r"^echo$", EchoHandler, name="echo"),
    ws_path(r"^room/(?P<room>\w+)$", BroadcastHandler, name="room"),
    ws_path(r"^chat/(?P<room>\w+)$", ChatHandler, name="chat"),
]
