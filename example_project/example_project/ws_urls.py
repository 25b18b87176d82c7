from django_ws.routing import include, ws_path

from chat.handlers import EchoHandler

urlpatterns = [
    ws_path(r"^echo$", EchoHandler, name="echo"),
    ws_path(r"^chat/", include("chat.ws_urls")),
]
