"""Django, configured for the targets that need it: an in-memory database with one user, and fuzz/ws_urls.py."""

from __future__ import annotations

import django
from django.conf import settings


def setup() -> None:
    if settings.configured:
        return
    settings.configure(
        SECRET_KEY="fuzz-" + "k" * 50,
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "django_ws"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        USE_TZ=True,
        ROOT_URLCONF=__name__,
        WS_URLCONF="fuzz.ws_urls",
        WS_TOKEN_QUERY_PARAM="token",
    )
    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("migrate", verbosity=0, run_syncdb=True)
    get_user_model().objects.create_user("alice", password="x")


urlpatterns: list = []
