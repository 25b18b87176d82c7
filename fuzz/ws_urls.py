"""The routes the routing target resolves: converters, regexes, include() and namespaces, as users write them."""

from django_ws.routing import include, ws_path

HANDLER = "django_ws.WebSocketHandler"

shop = [
    ws_path(r"^cart/(?P<cart>[0-9a-f]{8})$", HANDLER, name="cart"),
    ws_path(r"^items/(?P<item>\d+)/(?P<slug>[-\w]+)$", HANDLER, name="item"),
]

urlpatterns = [
    ws_path(r"^echo$", HANDLER, name="echo"),
    ws_path(r"^room/(?P<room>\w+)$", HANDLER, name="room"),
    ws_path(r"^files/(?P<path>.+)$", HANDLER, name="files"),
    ws_path(r"^shop/", include((shop, "shop"), namespace="shop")),
]
