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


def is_valid_close_code(code: int) -> bool:
    """Whether a server may send ``code`` in a close frame (RFC 6455 7.4.1 and 7.4.2, IANA's registry).

    1000-1003 and 1007-1014 are the protocol's own; 1004 is reserved, 1005,
    1006 and 1015 must never be sent; 3000-3999 are for libraries and
    frameworks, 4000-4999 for applications. The edge applies the same rule
    (edge/protocol.py) to what clients send.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def check_close_code(code: int) -> int:
    """``code`` as an int if a handler may close with it; ValueError (at the handler's call) if not."""
    if isinstance(code, bool) or not isinstance(code, int):
        raise TypeError(f"a close code is an int, not {type(code).__name__}")
    if not is_valid_close_code(code):
        raise ValueError(f"{code} is not a close code a server may send: use 1000, a code from 3000 to 4999 "
                         "for your application's reasons, or one of 1001-1003 and 1007-1014 (RFC 6455)")
    return int(code)
