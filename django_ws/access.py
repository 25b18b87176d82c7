"""Connections that end with their credentials: what ties them (in the worker) and what ends them (signals).

In the worker, after ``on_connect``, :func:`credentials_for` says what the
connection's access rests on, and the edge keeps it in the connection's
record (wire.Credentials): the token's expiry, the user, the session. In
any Django process, three of Django's own events close those connections on
every edge, with 1008 and a reason that says which:

* a user saved with ``is_active`` turned off: ``user deactivated``;
* a user saved with another password hash: ``password changed``;
* ``user_logged_out`` (``WS_CLOSE_ON_LOGOUT``): ``logged out``, for the
  connections opened with that session only.

Each is one :func:`django_ws.close_group` of a group the edge joined the
connection to (:mod:`django_ws.credentials`), sent once the transaction
commits: a rolled-back save closes nothing.
"""

from __future__ import annotations

import logging
import time
import typing

from django_ws import credentials, wire
from django_ws.conf import ws_settings

if typing.TYPE_CHECKING:  # pragma: no cover
    from django_ws.handlers.request import WebSocketRequest

logger = logging.getLogger("django_ws.access")

__all__ = ["connect_signals", "credentials_for", "session_digest"]

#: The fields of a user whose change ends its connections, and the close reason of each.
_ENDS_ACCESS = (("is_active", "user deactivated"), ("password", "password changed"))


def session_digest(session_key: str) -> str:
    """A keyed hash of a session key: the name of its group shows nothing that would let anyone use it."""
    from django.utils.crypto import salted_hmac

    return salted_hmac("django_ws.access.session", session_key, algorithm="sha256").hexdigest()[:32]


def credentials_for(conn_id: str, request: WebSocketRequest, handler: typing.Any) -> wire.Credentials | None:
    """What the handshake's access rests on, for the edge; None when nothing ties the connection.

    A token ties it to the token's user and expiry. Otherwise, a handshake
    that looked at the session's user (``login_required``,
    ``permission_required``, or the handler reading ``request.user``) ties
    it to that user and, with ``WS_CLOSE_ON_LOGOUT``, to that session. One
    that never looked is nobody's, and costs no query here.
    """
    if not getattr(handler, "close_with_credentials", True):
        return None
    claims = request.__dict__.get("auth")
    if isinstance(claims, dict):  # tokens.authenticate() set it
        from django_ws.tokens import expires_at

        user = request.user
        expires = expires_at(claims)
        expires_ms = max(1, int((expires - time.time()) * 1000)) if expires is not None else 0
        return wire.Credentials(conn_id, str(user.pk), "", expires_ms)
    if "user" not in request.__dict__:
        return None
    user = request.user
    if not getattr(user, "is_authenticated", False):
        return None
    session = ""
    if ws_settings.WS_CLOSE_ON_LOGOUT:
        key = getattr(request.__dict__.get("session"), "session_key", None)
        session = session_digest(key) if key else ""
    return wire.Credentials(conn_id, str(user.pk), session, 0)


def refreshed(conn_id: str, request: WebSocketRequest, handler: typing.Any, token: str) -> wire.Message:
    """The answer to a fresh token the client sent: Credentials with its expiry, or a Close with 1008.

    The fresh token must be valid, for the handler's scope, and for the user the connection already has.
    """
    from django_ws.codes import CloseCode
    from django_ws.tokens import TokenError, expires_at, verify_token

    try:
        user, claims = verify_token(token, scope=getattr(handler, "token_scope", None))
    except TokenError as exc:
        return wire.Close(conn_id, CloseCode.POLICY_VIOLATION, exc.reason[:120])
    if str(user.pk) != str(request.user.pk):
        return wire.Close(conn_id, CloseCode.POLICY_VIOLATION, "token for another user")
    # As tokens.authenticate() sets it at the handshake.
    request.auth = claims  # type: ignore[attr-defined]
    expires = expires_at(claims)
    expires_ms = max(1, int((expires - time.time()) * 1000)) if expires is not None else 0
    return wire.Credentials(conn_id, str(user.pk), "", expires_ms)


# -- Django's signals -------------------------------------------------------------------


def _remember_access(sender: typing.Any, instance: typing.Any, raw: bool = False,
                     update_fields: typing.Iterable[str] | None = None, **kwargs: typing.Any) -> None:
    """pre_save of the user model: keep what the row held, for post_save to compare."""
    if raw or instance.pk is None:
        return
    fields = [name for name, _ in _ENDS_ACCESS if hasattr(instance, name)]
    if update_fields is not None:
        fields = [name for name in fields if name in update_fields]
    if not fields:
        return  # login()'s save of last_login, for one, costs no query
    before = sender._default_manager.filter(pk=instance.pk).values(*fields).first()
    instance._django_ws_before = before


def _close_if_access_ended(sender: typing.Any, instance: typing.Any, created: bool = False, raw: bool = False,
                           **kwargs: typing.Any) -> None:
    """post_save of the user model: deactivated, or a new password: close its connections everywhere."""
    before = instance.__dict__.pop("_django_ws_before", None)
    if created or raw or not before:
        return
    for name, reason in _ENDS_ACCESS:
        if name not in before:
            continue
        now = getattr(instance, name)
        ended = (before[name] and not now) if name == "is_active" else before[name] != now
        if ended:
            _close_after_commit(credentials.user_group(str(instance.pk)), reason, instance._state.db)
            return


def _close_on_logout(sender: typing.Any, request: typing.Any = None, user: typing.Any = None,
                     **kwargs: typing.Any) -> None:
    """user_logged_out: close the connections opened with this session (before Django flushes it)."""
    if not ws_settings.WS_CLOSE_ON_LOGOUT or request is None:
        return
    key = getattr(getattr(request, "session", None), "session_key", None)
    if key:
        _close_after_commit(credentials.session_group(session_digest(key)), "logged out", None)


def _close_after_commit(group: str, reason: str, using: str | None) -> None:
    from django.db import transaction

    transaction.on_commit(lambda: _close(group, reason), using=using)


def _close(group: str, reason: str) -> None:
    from django_ws.codes import CloseCode
    from django_ws.exceptions import SendError
    from django_ws.sending import close_group

    try:
        close_group(group, CloseCode.POLICY_VIOLATION, reason)
    except SendError as exc:
        # The save or the logout stands; the sockets an unreachable edge holds end with it anyway.
        logger.warning("could not close the connections of %s (%s): %s", group, reason, exc)


def connect_signals() -> None:
    """Connect the receivers (AppConfig.ready), when django.contrib.auth is installed."""
    from django.apps import apps

    if not apps.is_installed("django.contrib.auth"):
        return
    from django.conf import settings
    from django.contrib.auth.signals import user_logged_out
    from django.db.models.signals import post_save, pre_save

    model = settings.AUTH_USER_MODEL
    pre_save.connect(_remember_access, sender=model, dispatch_uid="django_ws.access.remember")
    post_save.connect(_close_if_access_ended, sender=model, dispatch_uid="django_ws.access.close")
    user_logged_out.connect(_close_on_logout, dispatch_uid="django_ws.access.logout")
