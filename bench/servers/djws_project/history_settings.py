"""The bench project with the group history DJWS_BENCH_HISTORY (JSON) sets (bench/history.py)."""

import json
import os

from .settings import *  # noqa: F403

WS_GROUP_HISTORY = json.loads(os.environ.get("DJWS_BENCH_HISTORY", "{}"))
