"""What django-ws keeps in Redis, and the scripts that read and write it atomically.

Every key and channel starts with ``WS_BROKER_PREFIX`` (default ``django_ws:``),
so several projects can share one Redis:

=================================  ===========================================================
``<prefix>edges``                  set of the ids of the edges that announced themselves
``<prefix>edge:<id>``              an edge's announcement (JSON), with a lease (PX) it renews
``<prefix>edges:events``           channel: ``up <id>`` / ``down <id>`` as edges come and go
``<prefix>g:<group>``              channel of a group's messages (wire.GroupSend, packed)
``<prefix>e:<edge id>``            channel of one edge's direct messages (wire.SendTo, packed)
``<prefix>m:<group>``              hash: connection id -> edge id, the group's presence
``<prefix>k:<key>``                an idempotency key (send_to_group(key=...)), WS_SEND_KEY_TTL
=================================  ===========================================================

The registry is pruned by its readers: an id whose lease key has expired is
removed from the set by the script that enumerates it, and a presence entry
whose edge's lease has expired is removed by the script that reads the
group. So the members of an edge that died without a word vanish within the
lease, and nobody needs to run a sweeper.

Messages travel in the wire codec of django_ws.wire, its frames packed into one
Redis string (:func:`pack`): the same bytes a ZeroMQ sender would send.
"""

from __future__ import annotations

import struct

from django_ws import wire

_LENGTH = struct.Struct("!I")


class Keys:
    """The key and channel names under one prefix."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.edges = f"{prefix}edges"
        self.lease_prefix = f"{prefix}edge:"
        self.events = f"{prefix}edges:events"
        self.members_prefix = f"{prefix}m:"

    def lease(self, edge_id: str) -> str:
        return f"{self.lease_prefix}{edge_id}"

    def group_channel(self, group: str) -> str:
        return f"{self.prefix}g:{group}"

    def direct_channel(self, edge_id: str) -> str:
        return f"{self.prefix}e:{edge_id}"

    def members(self, group: str) -> str:
        return f"{self.members_prefix}{group}"

    def send_key(self, key: str) -> str:
        return f"{self.prefix}k:{key}"


#: KEYS[1] the edges set; ARGV[1] the lease key prefix. Returns the live
#: announcements and forgets the ids whose lease lapsed.
LIVE_EDGES = """
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local announcement = redis.call('GET', ARGV[1] .. id)
  if announcement then
    table.insert(out, announcement)
  else
    redis.call('SREM', KEYS[1], id)
  end
end
return out
"""

#: KEYS[1] a group's presence hash; ARGV[1] the lease key prefix. Returns the
#: ids of the members whose edge holds a lease, and drops the others.
GROUP_MEMBERS = """
local alive, out = {}, {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local conn, edge = all[i], all[i + 1]
  local ok = alive[edge]
  if ok == nil then
    ok = redis.call('EXISTS', ARGV[1] .. edge) == 1
    alive[edge] = ok
  end
  if ok then
    table.insert(out, conn)
  else
    redis.call('HDEL', KEYS[1], conn)
  end
end
return out
"""

#: KEYS[1] the idempotency key; ARGV[1] channel, ARGV[2] message, ARGV[3] ttl
#: in ms. Publishes unless the key was seen within its ttl: returns the
#: number of subscribers reached, or -1 for a repeat.
PUBLISH_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[3]) then
  return redis.call('PUBLISH', ARGV[1], ARGV[2])
end
return -1
"""


def pack(message: wire.Message) -> bytes:
    """One wire message as one Redis string: each frame, length first."""
    return b"".join(_LENGTH.pack(len(frame)) + bytes(frame) for frame in message.encode())


def unpack(data: bytes) -> wire.Message:
    """The message :func:`pack` made; wire.ProtocolError if ``data`` is not one."""
    frames, pos, end = [], 0, len(data)
    while pos < end:
        if end - pos < 4:
            raise wire.ProtocolError("truncated frame length")
        (length,) = _LENGTH.unpack_from(data, pos)
        pos += 4
        if length > end - pos:
            raise wire.ProtocolError("truncated frame")
        frames.append(data[pos:pos + length])
        pos += length
    return wire.decode(frames)
