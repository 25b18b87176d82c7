"""The edge's access log: Tornado's line for each HTTP request, with any token redacted."""

from __future__ import annotations

import logging
from urllib.parse import unquote_plus

import tornado.web

from django_ws.conf import ws_settings

access_log = logging.getLogger("tornado.access")


def redact_uri(uri: str) -> str:
    """``uri`` with the value of the token query parameter (WS_TOKEN_QUERY_PARAM) replaced."""
    param = ws_settings.WS_TOKEN_QUERY_PARAM
    path, mark, query = uri.partition("?")
    if not param or not query:
        return uri
    # Compared decoded, as the worker's QueryDict reads them: "access%5Ftoken" is the same name.
    parts = [f"{key}=[redacted]" if unquote_plus(key) == param else part
             for part in query.split("&") for key in (part.split("=", 1)[0],)]
    return path + mark + "&".join(parts)


def log_request(handler: tornado.web.RequestHandler) -> None:
    """The edge's access log: Tornado's line, with any token redacted.

    429s are logged at INFO, not WARNING: a client over a rate limit is
    expected, counted in the stats, and would otherwise make the edge write a
    warning per refused handshake for anyone who cares to hammer it.
    """
    status = handler.get_status()
    if status < 400 or status == 429:
        log_method = access_log.info
    elif status < 500:
        log_method = access_log.warning
    else:
        log_method = access_log.error
    request = handler.request
    log_method("%d %s %s (%s) %.2fms", status, request.method, redact_uri(request.uri or ""), request.remote_ip,
               1000.0 * request.request_time())
