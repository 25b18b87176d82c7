"""The bench project with the HTTP publish API on and unlimited (bench/publish_api.py).

The benchmark process loads these settings too, to call send_to_group() to
the same edge: DJWS_BENCH_EDGES names its sub endpoint there.
"""

import os

from .settings import *  # noqa: F403

WS_API_KEYS = [os.environ.get("DJWS_BENCH_API_KEY", "bench-only-publish-key-0123456789abcdef")]
WS_API_RATE = 0
if os.environ.get("DJWS_BENCH_EDGES"):
    WS_EDGES = os.environ["DJWS_BENCH_EDGES"].split(",")
