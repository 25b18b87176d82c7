"""JsonWebSocketHandler: messages decoded from and encoded to JSON."""

from __future__ import annotations

import json
from typing import Any, Callable, TypeVar

from django.core.serializers.json import DjangoJSONEncoder

from django_ws.codes import CloseCode

from .base import WebSocketHandler, _ack_arguments

_Method = TypeVar("_Method", bound=Callable[..., Any])

#: The field of a request (django-ws.js ``request()``) and of its reply; docs/client.rst.
REQUEST_KEY = "dws_request"
REPLY_KEY = "dws_reply"


def _is_request_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def on_type(type_name: str) -> Callable[[_Method], _Method]:
    """Route JSON messages whose ``"type"`` is ``type_name`` to the decorated method.

    ::

        class Game(JsonWebSocketHandler):
            @on_type("move")
            def move(self, content):
                ...

    Messages with another type, or none, go to ``on_json`` as usual. Only
    decorated methods are reachable this way, so a client cannot call
    ``on_close`` or ``send`` by naming them.
    """

    def mark(method: _Method) -> _Method:
        method._ws_message_type = type_name  # type: ignore[attr-defined]  # a mark on the function
        return method

    return mark


class JsonWebSocketHandler(WebSocketHandler):
    """A handler whose messages are JSON documents.

    Override ``on_json(content)`` (and ``on_open_json(content)`` if the first
    message needs its own treatment), or route by a ``"type"`` field with
    :func:`on_type`. ``send_json(content)`` encodes with Django's JSON
    encoder, so dates, decimals and UUIDs just work. A message that is not
    JSON closes the connection with 1007 (invalid data); the hooks never see it.

    Subclasses may override ``decode`` and ``encode`` to use another codec.
    """

    encoder_class = DjangoJSONEncoder
    _type_handlers: dict[str, str] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                message_type = getattr(value, "_ws_message_type", None)
                if message_type is not None:
                    handlers[message_type] = name
        cls._type_handlers = handlers

    def decode(self, message: str | bytes) -> Any:
        """A client's message as a Python value; ValueError for one that is not valid (closes with 1007)."""
        return json.loads(message)

    def encode(self, content: Any) -> str:
        """A Python value as the text sent to the client, with :attr:`encoder_class`."""
        return json.dumps(content, cls=self.encoder_class)

    def send_json(self, content: Any) -> None:
        """Send ``content`` encoded as JSON, as one text message."""
        self.send(self.encode(content))

    # The text hooks decode, then hand over to the JSON hooks.

    def on_open(self, message: str | bytes) -> bool | None:
        """Decodes the first message and hands it to :meth:`on_open_json`."""
        content = self._decode_or_close(message)
        if content is _INVALID:
            return True
        return self.on_open_json(content)

    def on_message(self, message: str | bytes) -> None:
        """Decodes every message and hands it to :meth:`dispatch_json`."""
        content = self._decode_or_close(message)
        if content is not _INVALID:
            self.dispatch_json(content)

    def dispatch_json(self, content: Any) -> None:
        """Call the :func:`on_type` method for the message's type, else ``on_json``.

        A message with a ``"dws_request"`` id (what django-ws.js's
        ``request()`` sends) is answered: ``{"dws_reply": id, "data": <what
        the on_type method returned>}``, or ``{"dws_reply": id, "error":
        "..."}`` when no on_type method takes its type. The id is removed
        from ``content`` before the method sees it. See docs/client.rst.
        """
        if isinstance(content, dict):
            request_id = content.pop(REQUEST_KEY, None)
            kind = content.get("type")
            # Only a str names a handler: {"type": []} must not be a TypeError (unhashable).
            name = self._type_handlers.get(kind) if isinstance(kind, str) else None
            if request_id is not None and not _is_request_id(request_id):
                self.close(CloseCode.INVALID_DATA, f"{REQUEST_KEY} must be an integer")
                return
            if name is not None:
                result = getattr(self, name)(content)
                if request_id is not None and not self.closed:
                    self.send_json({REPLY_KEY: request_id, "data": result})
                return
            if request_id is not None:
                self.send_json({REPLY_KEY: request_id, "error": f"no @on_type method for type {content.get('type')!r}"})
                return
        self.on_json(content)

    def dispatch_event(self, name: str, payload: Any) -> Any:
        """A Socket.IO event goes to the :func:`on_type` method of its name, with its payload; else to on_event."""
        method = self._type_handlers.get(name)
        if method is not None:
            return getattr(self, method)(payload)
        return self.on_event(name, payload)

    def encode_ack(self, value: Any) -> bytes:
        """The acknowledgement's arguments, encoded with :meth:`encode` (so with :attr:`encoder_class`)."""
        return self.encode(_ack_arguments(value)).encode("utf-8")

    def on_open_json(self, content: Any) -> bool | None:
        """The first message, decoded; the return value works as on_open's."""

    def on_json(self, content: Any) -> None:
        """Every message, decoded."""

    def _decode_or_close(self, message: str | bytes) -> Any:
        try:
            return self.decode(message)
        except ValueError as exc:
            self.close(CloseCode.INVALID_DATA, f"invalid JSON: {exc}"[:120])
            return _INVALID


_INVALID = object()
