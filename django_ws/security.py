"""ZeroMQ CURVE for the edge <-> worker <-> sender links: the one place that reads WS_CURVE.

An ipc:// endpoint is a socket file that only its owner can open (the edge
binds it under umask 077). A tcp:// endpoint is open to every host that can
route to it, and whoever connects could pose as a worker (and read every
client's messages) or send to any client. So, when WS_CURVE is set, every
tcp:// endpoint is encrypted and authenticated with CURVE:

* the edge's two ROUTER sockets are CURVE servers with ``server_secret``,
  and a ZAP handler in the edge admits only peers that prove they hold
  ``client_secret`` (by presenting ``client_public``);
* workers and senders are CURVE clients: they only talk to a peer that
  holds ``server_secret``, and prove themselves with the client key pair.

``manage.py ws_keygen`` prints a fresh WS_CURVE. ipc:// endpoints are left
as they are: the file's permissions already decide who may connect.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import struct
import typing

from django.core.exceptions import ImproperlyConfigured

from django_ws.conf import ws_settings

if typing.TYPE_CHECKING:  # pragma: no cover
    import zmq

__all__ = ["CurveKeys", "curve_keys", "exposed_endpoints", "generate_curve", "secure_client", "secure_server",
           "start_authenticator", "uses_curve"]

logger = logging.getLogger("django_ws.security")

KEY_NAMES = ("server_public", "server_secret", "client_public", "client_secret")
#: The ZAP domain of the edge's sockets (what the authenticator is configured for).
ZAP_DOMAIN = "django_ws"


@dataclasses.dataclass(frozen=True)
class CurveKeys:
    """WS_CURVE, checked: Z85 keys as bytes; a secret may be absent on hosts that do not need it."""

    server_public: bytes
    client_public: bytes
    server_secret: bytes | None = None
    client_secret: bytes | None = None

    def need(self, *names: str) -> None:
        missing = [name for name in names if getattr(self, name) is None]
        if missing:
            raise ImproperlyConfigured(
                f"WS_CURVE has no {' or '.join(missing)}, which this process needs "
                "(edges need server_secret, workers and senders client_secret)"
            )


def curve_keys() -> CurveKeys | None:
    """WS_CURVE as CurveKeys, or None when CURVE is off; ImproperlyConfigured if it is wrong."""
    value = ws_settings.WS_CURVE
    if not value:
        return None
    hint = "run `manage.py ws_keygen` for a correct one"
    if not isinstance(value, dict):
        raise ImproperlyConfigured(f"WS_CURVE must be a dict of Z85 keys, not {type(value).__name__}; {hint}")
    unknown = sorted(set(value) - set(KEY_NAMES))
    if unknown:
        raise ImproperlyConfigured(f"WS_CURVE has unknown keys {unknown}; it takes {', '.join(KEY_NAMES)}")
    import zmq

    if not zmq.has("curve"):
        raise ImproperlyConfigured("WS_CURVE is set but this libzmq was built without CURVE (zmq.has('curve') is False)")
    keys = {}
    for name in KEY_NAMES:
        key = value.get(name)
        if key is None and name.endswith("_secret"):
            keys[name] = None
            continue
        keys[name] = _z85_key(name, key, hint)
    for side in ("server", "client"):
        secret, public = keys[f"{side}_secret"], keys[f"{side}_public"]
        if secret is not None and zmq.curve_public(secret) != public:
            raise ImproperlyConfigured(f"WS_CURVE: {side}_public is not the public key of {side}_secret; {hint}")
    return CurveKeys(**keys)


def _z85_key(name: str, key, hint: str) -> bytes:
    from zmq.utils import z85

    raw = key.encode("ascii", "replace") if isinstance(key, str) else key
    if not isinstance(raw, bytes) or len(raw) != 40:
        raise ImproperlyConfigured(f"WS_CURVE[{name!r}] must be a 40-character Z85 key; {hint}")
    try:
        z85.decode(raw)
    except (ValueError, KeyError, struct.error):  # bad length, a character outside Z85, overflow
        raise ImproperlyConfigured(f"WS_CURVE[{name!r}] is not a valid Z85 key; {hint}") from None
    return raw


def _keys_for(endpoint: str):
    """The CURVE keys that secure ``endpoint``: WS_CURVE for a tcp:// endpoint, else None."""
    return curve_keys() if endpoint.startswith("tcp://") else None


def uses_curve(endpoint: str) -> bool:
    """Whether ``endpoint`` is (to be) secured: a tcp:// endpoint while WS_CURVE is set."""
    return _keys_for(endpoint) is not None


def secure_server(sock: zmq.Socket, endpoint: str) -> bool:
    """Make one of the edge's sockets a CURVE server if ``endpoint`` needs it; before bind()."""
    keys = _keys_for(endpoint)
    if keys is None:
        return False
    keys.need("server_secret")
    import zmq

    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.server_secret)
    sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
    return True


def secure_client(sock: zmq.Socket, endpoint: str) -> bool:
    """Make a worker's or sender's socket a CURVE client if ``endpoint`` needs it; before connect()."""
    keys = _keys_for(endpoint)
    if keys is None:
        return False
    keys.need("client_secret")
    # Option numbers from the socket's own module: zmq or zmq.green, same values.
    import zmq

    sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server_public)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.client_public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.client_secret)
    return True


class _ClientKeyCheck:
    """ZAP credentials provider: admit the one configured client key, log others once each."""

    def __init__(self, allowed: bytes):
        self.allowed = allowed
        self.refused: set[bytes] = set()

    def callback(self, domain: str, key: bytes) -> bool:
        if key == self.allowed:
            return True
        # A peer retries its handshake every reconnect interval: say it once
        # per key (and stop remembering keys past a hundred).
        if key not in self.refused and len(self.refused) < 100:
            self.refused.add(key)
            logger.warning("refused a ZeroMQ peer with an unknown CURVE key %s (not WS_CURVE's client_public)",
                           key.decode("ascii", "replace"))
        return False


def start_authenticator(context: zmq.asyncio.Context, endpoints: typing.Iterable[str]):
    """Start the edge's ZAP handler if any endpoint uses CURVE; return it (stop() it later) or None.

    Without a ZAP handler a CURVE server accepts any client key pair; with
    it, only WS_CURVE's client_public gets in. It runs on the edge's asyncio
    loop, so call this from a coroutine, before the sockets bind.
    """
    if not any(uses_curve(endpoint) for endpoint in endpoints):
        return None
    from zmq.auth.asyncio import AsyncioAuthenticator

    keys = curve_keys()
    authenticator = AsyncioAuthenticator(context, log=logging.getLogger("django_ws.security.zap"))
    authenticator.start()
    authenticator.configure_curve_callback(ZAP_DOMAIN, _ClientKeyCheck(keys.client_public))
    return authenticator


def exposed_endpoints(endpoints: typing.Iterable[str]) -> list[str]:
    """The tcp:// endpoints that other hosts may reach and that CURVE does not protect."""
    if curve_keys() is not None:
        return []
    return [endpoint for endpoint in endpoints if endpoint.startswith("tcp://") and not _loopback(endpoint)]


def _loopback(endpoint: str) -> bool:
    host = endpoint[len("tcp://"):].rpartition(":")[0].rpartition(";")[2].strip("[]")
    if host in ("localhost", "lo"):  # lo: ZeroMQ binds to an interface by name too
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def generate_curve() -> dict[str, str]:
    """A fresh WS_CURVE: a server and a client key pair, as Z85 strings."""
    import zmq

    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    return {
        "server_public": server_public.decode("ascii"),
        "server_secret": server_secret.decode("ascii"),
        "client_public": client_public.decode("ascii"),
        "client_secret": client_secret.decode("ascii"),
    }
