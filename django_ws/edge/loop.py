"""Which asyncio event loop the edge runs on: the ``WS_EVENT_LOOP`` setting.

The edge is one thread on one event loop, and under load the loop itself
(polling, scheduling callbacks, adding and removing readers for Tornado's
streams) is a good share of its work. uvloop does that part in C; with it
the echo benchmark does about 15% more round trips per second on the same
core (see docs/benchmarks.rst). It is optional: ``"auto"``, the default,
uses it when it is installed (``pip install 'django-ws-edge[uvloop]'``), as
uvicorn does.
"""

from __future__ import annotations

import asyncio
import typing

from django.core.exceptions import ImproperlyConfigured

CHOICES = ("auto", "asyncio", "uvloop")


def loop_runner(name: str) -> tuple[typing.Callable[[typing.Coroutine], typing.Any], str]:
    """Return ``(run, label)``: ``run(coro)`` runs ``coro`` to completion on the chosen loop."""
    if name not in CHOICES:
        raise ImproperlyConfigured(f"WS_EVENT_LOOP is {name!r}; choose one of {', '.join(map(repr, CHOICES))}")
    if name != "asyncio":
        try:
            import uvloop
        except ImportError:
            if name == "uvloop":
                raise ImproperlyConfigured(
                    "WS_EVENT_LOOP = 'uvloop' needs uvloop: pip install 'django-ws-edge[uvloop]'") from None
        else:
            return uvloop.run, "uvloop"
    return asyncio.run, "asyncio"
