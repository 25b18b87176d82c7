from django_ws.routing import include, ws_path

from .ws_urls import urlpatterns as project_routes

urlpatterns = [*project_routes, ws_path(r"^django-ws/admin/", include("django_ws.admin.ws_urls"))]
