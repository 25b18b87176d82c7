"""The test project with Django's admin, for the admin's live view (tests/e2e/test_admin_live.py)."""

import os

from .settings import *  # noqa: F401,F403
from .settings import INSTALLED_APPS, MIDDLEWARE

INSTALLED_APPS = ["django.contrib.admin", *INSTALLED_APPS, "django.contrib.messages", "django.contrib.staticfiles"]
MIDDLEWARE = [*MIDDLEWARE[:1], "django.middleware.common.CommonMiddleware", "django.middleware.csrf.CsrfViewMiddleware",
              *MIDDLEWARE[1:], "django.contrib.messages.middleware.MessageMiddleware"]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
ROOT_URLCONF = "tests.project.admin_urls"
WS_URLCONF = "tests.project.admin_ws_urls"
STATIC_URL = "/static/"

# The edge the test started: where the page's live socket goes.
if os.environ.get("DJANGO_WS_BASE_URL"):
    WS_BASE_URL = os.environ["DJANGO_WS_BASE_URL"]
