"""Kept for imports written before the close codes moved to :mod:`django_ws.codes`."""

from django_ws.codes import CloseCode

__all__ = ["CloseCode"]
