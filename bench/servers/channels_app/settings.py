"""Settings of the Channels app the benchmark runs under uvicorn.

The channel layer is in-memory unless BENCH_CHANNEL_LAYER=redis, which uses
channels_redis against BENCH_REDIS_URL (the runner starts a private
redis-server for that). No sessions or auth, as on the django-ws side; the
chat scenario adds the same PostgreSQL database to both (chat/database.py).
"""

import os

from chat.database import databases

SECRET_KEY = "bench-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels", "chat"]
MIDDLEWARE = []
ROOT_URLCONF = "channels_app.urls"
ASGI_APPLICATION = "channels_app.asgi.application"
DATABASES = databases()
USE_TZ = True

if os.environ.get("BENCH_CHANNEL_LAYER") == "redis":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
