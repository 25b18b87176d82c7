from django_ws.routing import ws_path

urlpatterns = [
    ws_path(r"^(?P<room>\w+)$", "chat.handlers.ChatHandler", name="chat"),
]
