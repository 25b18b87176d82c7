"""The edge's transports: how clients speak to it, each a thin adapter around the core.

:mod:`.websocket` serves RFC 6455 WebSockets; :mod:`.socketio` (imported
only with ``WS_SOCKETIO``) serves Socket.IO through python-socketio;
:mod:`.http` builds the request a worker gets, for both. A transport turns what its
clients do into calls on the core (:mod:`django_ws.edge.core`) and carries
out the core's actions for its connections (deliver, close, answer a
handshake); the connection's id, route, groups and close code live in the
core, never in the transport.
"""
