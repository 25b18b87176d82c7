from django_ws.routing import include, ws_path

from . import handlers

urlpatterns = [
    ws_path(r"^echo$", handlers.EchoHandler, name="echo"),
    ws_path(r"^open/(?P<result>none|true|false)$", handlers.OpenContractHandler, name="open"),
    ws_path(r"^observe$", handlers.ObserverHandler, name="observe"),
    ws_path(r"^tracked/(?P<tag>[\w-]+)$", handlers.TrackedHandler, name="tracked"),
    ws_path(r"^fail/(?P<tag>[\w-]+)$", handlers.FailingHandler, name="fail"),
    ws_path(r"^loop/(?P<tag>[\w-]+)$", handlers.LoopHandler, name="loop"),
    ws_path(r"^closer$", handlers.ClosingHandler, name="closer"),
    ws_path(r"^room/(?P<room>\w+)$", handlers.RoomHandler, name="room"),
    ws_path(r"^whoami$", handlers.WhoAmIHandler, name="whoami"),
    ws_path(r"^private$", handlers.PrivateHandler, name="private"),
    ws_path(r"^db/(?P<tag>[\w-]+)$", handlers.DatabaseHandler, name="db"),
    ws_path(r"^info$", "tests.project.handlers.InfoHandler", {"extra": "yes"}, name="info"),
    ws_path(r"^shop/", include("tests.project.shop_ws_urls", namespace="shop")),
    ws_path(r"^rel/", include("tests.project.reliability_ws_urls", namespace="rel")),
]
