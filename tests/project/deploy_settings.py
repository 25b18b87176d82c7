"""The test project with a route table that a deploy changes (tests/e2e/test_reliability.py, SIGHUP).

The routes are read from the JSON file DJANGO_WS_DEPLOYED_ROUTES names, each
a regex served by EchoHandler: a test rewrites the file and sends SIGHUP, as
a deploy would put new code on disk and reload.
"""

from .settings import *

WS_URLCONF = "tests.project.deploy_ws_urls"
