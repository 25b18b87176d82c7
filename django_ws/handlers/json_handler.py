"""JsonWebSocketHandler: messages decoded from and encoded to JSON."""

from __future__ import annotations

import json

from django.core.serializers.json import DjangoJSONEncoder

from .base import WebSocketHandler
from .codes import CloseCode


class JsonWebSocketHandler(WebSocketHandler):
    """A handler whose messages are JSON documents.

    Override ``on_json(content)`` (and ``on_open_json(content)`` if the first
    message needs its own treatment). ``send_json(content)`` encodes with
    Django's JSON encoder, so dates, decimals and UUIDs just work. A message
    that is not JSON closes the connection with 1007 (invalid data); the
    hooks never see it.

    Subclasses may override ``decode`` and ``encode`` to use another codec.
    """

    encoder_class = DjangoJSONEncoder

    def decode(self, message: str | bytes):
        return json.loads(message)

    def encode(self, content) -> str:
        return json.dumps(content, cls=self.encoder_class)

    def send_json(self, content) -> None:
        self.send(self.encode(content))

    # The text hooks decode, then hand over to the JSON hooks.

    def on_open(self, message):
        content = self._decode_or_close(message)
        if content is _INVALID:
            return True
        return self.on_open_json(content)

    def on_message(self, message):
        content = self._decode_or_close(message)
        if content is not _INVALID:
            self.on_json(content)

    def on_open_json(self, content) -> bool | None:
        """The first message, decoded; the return value works as on_open's."""

    def on_json(self, content) -> None:
        """Every message, decoded."""

    def _decode_or_close(self, message):
        try:
            return self.decode(message)
        except ValueError as exc:
            self.close(CloseCode.INVALID_DATA, f"invalid JSON: {exc}"[:120])
            return _INVALID


_INVALID = object()
