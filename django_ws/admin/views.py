"""The admin page itself: one view that shows, two that act, each behind its own permission.

Registered as the ModelAdmin of :class:`django_ws.models.Realtime`, so that
the admin lists it under the app for those who may see it; its URLs replace
the changelist's (there are no objects to list).
"""

from __future__ import annotations

import typing
import urllib.parse

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse

from django_ws.exceptions import SendError
from django_ws.models import Realtime
from django_ws.routing import reverse_ws
from django_ws.sending import close_connection, send_to_group

from .live import gather

#: The name of the live socket's route in WS_URLCONF (django_ws.admin.ws_urls names it so).
LIVE_ROUTE = "django_ws_realtime"


if typing.TYPE_CHECKING:  # django-stubs makes ModelAdmin generic; Django 4.2's is not subscriptable
    _ModelAdmin = admin.ModelAdmin[Realtime]
else:
    _ModelAdmin = admin.ModelAdmin


def allowed(user: typing.Any, permission: str) -> bool:
    """Whether ``user`` (the request's: maybe anonymous) is active and has ``permission``."""
    return bool(user.is_active and user.has_perm(permission))


class RealtimeAdmin(_ModelAdmin):
    """The "Realtime" page: ``django_ws.view_realtime`` to see it, one more permission per action."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Realtime | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Realtime | None = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Realtime | None = None) -> bool:
        return allowed(request.user, "django_ws.view_realtime")

    def get_urls(self) -> list[typing.Any]:
        wrap = self.admin_site.admin_view
        return [
            path("", wrap(self.realtime_view), name="django_ws_realtime"),
            # The name the admin index links a model by: the same page.
            path("", wrap(self.realtime_view), name="django_ws_realtime_changelist"),
            path("data/", wrap(self.data_view), name="django_ws_realtime_data"),
            path("close/", wrap(self.close_view), name="django_ws_realtime_close"),
            path("send/", wrap(self.send_view), name="django_ws_realtime_send"),
        ]

    # -- seeing -------------------------------------------------------------------------

    def realtime_view(self, request: HttpRequest) -> HttpResponse:
        """The page: its first figures inline, then the live socket (or a reload every few seconds)."""
        self._require(request, "django_ws.view_realtime")
        view = gather(request.GET.dict())
        user = request.user
        context = {
            **self.admin_site.each_context(request),
            "title": "Realtime",
            "opts": self.model._meta,
            "view_json": view,
            "config": {
                "socket": self._socket_url(request),
                "data": reverse("admin:django_ws_realtime_data"),
                "close": reverse("admin:django_ws_realtime_close"),
                "send": reverse("admin:django_ws_realtime_send"),
                "can_close": allowed(user, "django_ws.close_connection"),
                "can_send": allowed(user, "django_ws.send_test_message"),
            },
        }
        return TemplateResponse(request, "admin/django_ws/realtime.html", context)

    def data_view(self, request: HttpRequest) -> JsonResponse:
        """The same figures as JSON (what the page reads when it has no socket, and scripts may read)."""
        self._require(request, "django_ws.view_realtime")
        return JsonResponse(gather(request.GET.dict()))

    @staticmethod
    def _socket_url(request: HttpRequest) -> str:
        try:
            return reverse_ws(LIVE_ROUTE, request=request)
        except NoReverseMatch:  # the route is not mounted: the page reloads instead (docs/operating.rst)
            return ""

    # -- acting -------------------------------------------------------------------------

    def close_view(self, request: HttpRequest) -> HttpResponse:
        """Close one connection with a code and a reason, as close_connection() does from code."""
        self._require(request, "django_ws.close_connection")
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        conn_id = request.POST.get("connection", "").strip()
        reason = request.POST.get("reason", "")
        try:
            code = int(request.POST.get("code", "1000"))
            if not conn_id:
                raise ValueError("name the connection to close")
            result = close_connection(conn_id, code, reason)
        except (ValueError, SendError) as exc:
            messages.error(request, f"Not closed: {exc}")
            return self._back(request)
        if result.delivered:
            text = f"Closed connection {conn_id} with {code}" + (f" ({reason})" if reason else "")
            messages.success(request, text)
        else:
            text = f"No edge holds connection {conn_id} open: nothing closed"
            messages.warning(request, text)
        self._log(request, conn_id, text)
        return self._back(request)

    def send_view(self, request: HttpRequest) -> HttpResponse:
        """Send a test message (text) to a group, as send_to_group() does from code."""
        self._require(request, "django_ws.send_test_message")
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        group = request.POST.get("group", "").strip()
        data = request.POST.get("data", "")
        try:
            if not group:
                raise ValueError("name the group to send to")
            result = send_to_group(group, data)
        except (ValueError, SendError) as exc:
            messages.error(request, f"Not sent: {exc}")
            return self._back(request)
        reached = "an unknown number of" if result.delivered is None else result.delivered  # cluster mode: one publish
        text = f"Sent a test message to group {group}: {reached} connection(s)"
        messages.success(request, text)
        self._log(request, group, text)
        return self._back(request)

    @staticmethod
    def _require(request: HttpRequest, permission: str) -> None:
        if not allowed(request.user, permission):
            raise PermissionDenied(f"{permission} is required")

    def _back(self, request: HttpRequest) -> HttpResponseRedirect:
        url = reverse("admin:django_ws_realtime")
        group = request.POST.get("back_group", "").strip()
        return HttpResponseRedirect(f"{url}?{urllib.parse.urlencode({'group': group})}" if group else url)

    def _log(self, request: HttpRequest, target: str, message: str) -> None:
        """Record the action in the admin's history (LogEntry), as the admin does for a change."""
        LogEntry.objects.create(
            user_id=request.user.pk, content_type=ContentType.objects.get_for_model(self.model),
            object_id=target, object_repr=target[:200], action_flag=CHANGE, change_message=message)
