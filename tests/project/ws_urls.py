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
    ws_path(r"^history/(?P<room>\w+)$", handlers.HistoryRoomHandler, name="history"),
    ws_path(r"^presence/(?P<room>\w+)$", handlers.PresenceWatchHandler, name="presence"),
    ws_path(r"^people/(?P<room>\w+)$", handlers.PeopleHandler, name="people"),
    ws_path(r"^whoami$", handlers.WhoAmIHandler, name="whoami"),
    ws_path(r"^private$", handlers.PrivateHandler, name="private"),
    ws_path(r"^private-kept$", handlers.KeptPrivateHandler, name="private-kept"),
    ws_path(r"^db/(?P<tag>[\w-]+)$", handlers.DatabaseHandler, name="db"),
    ws_path(r"^info$", "tests.project.handlers.InfoHandler", {"extra": "yes"}, name="info"),
    ws_path(r"^shop/", include("tests.project.shop_ws_urls", namespace="shop")),
    ws_path(r"^typed$", "tests.project.json_handlers.TypedHandler", name="typed"),
    ws_path(r"^eager$", "tests.project.json_handlers.EagerHandler", name="eager"),
    ws_path(r"^requests$", "tests.project.json_handlers.RequestHandler", name="requests"),
    ws_path(r"^rel/", include("tests.project.reliability_ws_urls", namespace="rel")),
    # tests/e2e/test_security.py
    ws_path(r"^request/(?P<tag>\w+)$", handlers.RequestInfoHandler, name="request"),
    ws_path(r"^perm$", handlers.PermissionHandler, name="perm"),
    ws_path(r"^connectlog/(?P<tag>[\w-]+)$", handlers.ConnectReportHandler, name="connectlog"),
    ws_path(r"^token$", handlers.TokenHandler, name="token"),
    ws_path(r"^subprotocol$", handlers.SubprotocolHandler, name="subprotocol"),
    ws_path(r"^flood/(?P<tag>[\w-]+)$", handlers.FloodHandler, name="flood"),
    ws_path(r"^gated$", handlers.GatedConnectHandler, name="gated"),
    # tests/e2e/test_tokens.py
    ws_path(r"^scoped$", handlers.ScopedHandler, name="scoped"),
    ws_path(r"^tokenlog/(?P<tag>[\w-]+)$", handlers.TokenConnectReportHandler, name="tokenlog"),
    # tests/e2e/test_socketio.py
    ws_path(r"^sio/(?P<tag>[\w-]+)$", "tests.project.socketio_handlers.EventsHandler", name="sio"),
]
