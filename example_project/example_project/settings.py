"""Settings of the django-ws example project (sqlite, DEBUG, no secrets)."""

import importlib.util
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "example-only-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_ws",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "example_project.urls"
# The websocket routes live in example_project/ws_urls.py, the default
# location next to ROOT_URLCONF; WS_URLCONF would name another module.

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DB", str(BASE_DIR / "db.sqlite3")),
    }
}

STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

# The original README's namespace mapping: ws://localhost:8888/socket/ reaches
# RandomCounter when run_wsserver runs with --websocket-url="/socket/(?P<namespace>\w*)".
DEFAULT_WS_HANDLERS = {
    "default": "example_project.ws_handlers.RandomCounter",
}

# Where reverse_ws() and {% reverse_ws %} point browsers.
WS_BASE_URL = os.environ.get("WS_BASE_URL", "ws://localhost:8888/socket")
# Where the websocket server's endpoints are (the announce view sends there).
WS_PUSH_SOCKET = os.environ.get("WS_PUSH_SOCKET")  # None: private to this project
WS_SUB_SOCKET = os.environ.get("WS_SUB_SOCKET")

# The chat rooms keep their last 100 lines for 5 minutes: a page that reconnects
# (a deploy, a network change) gets what it missed from the edge, without
# replaying anything itself (django-ws.js presents its positions).
WS_GROUP_HISTORY = {"chat.*": {"size": 100, "ttl": 300}}

# Socket.IO beside WebSocket (docs/socketio.rst), for the room's /socketio/ page,
# when python-socketio is installed (pip install 'django-ws-edge[socketio]').
WS_SOCKETIO = importlib.util.find_spec("socketio") is not None
