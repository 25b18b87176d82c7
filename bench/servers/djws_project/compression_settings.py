"""The bench project with permessage-deflate as DJWS_BENCH_COMPRESSION (JSON) says (bench/compression.py)."""

import json
import os

from .settings import *  # noqa: F403

WS_COMPRESSION = json.loads(os.environ.get("DJWS_BENCH_COMPRESSION", "false"))
