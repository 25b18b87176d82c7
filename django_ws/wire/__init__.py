"""The envelope between the edge and the workers: pure encode and decode.

This package is the only contract the two sides share. It imports neither
zmq nor tornado: every message is a small frozen dataclass that encodes to a
list of ``bytes`` (one ZeroMQ multipart message) and decodes back, so the whole
format is tested on bytes alone. docs/protocol.rst describes the same thing
for people writing another edge or worker.

A message is one or two frames: a header (``VERSION``, a one-letter
``KIND``, then each field length-prefixed) and, for the messages that carry
a WebSocket payload, that payload alone in a second frame, untouched.
``VERSION`` lets a mixed deployment fail loudly instead of misreading frames.
"""

from .messages import (
    VERSION,
    Accept,
    Ack,
    Close,
    CloseConnections,
    Credentials,
    Connect,
    Data,
    Deny,
    Disconnect,
    Event,
    EventAck,
    Goodbye,
    GroupSend,
    Hello,
    Inspect,
    Join,
    JoinAs,
    Leave,
    Members,
    Message,
    Ping,
    Presence,
    Refresh,
    PresenceDiff,
    PresenceQuery,
    ProtocolError,
    Recovery,
    Report,
    Send,
    SendTo,
    UserPresenceDiff,
    Watch,
    decode,
    encode_batch,
    iter_decode,
    payload,
)

__all__ = [
    "VERSION",
    "Accept",
    "Ack",
    "Close",
    "CloseConnections",
    "Credentials",
    "Connect",
    "Data",
    "Deny",
    "Disconnect",
    "Event",
    "EventAck",
    "Goodbye",
    "GroupSend",
    "Hello",
    "Inspect",
    "Join",
    "JoinAs",
    "Leave",
    "Members",
    "Message",
    "Ping",
    "Presence",
    "PresenceDiff",
    "PresenceQuery",
    "ProtocolError",
    "Recovery",
    "Refresh",
    "Report",
    "Send",
    "SendTo",
    "UserPresenceDiff",
    "Watch",
    "decode",
    "encode_batch",
    "iter_decode",
    "payload",
]
