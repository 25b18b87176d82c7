"""A websocket URLconf that mistakenly uses django.urls.path()."""

from django.http import HttpResponse
from django.urls import path

from django_ws.routing import ws_path
from tests.project import handlers


def view(request):
    return HttpResponse("not a websocket handler")


urlpatterns = [
    ws_path(r"^echo$", handlers.EchoHandler, name="echo"),
    path("page/", view, name="page"),
]
