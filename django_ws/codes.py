"""WebSocket close codes used by django-ws (RFC 6455, section 7.4.1).

A leaf module: the edge, the worker and the handlers all import it, and it
imports nothing of theirs (nor Django).
"""

from enum import IntEnum


class CloseCode(IntEnum):
    """Why a connection ended. The values are what the browser's CloseEvent.code shows."""

    NORMAL = 1000  #: the handler or the client closed it on purpose
    GOING_AWAY = 1001  #: the server is shutting down (SIGTERM, Ctrl-C)
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005  #: the client closed without a code
    ABNORMAL = 1006  #: the TCP connection dropped without a close frame
    INVALID_DATA = 1007  #: a text frame that is not valid UTF-8, or a JSON handler's bad JSON
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009  #: bigger than WS_MAX_MESSAGE_SIZE
    INTERNAL_ERROR = 1011  #: the handler raised an exception, or the client did not answer the keepalive ping
    SERVICE_RESTART = 1012  #: the worker holding the connection died or was replaced
    TRY_AGAIN_LATER = 1013  #: overloaded: a queue bound or a process cap was reached
