"""The original README's handler, unchanged."""

import random

from django_ws.base import WebSocketHandler


class RandomCounter(WebSocketHandler):
    def on_message(self, message):
        self.send(str(random.randint(1, 100)))
