"""What every transport tells a worker about the HTTP request that opened a connection.

The worker builds the handler's ``self.request`` (cookies, session, user,
GET, META) from this dict, so it must have the same shape whichever
transport the client came by.
"""

from __future__ import annotations

import tornado.httputil


def request_meta(request: tornado.httputil.HTTPServerRequest, *, path: str | None = None,
                 query: str | None = None) -> dict:
    """The handshake ``request`` as the Connect message carries it (docs/protocol.rst).

    ``path`` and ``query`` replace the request's own: a transport whose
    requests go to a fixed endpoint (Socket.IO) names the route's path instead.
    ``remote_addr`` is the proxy's view only with WS_TRUST_PROXY_HEADERS (Tornado's xheaders).
    """
    host, _, port = request.host.rpartition(":") if ":" in request.host else (request.host, "", "")
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    return {
        "path": request.path if path is None else path,
        "query": request.query if query is None else query,
        "headers": list(request.headers.get_all()),
        "remote_addr": request.remote_ip,
        "server_name": host,
        "server_port": port,
        "secure": request.protocol == "https",
        "subprotocols": [p.strip() for p in offered.split(",") if p.strip()],
    }
