"""Settings of the Channels app the benchmark runs under uvicorn.

The channel layer is in-memory unless BENCH_CHANNEL_LAYER=redis, which uses
channels_redis against BENCH_REDIS_URL (the runner starts a private
redis-server for that). No database, sessions or auth, as on the django-ws
side.
"""

import os

SECRET_KEY = "bench-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels"]
MIDDLEWARE = []
ROOT_URLCONF = "channels_app.urls"
ASGI_APPLICATION = "channels_app.asgi.application"
DATABASES = {}
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
