"""The Django admin's "Realtime" page: a live view of the edges, with two actions (docs/operating.rst).

Django's admin imports this module (``autodiscover``) when
``django.contrib.admin`` is installed; it then registers the page under the
app, as the model :class:`django_ws.models.Realtime`, whose only job is to
carry the permissions. The live updates come through the project's own
WebSocket routes (:class:`django_ws.admin.handlers.RealtimeHandler`).
"""

from django.apps import apps

if apps.is_installed("django.contrib.admin"):
    from django.contrib import admin

    from django_ws.models import Realtime

    from .views import RealtimeAdmin

    admin.site.register(Realtime, RealtimeAdmin)
