"""Settings of the project the end-to-end tests serve."""

import json
import os
import tempfile

SECRET_KEY = "tests-only"
DEBUG = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django_ws",
    "tests.project",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "tests.project.urls"
WS_URLCONF = "tests.project.ws_urls"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]

if os.environ.get("DJANGO_WS_TEST_POSTGRES"):  # set per server by tests/e2e/test_database.py
    # name=...;user=...;host=...;port=... (set by .ci/run when a server is there)
    params = dict(part.split("=", 1) for part in os.environ["DJANGO_WS_TEST_POSTGRES"].split(";"))
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": params.get("name", "django_ws"),
            "USER": params.get("user", "postgres"),
            "PASSWORD": params.get("password", ""),
            "HOST": params.get("host", "127.0.0.1"),
            "PORT": params.get("port", "5432"),
            "TEST": {"NAME": params.get("name", "django_ws")},
        }
    }
else:
    # One file per test run (two runs at once must not share it); the servers
    # the tests start get theirs through DJANGO_WS_TEST_DB.
    _db = os.environ.get("DJANGO_WS_TEST_DB") or os.path.join(tempfile.gettempdir(), f"django-ws-tests-{os.getpid()}.sqlite3")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _db,
            "TEST": {"NAME": _db},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

DEFAULT_WS_HANDLERS = {
    "default": "tests.project.handlers.EchoHandler",
    "upper": "tests.project.handlers.UpperHandler",
}
WS_BASE_URL = "ws://testserver:8888/socket"
# Fault tests want quick detection; these are also reasonable production values.
WS_HEARTBEAT_INTERVAL = 0.25
WS_HEARTBEAT_TIMEOUT = float(os.environ.get("DJANGO_WS_HEARTBEAT_TIMEOUT", "1.5"))
# A burst of 100 handshakes under --multiprocess forks 100 processes: on a loaded
# 2-core machine some take longer than the default 5 s to be accepted.
WS_HANDSHAKE_TIMEOUT = 15.0
WS_QUEUE_LIMIT = int(os.environ.get("DJANGO_WS_QUEUE_LIMIT", "10000"))
# Keepalive and shutdown figures a test may tighten for its own server.
WS_PING_INTERVAL = float(os.environ.get("DJANGO_WS_PING_INTERVAL", "20"))
WS_PING_TIMEOUT = float(os.environ.get("DJANGO_WS_PING_TIMEOUT", "20"))
WS_SHUTDOWN_TIMEOUT = float(os.environ.get("DJANGO_WS_SHUTDOWN_TIMEOUT", "10"))

# Several edges: tests list their sub endpoints here for send_to_group() & co.
if os.environ.get("DJANGO_WS_EDGES"):
    WS_EDGES = os.environ["DJANGO_WS_EDGES"].split(",")

# Cluster mode (tests/e2e/test_cluster.py): the Redis the test started, its lease and prefix.
if os.environ.get("DJANGO_WS_BROKER"):
    WS_BROKER = (json.loads(os.environ["DJANGO_WS_BROKER"]) if os.environ["DJANGO_WS_BROKER"].startswith("{")
                 else os.environ["DJANGO_WS_BROKER"])
    WS_BROKER_LEASE = float(os.environ.get("DJANGO_WS_BROKER_LEASE", "10"))
    WS_BROKER_PREFIX = os.environ.get("DJANGO_WS_BROKER_PREFIX", "django_ws:")

# tests/e2e/test_security.py starts servers with these.
if os.environ.get("DJANGO_WS_ALLOWED_ORIGINS"):
    WS_ALLOWED_ORIGINS = os.environ["DJANGO_WS_ALLOWED_ORIGINS"].split(",")
if os.environ.get("DJANGO_WS_MAX_BUFFER_SIZE"):
    WS_MAX_BUFFER_SIZE = int(os.environ["DJANGO_WS_MAX_BUFFER_SIZE"])
if os.environ.get("DJANGO_WS_CURVE"):  # JSON, as `manage.py ws_keygen --json` prints it
    WS_CURVE = json.loads(os.environ["DJANGO_WS_CURVE"])

# Behind a proxy: tests of X-Forwarded-For turn this on for their own server.
WS_TRUST_PROXY_HEADERS = bool(os.environ.get("DJANGO_WS_TRUST_PROXY_HEADERS"))
WS_HEADER_TIMEOUT = float(os.environ.get("DJANGO_WS_HEADER_TIMEOUT", "10"))
_idle = os.environ.get("DJANGO_WS_THREAD_IDLE_TIMEOUT", "30")
WS_THREAD_IDLE_TIMEOUT = None if _idle == "None" else float(_idle)  # None: idle pool threads never end
WS_EVENT_LOOP = os.environ.get("DJANGO_WS_EVENT_LOOP", "auto")
# Groups with history (tests/e2e/test_history.py passes other bounds as JSON).
WS_GROUP_HISTORY = json.loads(os.environ.get("DJANGO_WS_GROUP_HISTORY", '{"hist.*": {"size": 100, "ttl": 300}}'))

# Socket.IO: tests/e2e/test_socketio.py turns it on, with a short keepalive for its faults.
WS_SOCKETIO = bool(os.environ.get("DJANGO_WS_SOCKETIO"))
WS_SOCKETIO_PING_INTERVAL = float(os.environ.get("DJANGO_WS_SOCKETIO_PING_INTERVAL", "25"))
WS_SOCKETIO_PING_TIMEOUT = float(os.environ.get("DJANGO_WS_SOCKETIO_PING_TIMEOUT", "20"))
if os.environ.get("DJANGO_WS_MAX_MESSAGE_SIZE"):
    WS_MAX_MESSAGE_SIZE = int(os.environ["DJANGO_WS_MAX_MESSAGE_SIZE"])

# The tests open many connections from 127.0.0.1 and flood some on purpose:
# the edge's rate limits are off unless a test asks for them, with
# DJANGO_WS_RATE_LIMITS=defaults (conf.py's values) or a JSON dict of settings.
_limits = os.environ.get("DJANGO_WS_RATE_LIMITS", "off")
if _limits == "off":
    WS_NEW_CONNECTIONS_PER_ADDRESS = WS_CONNECTIONS_PER_ADDRESS = 0
    WS_MESSAGES_PER_CONNECTION = WS_BYTES_PER_CONNECTION = 0
elif _limits != "defaults":
    globals().update(json.loads(_limits))

# Tokens: tests/e2e/test_tokens.py passes WS_JWT as JSON.
if os.environ.get("DJANGO_WS_JWT"):
    WS_JWT = json.loads(os.environ["DJANGO_WS_JWT"])

# Every logger at DEBUG on the console, for the tests that read all the logs.
if os.environ.get("DJANGO_WS_LOG_ALL"):
    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"console": {"class": "logging.StreamHandler"}},
        "root": {"handlers": ["console"], "level": "DEBUG"},
    }

# The edge's publish API (tests/e2e/test_publish_api.py): its keys as JSON (a list or a dict), its rate.
if os.environ.get("DJANGO_WS_API_KEYS"):
    WS_API_KEYS = json.loads(os.environ["DJANGO_WS_API_KEYS"])
if os.environ.get("DJANGO_WS_API_RATE"):
    WS_API_RATE = float(os.environ["DJANGO_WS_API_RATE"])

# Tracing: tests/e2e/test_tracing.py turns it on, each process exporting its spans to one file.
if os.environ.get("DJANGO_WS_TEST_SPANS"):
    from tests.project.tracing import export_spans_to

    WS_TRACING = True
    export_spans_to(os.environ["DJANGO_WS_TEST_SPANS"])
