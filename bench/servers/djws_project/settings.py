"""Settings of the django-ws server the benchmark runs (no sessions; a database for the chat only).

Like the Channels app next to it, this serves bare handlers: no session or
user lookups, DEBUG off, so both sides pay only for their transport and
their handler dispatch. The chat scenario adds the same PostgreSQL database
to both (chat/database.py).
"""

import os

from chat.database import databases

SECRET_KEY = "bench-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["django_ws", "chat"]
MIDDLEWARE = []
ROOT_URLCONF = "djws_project.urls"
WS_URLCONF = "djws_project.ws_urls"
DATABASES = databases()
USE_TZ = True
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
# The load generator is one address opening thousands of connections and
# sending as fast as it can: exactly what the edge's rate limits refuse.
WS_NEW_CONNECTIONS_PER_ADDRESS = 0
WS_CONNECTIONS_PER_ADDRESS = 0
WS_MESSAGES_PER_CONNECTION = 0
WS_BYTES_PER_CONNECTION = 0

if os.environ.get("BENCH_UNDER_VALGRIND"):
    # bench/instructions.py: under callgrind on a busy machine a process can pause
    # for seconds; a late heartbeat there is not a dead worker (its connections would
    # be closed with 1012 and the count spoilt). Only the timeout changes, not the beat.
    WS_HEARTBEAT_TIMEOUT = 60.0
