"""Routes read from the file of DJANGO_WS_DEPLOYED_ROUTES at import (see deploy_settings.py)."""

import json
import os

from django_ws.routing import ws_path

from .handlers import EchoHandler

with open(os.environ["DJANGO_WS_DEPLOYED_ROUTES"]) as routes:
    urlpatterns = [ws_path(regex, EchoHandler) for regex in json.load(routes)]
