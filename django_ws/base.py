"""The original import path: ``from django_ws.base import WebSocketHandler``."""

from django_ws.handlers import CloseCode, JsonWebSocketHandler, WebSocketHandler

__all__ = ["CloseCode", "JsonWebSocketHandler", "WebSocketHandler"]
