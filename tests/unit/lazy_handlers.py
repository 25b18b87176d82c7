"""Imported only through a dotted path, by test_routing's lazy-import test."""

from django_ws import WebSocketHandler


class LazyHandler(WebSocketHandler):
    pass
