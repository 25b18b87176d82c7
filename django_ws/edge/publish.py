"""The edge's HTTP publish API: ``POST /_django_ws/publish``, for services in any language.

With ``WS_API_KEYS`` set, a Go, Node or Ruby service publishes to a group or
to one connection with one HTTP request, and gets what ``send_to_group()`` /
``send_to_connection()`` give a Python caller (docs/operating.rst)::

    POST /_django_ws/publish
    Authorization: Bearer <key>

    {"group": "chat.lobby", "data": "hi"}                  -> 200 {"delivered": 3}
    {"connection": "<id>", "data": "aGk=", "binary": true}  -> 200 {"delivered": 1}

The send itself is the very code a Python sender runs (``EdgeRoute`` over
ZeroMQ to every edge of ``WS_EDGES``, this one included, or ``BrokerRoute``
to Redis in cluster mode), run in a small thread pool: those calls block, and
the edge's loop must not (invariant 4). The loop thread is the one that
answers this edge's own part of the send, so a thread of the pool that sends
to its own edge is answered like any other sender.
"""

from __future__ import annotations

import base64
import binascii
import concurrent.futures
import hmac
import json
import logging
import math
import time
import typing

import tornado.ioloop
import tornado.web

from django_ws import wire
from django_ws.conf import api_keys, ws_settings
from django_ws.exceptions import SendError
from django_ws.sending import EdgeRoute, SendResult, _check_key, stamped_send

from .limits import TokenBucket

if typing.TYPE_CHECKING:  # pragma: no cover
    from django_ws.broker.config import BrokerConfig
    from django_ws.broker.route import BrokerRoute

#: What a request asks for: a function of the message reference making the wire message, and the idempotency key.
MakeMessage = typing.Callable[..., wire.Message]

logger = logging.getLogger("django_ws.edge")

#: The fields a body may have.
FIELDS = frozenset({"group", "connection", "data", "binary", "exclude", "key"})
#: Threads that wait on sends: each holds a request while the edges (or Redis) answer, within WS_SEND_TIMEOUT.
THREADS = 4


class _Edges(EdgeRoute):
    """Static mode: every edge of WS_EDGES, or this one alone when it is not set (its own --sub-socket)."""

    def __init__(self, own_endpoint: str):
        self.own_endpoint = own_endpoint

    def endpoints(self) -> list[str]:
        edges = ws_settings.WS_EDGES
        return list(edges) if edges else [self.own_endpoint]


class BadRequest(Exception):
    """What is wrong with a request, and the status that says so."""

    def __init__(self, status: int, error: str):
        super().__init__(error)
        self.status, self.error = status, error


class Publisher:
    """The API's state on one edge: its keys, a token bucket per key, the threads that send."""

    def __init__(self, own_endpoint: str, broker_config: BrokerConfig | None = None):
        self.keys = api_keys(ws_settings.WS_API_KEYS)
        # Bytes, for compare_digest: it takes str only when ASCII.
        self._secrets = [(name, key.encode()) for name, key in self.keys.items()]
        self.rate = float(ws_settings.WS_API_RATE or 0)
        self.max_message_size = int(ws_settings.WS_MAX_MESSAGE_SIZE)
        self.buckets: dict[str, TokenBucket] = {}
        self.route: BrokerRoute | _Edges
        if broker_config is not None:
            from django_ws.broker.route import BrokerRoute

            self.route = BrokerRoute(broker_config)
        else:
            self.route = _Edges(own_endpoint)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def authorize(self, header: str | None) -> str | None:
        """The name of the key ``Authorization: Bearer <key>`` carries, or None.

        Compared with every key, in constant time each and without stopping
        at a match: the answer's time tells nothing of which key came close.
        """
        scheme, _, given = (header or "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        given_bytes = given.strip().encode("utf-8", "surrogateescape")
        found = None
        for name, secret in self._secrets:
            if hmac.compare_digest(given_bytes, secret) and found is None:
                found = name
        return found

    def admit(self, name: str, now: float) -> float | None:
        """None if key ``name`` may publish now, else the seconds until it may (WS_API_RATE)."""
        if self.rate <= 0:
            return None
        bucket = self.buckets.get(name)
        if bucket is None:
            # A second's worth at once, then refilled evenly; at least one request.
            bucket = self.buckets[name] = TokenBucket(max(1.0, self.rate), self.rate, now)
        if bucket.take(1, now):
            return None
        return bucket.wait(1, now)

    def parse(self, body: bytes) -> tuple[MakeMessage, str | None]:
        """What ``body`` asks for: a function of ``(ref, sent_at, trace)`` that builds the message, and its key.

        Or BadRequest.
        """
        # base64 makes 3 bytes 4, and JSON may escape more: bound what is worth parsing at all.
        if len(body) > 2 * self.max_message_size + 65536:
            raise BadRequest(413, f"the body is larger than a message may be (WS_MAX_MESSAGE_SIZE: "
                                  f"{self.max_message_size} bytes)")
        try:
            request = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(400, f"the body is not JSON: {exc}") from None
        if not isinstance(request, dict):
            raise BadRequest(400, 'the body must be a JSON object: {"group": ..., "data": ...} '
                                  'or {"connection": ..., "data": ...}')
        unknown = sorted(set(request) - FIELDS)
        if unknown:
            raise BadRequest(400, f"unknown field(s) {', '.join(map(repr, unknown))}; expected some of "
                                  f"{', '.join(sorted(FIELDS))}")
        group, connection = request.get("group"), request.get("connection")
        if (group is None) == (connection is None):
            raise BadRequest(400, 'give exactly one of "group" and "connection"')
        target = "group" if group is not None else "connection"
        if not isinstance(request[target], str) or not request[target]:
            raise BadRequest(400, f'"{target}" must be a non-empty string')
        if "data" not in request:
            raise BadRequest(400, '"data" is missing')
        data, binary = request["data"], request.get("binary", False)
        if not isinstance(binary, bool):
            raise BadRequest(400, '"binary" must be true or false')
        if not isinstance(data, str):
            raise BadRequest(400, '"data" must be a string (base64 with "binary": true)')
        exclude = request.get("exclude")
        if exclude is not None:
            if connection is not None:
                raise BadRequest(400, '"exclude" goes with "group" only')
            if not isinstance(exclude, str):
                raise BadRequest(400, '"exclude" must be a connection id (a string)')
        key = request.get("key")
        try:
            _check_key(key)
        except ValueError:
            raise BadRequest(400, '"key" must be a non-empty string of at most 200 characters') from None
        if binary:
            try:
                payload = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raise BadRequest(400, '"data" is not valid base64 (with "binary": true)') from None
        else:
            try:
                payload = data.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate from a "\ud800" escape
                raise BadRequest(400, '"data" is not valid Unicode text') from None
        if len(payload) > self.max_message_size:
            raise BadRequest(413, f'"data" is {len(payload)} bytes, more than WS_MAX_MESSAGE_SIZE '
                                  f"({self.max_message_size})")
        if group is not None:
            return (lambda ref, sent_at=0, trace="":
                    wire.GroupSend(group, exclude or "", binary, payload, ref, sent_at, trace)), key
        assert connection is not None  # one of the two, checked above
        return (lambda ref, sent_at=0, trace="": wire.SendTo(connection, binary, payload, ref, sent_at, trace)), key

    def send(self, make: MakeMessage, key: str | None, sent_at: int = 0,
             traceparent: str = "") -> dict[str, typing.Any]:
        """Carry out one send (in a pool thread); the answer's body. SendError when nobody was reached.

        ``sent_at``: when the request arrived (the stamp delivery latency counts from);
        ``traceparent``: the request's own header, the parent of its span (WS_TRACING).
        """
        message = make("")
        target = ({"django_ws.group": message.group} if isinstance(message, wire.GroupSend)
                  else {"django_ws.connection": getattr(message, "conn_id", "")})
        try:
            delivered = stamped_send(self.route, "django_ws publish", target, make, None, key, sent_at=sent_at,
                                     traceparent=traceparent)
            return {"delivered": SendResult(delivered).delivered}
        except SendError as error:
            if not error.reached:
                raise
            # Some edges took it: the caller learns how many clients, which edges not, and the key to retry with.
            return {"delivered": error.delivered, "unreached": error.unreached, "key": error.key}

    @property
    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(THREADS, thread_name_prefix="django-ws-publish")
        return self._executor

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


class PublishHandler(tornado.web.RequestHandler):
    """``POST /_django_ws/publish``; 404 while WS_API_KEYS is empty."""

    def initialize(self, publisher: Publisher) -> None:
        self.publisher = publisher

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")

    def check_xsrf_cookie(self) -> None:  # a bearer key, not a cookie, authorizes: nothing to forge
        pass

    def answer(self, status: int, body: dict[str, typing.Any]) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    async def post(self) -> None:
        publisher = self.publisher
        if not publisher.enabled:
            raise tornado.web.HTTPError(404)
        # Never logged, nor echoed: the access log has the method, the path and the address only (logs.py).
        name = publisher.authorize(self.request.headers.get("Authorization"))
        if name is None:
            self.set_header("WWW-Authenticate", 'Bearer realm="django-ws"')
            return self.answer(401, {"error": "a valid key is required: Authorization: Bearer <key>"})
        wait = publisher.admit(name, time.monotonic())
        if wait is not None:
            self.set_header("Retry-After", str(max(1, math.ceil(wait))))
            return self.answer(429, {"error": f"key {name!r} is over its rate limit (WS_API_RATE: "
                                              f"{publisher.rate:g} per second)"})
        sent_at = time.time_ns() // 1000
        try:
            make, key = publisher.parse(self.request.body)
        except BadRequest as bad:
            return self.answer(bad.status, {"error": bad.error})
        loop = tornado.ioloop.IOLoop.current()
        try:
            body = await loop.run_in_executor(publisher.executor, publisher.send, make, key, sent_at,
                                              self.request.headers.get("traceparent", ""))
        except SendError as error:
            return self.answer(503, {"error": str(error), "unreached": error.unreached, "key": error.key})
        self.answer(200, body)

    def write_error(self, status_code: int, **kwargs: typing.Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": self._reason}))


def publish_routes(publisher: Publisher) -> list[tuple[str, type[PublishHandler], dict[str, Publisher]]]:
    return [(r"/_django_ws/publish", PublishHandler, {"publisher": publisher})]
