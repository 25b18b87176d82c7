"""The edge: the Tornado process that holds the clients' WebSockets and relays frames to workers over ZeroMQ.

``run_wsserver`` imports :mod:`django_ws.edge.supervisor` and
:mod:`django_ws.edge.app`; nothing here is public API.
"""
