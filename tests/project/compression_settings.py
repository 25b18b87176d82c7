"""The test project with permessage-deflate on (tests/e2e/test_rfc6455.py)."""

from .settings import *

WS_COMPRESSION = True
