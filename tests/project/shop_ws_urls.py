from django_ws.routing import ws_path

app_name = "shop"
urlpatterns = [
    ws_path(r"^item/(?P<pk>\d+)$", "tests.project.handlers.InfoHandler", name="item"),
]
