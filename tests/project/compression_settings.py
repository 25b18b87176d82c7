"""The test project with permessage-deflate on (tests/test_rfc6455.py)."""

from .settings import *  # noqa: F401,F403

WS_COMPRESSION = True
