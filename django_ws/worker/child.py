"""One handler process of ``--multiprocess``: its sockets, its connection, its whole life.

The fork server (multiprocess.py) forks it with one file descriptor, the
read end of the connection's mailbox pipe. The first record there says which
connection it serves (a wire.Connect) and which edges it talks to; then come
the connection's messages, in order, until a STOP or the end of the pipe.
"""

from __future__ import annotations

import json
import signal
import threading

from django_ws import wire
from django_ws.codes import CloseCode
from django_ws.conf import ws_settings

from .connection import Connection, ConnectionRunner
from .pipes import ChildMailbox, read_record
from .zmq_link import ReplySocket, broadcast, use_worker_route


def run_handler_process(mailbox_fd: int) -> int:
    """Serve one connection from handshake to on_close; return the process's exit code."""
    import zmq

    first = read_record(mailbox_fd)
    start = json.loads(first[0])
    connect = wire.decode(first[1:])
    if not isinstance(connect, wire.Connect):
        raise ValueError(f"a handler process was started with {type(connect).__name__}, not Connect")
    context = zmq.Context()
    replies: dict[str, ReplySocket] = {}
    try:
        for endpoint in dict.fromkeys([start["reply_to"], *start["edges"]]):
            replies[endpoint] = ReplySocket(
                zmq, context, endpoint, queue_limit=int(ws_settings.WS_QUEUE_LIMIT),
                send_timeout=float(ws_settings.WS_HEARTBEAT_TIMEOUT), lock=threading.Lock())
        outboxes = list(replies.values())
        use_worker_route(lambda message: broadcast(outboxes, message), list(replies))
        connection = Connection(connect.conn_id, connect.route, connect.request, replies[start["reply_to"]])
        # The worker saw the client leave: a handler busy in a loop notices at
        # its next send(), as it would in a thread. Provisional: the Disconnect
        # queued behind the messages still in the pipe says how it ended.
        signal.signal(signal.SIGUSR1, lambda *_: connection.mark_closed(CloseCode.GOING_AWAY, "client left",
                                                                        provisional=True))
        ConnectionRunner(connection, ChildMailbox.reading(mailbox_fd), lambda conn: None).run()
        return 0
    finally:
        for reply in replies.values():
            reply.close(linger=1000)  # deliver what the handler sent
        context.term()
