from django.apps import AppConfig
from django.core.signals import setting_changed


class DjangoWsConfig(AppConfig):
    name = "django_ws"
    verbose_name = "django-ws"
    # The one model (models.Realtime) has no table; its id is named so that no project's
    # DEFAULT_AUTO_FIELD (or its absence: models.W042) makes a migration or a warning.
    default_auto_field = "django.db.models.AutoField"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
        from .access import connect_signals
        from .routing.resolvers import clear_ws_urlconf_cache

        setting_changed.connect(clear_ws_urlconf_cache)
        connect_signals()
