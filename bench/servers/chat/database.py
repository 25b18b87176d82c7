"""DATABASES for both benchmark projects, from BENCH_DATABASE ("name=...;user=...;host=...;port=...")."""

import os


def databases() -> dict:
    """The chat's PostgreSQL if the runner named one, else no database (echo, broadcast, hold)."""
    dsn = os.environ.get("BENCH_DATABASE")
    if not dsn:
        return {}
    params = dict(part.split("=", 1) for part in dsn.split(";") if part)
    return {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": params["name"],
            "USER": params["user"],
            "PASSWORD": params.get("password", ""),
            "HOST": params["host"],
            "PORT": params["port"],
            # Persistent connections on both sides, as a production setup has:
            # neither pays a connection per message.
            "CONN_MAX_AGE": None,
        }
    }
