"""Credentials that end: the names the edge, the worker and Django's signals share (pure: no Django, no I/O).

A connection opened with a token that expires, by a user, or with a session
is tied to them (:mod:`django_ws.access` says how): the edge closes it with
1008 when the token expires, and every edge closes it when the user is
deactivated or changes password, or the session logs out. The last two
travel as :func:`django_ws.close_group` of the groups named here, which the
edge joins the connection to itself: a close for them reaches every edge
the way any group's close does, in static and in cluster mode.

A client keeps a token-authenticated connection open past the token's
expiry by sending a fresh token over it before then (docs/protocol.rst):
a text message that is exactly the JSON object ``{"dws_token": "<token>"}``,
or, on Socket.IO, the event ``dws_token`` with the token as its argument.
"""

from __future__ import annotations

import json

__all__ = ["REFRESH_EVENT", "REFRESH_KEY", "parse_refresh", "session_group", "user_group"]

#: The key of the refresh message, and the Socket.IO event's name.
REFRESH_KEY = REFRESH_EVENT = "dws_token"
_PREFIX = b'{"' + REFRESH_KEY.encode() + b'"'
#: The reserved prefix of the groups the edge joins connections to (a handler's join() refuses none of
#: them, but a name starting with it is the edge's).
GROUP_PREFIX = "django_ws."


def user_group(user_pk: str) -> str:
    """The group of every connection of the user whose primary key is ``user_pk``."""
    return f"{GROUP_PREFIX}user.{user_pk}"


def session_group(session_digest: str) -> str:
    """The group of every connection opened with the session of ``session_digest`` (a keyed hash of its key)."""
    return f"{GROUP_PREFIX}session.{session_digest}"


def parse_refresh(payload: bytes) -> str | None:
    """The token of a refresh message (``{"dws_token": "<token>"}``), or None if ``payload`` is not one.

    Cheap for every other message: only a payload that starts with the key is decoded.
    """
    if not payload.startswith(_PREFIX):
        return None
    try:
        message = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(message, dict) or len(message) != 1:
        return None
    token = message.get(REFRESH_KEY)
    return token if isinstance(token, str) and token else None


def parse_refresh_event(arguments: bytes) -> str | None:
    """The token of a Socket.IO ``dws_token`` event, whose ``arguments`` are a JSON array, or None."""
    try:
        args = json.loads(arguments)
    except ValueError:
        return None
    if isinstance(args, list) and len(args) == 1 and isinstance(args[0], str) and args[0]:
        return args[0]
    return None
