"""Handler classes and close codes: what a project subclasses and uses."""

from .base import WebSocketHandler
from .codes import CloseCode
from .json_handler import JsonWebSocketHandler, on_type

__all__ = ["CloseCode", "JsonWebSocketHandler", "WebSocketHandler", "on_type"]
