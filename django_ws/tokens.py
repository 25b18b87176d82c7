"""Tokens: who a client is when it has no session cookie.

A view mints a short-lived token with :func:`make_token`, signed with
Django's own signing (``SECRET_KEY``, no database, no new dependency), and
hands it to a mobile app, another service or a single-page app on another
domain. The client presents it when it connects, in one of three places
(:func:`token_from_request` reads them in this order):

* ``Authorization: Bearer <token>``, for clients that can set headers;
* the subprotocol ``django-ws.token.<token>`` next to the marker
  ``django-ws.token`` (browsers can set subprotocols but no headers), which
  keeps the token out of URLs and so out of access logs;
* the query parameter ``WS_TOKEN_QUERY_PARAM`` (``?access_token=...``, as
  RFC 6750 names it), which the edge redacts from its own logs.

The worker checks it during the handshake, before ``on_connect``
(:func:`authenticate`): an expired, forged or unusable token gets 401, one
minted for another scope 403, and no handler runs. Tokens minted elsewhere
are JSON Web Tokens, checked with PyJWT (``pip install 'django-ws-edge[jwt]'``)
against ``WS_JWT``.
"""

from __future__ import annotations

import logging
import threading
import time
import typing

from django.contrib.auth import get_user_model
from django.core import signing
from django.core.exceptions import ImproperlyConfigured

from .conf import ws_settings
from .exceptions import HandshakeDenied

if typing.TYPE_CHECKING:  # pragma: no cover
    from django.contrib.auth.base_user import AbstractBaseUser

logger = logging.getLogger("django_ws.worker")

__all__ = ["SUBPROTOCOL", "authenticate", "make_token", "token_from_request", "verify_token"]

#: Offered next to ``SUBPROTOCOL + "." + token``; the server selects it when the handler picks none.
SUBPROTOCOL = "django-ws.token"
_SALT = "django_ws.tokens"
# "~" separates payload and signature: Django's default ":" is not allowed in a
# subprotocol name, and "~" is neither in base64url nor in a JWT.
_SEP = "~"


class TokenError(HandshakeDenied):
    """A token the handshake refuses: 401 when it proves nothing, 403 when it is for something else."""

    def __init__(self, reason: str, status: int = 401):
        super().__init__(status, reason)


def make_token(user: AbstractBaseUser, *, scope: str | None = None, max_age: float | None = None) -> str:
    """A signed token that says "this is ``user``" until ``max_age`` seconds from now.

    ``max_age`` defaults to ``WS_TOKEN_MAX_AGE``. A token with a ``scope``
    is accepted only by handlers whose ``token_scope`` is that scope, and a
    token without one only by handlers without one. The token is signed, not
    encrypted: it shows the user's primary key to whoever holds it.
    """
    if max_age is None:
        max_age = float(ws_settings.WS_TOKEN_MAX_AGE)
    payload = {"u": str(user.pk), "e": int(time.time() + max_age)}
    if scope is not None:
        payload["s"] = scope
    return signing.Signer(salt=_SALT, sep=_SEP).sign_object(payload, compress=True)


def verify_token(token: str, *, scope: str | None = None) -> tuple[AbstractBaseUser, dict]:
    """The active user a token stands for and its claims; raises TokenError otherwise.

    A token with two dots and no ``~`` is taken for a JWT when ``WS_JWT`` is
    set; anything else for one of :func:`make_token`.
    """
    if ws_settings.WS_JWT and _SEP not in token and token.count(".") == 2:
        claims = _jwt_verifier().verify(token)
        config = ws_settings.WS_JWT
        claim, field = config.get("user_claim", "sub"), config.get("user_field", "username")
        if claims.get(claim) in (None, ""):
            raise TokenError(f"the token has no {claim!r} claim")
        user = _active_user(**{field: claims[claim]})
        granted = claims.get(config.get("scope_claim", "scope")) or ""
        # RFC 8693 makes "scope" a space-separated string; some issuers send a list.
        granted = granted.split() if isinstance(granted, str) else [str(word) for word in granted]
        if scope is not None and scope not in granted:
            raise TokenError("the token is not for this scope", 403)
        return user, claims
    try:
        claims = signing.Signer(salt=_SALT, sep=_SEP).unsign_object(token)
    except (signing.BadSignature, ValueError):
        raise TokenError("invalid token") from None
    if not isinstance(claims, dict) or "u" not in claims or not isinstance(claims.get("e"), int):
        raise TokenError("invalid token")
    if claims["e"] < time.time():
        raise TokenError("token expired")
    if claims.get("s") != scope:
        raise TokenError("the token is not for this scope", 403)
    return _active_user(pk=claims["u"]), claims


def expires_at(claims: dict) -> float | None:
    """When (a time.time() value) the token of ``claims`` expires: ``e`` of make_token's, ``exp`` of a JWT's."""
    value = claims.get("e", claims.get("exp"))
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _active_user(**lookup) -> AbstractBaseUser:
    model = get_user_model()
    try:
        user = model._default_manager.get(**lookup)
    except (model.DoesNotExist, ValueError, TypeError):
        raise TokenError("unknown user") from None
    # As ModelBackend does: a deactivated user's tokens stop working at once.
    if not getattr(user, "is_active", True):
        raise TokenError("inactive user")
    return user


def token_from_request(meta: dict) -> str | None:
    """The token a handshake carries (header, subprotocol or query), or None.

    ``meta`` is the handshake as the edge sent it (see WebSocketRequest).
    """
    for name, value in meta.get("headers", ()):
        if name.lower() == "authorization":
            kind, _, credentials = value.partition(" ")
            if kind.lower() == "bearer" and credentials.strip():
                return credentials.strip()
    prefix = SUBPROTOCOL + "."
    for offered in meta.get("subprotocols", ()):
        if offered.startswith(prefix) and len(offered) > len(prefix):
            return offered[len(prefix):]
    query = meta.get("query", "")
    param = ws_settings.WS_TOKEN_QUERY_PARAM
    if param and query:
        from django.http import QueryDict

        value = QueryDict(query).get(param)
        if value:
            return value
    return None


def strip_token_subprotocols(offered: list[str]) -> tuple[list[str], bool]:
    """The subprotocols a handler chooses from (without ours), and whether the marker was offered."""
    mine = [p for p in offered if p == SUBPROTOCOL or p.startswith(SUBPROTOCOL + ".")]
    if not mine:
        return offered, False
    return [p for p in offered if p not in mine], SUBPROTOCOL in mine


def authenticate(request, handler) -> None:
    """Set ``request.user`` from the handshake's token, if it carries one.

    Runs in the worker before the handler's access checks and on_connect.
    A handshake without a token keeps the session's user (cookies); one with
    a token that does not verify is refused, even on a route that needs no
    login: a client that presents credentials expects them to be used.
    """
    token = token_from_request(request._ws_meta)
    if token is None:
        return
    user, claims = verify_token(token, scope=getattr(handler, "token_scope", None))
    request.user = user
    request.auth = claims


class _JWTVerifier:
    """PyJWT with the checks of ``WS_JWT``; one per process (it caches the JWKS)."""

    def __init__(self, config: dict):
        try:
            import jwt
        except ImportError:
            raise ImproperlyConfigured(
                "WS_JWT is set but PyJWT is not installed: pip install 'django-ws-edge[jwt]'") from None
        self.jwt = jwt
        self.config = config = dict(config)
        self.algorithms = list(config.get("algorithms") or ())
        problems = []
        if not self.algorithms:
            problems.append('"algorithms" (a list such as ["RS256"]) is required')
        if any(str(a).lower() == "none" for a in self.algorithms):
            problems.append('"none" is not an algorithm: unsigned tokens prove nothing')
        if bool(config.get("key")) == bool(config.get("jwks_url")):
            problems.append('give exactly one of "key" and "jwks_url"')
        for required in ("issuer", "audience"):
            if not config.get(required):
                problems.append(f'"{required}" is required')
        if problems:
            raise ImproperlyConfigured("WS_JWT: " + "; ".join(problems))
        # The fetch runs in a handshake, whose client gets 503 after WS_HANDSHAKE_TIMEOUT:
        # PyJWT's own 30 s would hold the worker's thread long after that.
        self.jwks = (jwt.PyJWKClient(config["jwks_url"], cache_keys=True,
                                     timeout=float(config.get("jwks_timeout", 3)))
                     if config.get("jwks_url") else None)

    def verify(self, token: str) -> dict:
        jwt = self.jwt
        try:
            key = self.jwks.get_signing_key_from_jwt(token).key if self.jwks else self.config["key"]
            return jwt.decode(
                token, key, algorithms=self.algorithms, audience=self.config["audience"],
                issuer=self.config["issuer"], leeway=float(self.config.get("leeway", 0)),
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired") from None
        except jwt.PyJWKClientConnectionError as exc:
            # Our problem, not the client's: its token may be fine.
            logger.warning("the JWKS at %s could not be fetched: %s", self.config["jwks_url"], exc)
            raise TokenError("token keys unavailable", 503) from None
        except (jwt.PyJWTError, ValueError) as exc:
            # PyJWKClientError (the JWKS is unreachable, or has no such key) is a PyJWTError too.
            raise TokenError(f"invalid token ({type(exc).__name__})") from None


_verifier: _JWTVerifier | None = None
_verifier_config: dict | None = None
_verifier_lock = threading.Lock()


def _jwt_verifier() -> _JWTVerifier:
    global _verifier, _verifier_config
    config = ws_settings.WS_JWT
    with _verifier_lock:
        if _verifier is None or _verifier_config != config:
            _verifier, _verifier_config = _JWTVerifier(config), config
        return _verifier


def check_jwt_settings() -> None:
    """Raise ImproperlyConfigured if ``WS_JWT`` is set and unusable (the system check calls it)."""
    if ws_settings.WS_JWT:
        _jwt_verifier()
