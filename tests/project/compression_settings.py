"""The test project with permessage-deflate on (tests/test_rfc6455.py)."""

from .settings import *

WS_COMPRESSION = True
