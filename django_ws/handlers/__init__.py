"""Handler classes and close codes: what a project subclasses and uses."""

from django_ws.codes import CloseCode

from .base import WebSocketHandler
from .connection import HandlerConnection
from .json_handler import JsonWebSocketHandler, on_type

__all__ = ["CloseCode", "HandlerConnection", "JsonWebSocketHandler", "WebSocketHandler", "on_type"]
