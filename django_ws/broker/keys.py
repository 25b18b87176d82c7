"""What django-ws keeps in Redis, and the scripts that read and write it atomically.

Every key and channel starts with ``WS_BROKER_PREFIX`` (default ``django_ws:``),
so several projects can share one Redis:

=================================  ===========================================================
``<prefix>edges``                  set of the ids of the edges that announced themselves (until swept)
``<prefix>edge:<id>``              an edge's announcement (JSON), with a lease (PX) it renews
``<prefix>edges:events``           channel: ``up <id>`` / ``down <id>`` as edges come and go
``<prefix>g:<group>``              channel of a group's messages (wire.GroupSend, packed)
``<prefix>e:<edge id>``            channel of one edge's direct messages (wire.SendTo, packed)
``<prefix>p:<group>``              channel of a group's joins and leaves (JSON), for watchers
``<prefix>m:<group>``              hash: connection id -> edge id, the group's presence
``<prefix>eg:<edge id>``           set of the groups an edge has members in, for the sweep
``<prefix>uc:<group>``             hash: connection id -> user key, for the connections joined with a user
``<prefix>un:<group>``             hash: user key -> connections (HINCRBY), across edges
``<prefix>ui:<group>``             hash: user key -> info (JSON)
``<prefix>uz:<group>``             sorted set of the user keys (score 0): pages in key order, ZCARD the count
``<prefix>k:<key>``                an idempotency key (send_to_group(key=...)), WS_SEND_KEY_TTL
``<prefix>h:<group>``              stream: a group's history (WS_GROUP_HISTORY), entry ids ``0-<offset>``
``<prefix>hm:<group>``             hash: that history's ``epoch`` and ``last`` offset
=================================  ===========================================================

Every edge, at each renewal of its lease, runs :data:`SWEEP_DEAD_EDGES`: the
members of an edge whose lease lapsed are removed from each group of its
``eg:`` set and told as left on the group's presence channel, once. The
script that reads a group (:data:`GROUP_MEMBERS`) also removes, and tells,
the members of a lapsed edge it meets first. Whichever removes an entry tells
it: a join or leave is published when, and only when, an entry of a presence
hash appears or disappears, so a watcher hears each change once.

Users ride on the same scripts: whatever adds or removes a connection of a
user moves that user's count in ``un:`` (so a dead edge's share goes with
its members, in the sweep), and a user whose count appears (reaches 0) is
told as ``ujoined`` (user -> info as a JSON string; ``uleft``: a list) in the same presence message; new info is
told as ``ujoined`` too. ``group_size`` is ``HLEN`` of ``m:`` and
``group_user_count`` ``ZCARD`` of ``uz:``: no member moves to count them.

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
        self.presence_prefix = f"{prefix}p:"
        self.edge_groups_prefix = f"{prefix}eg:"
        #: Start of the users' keys: ``uc:``, ``un:``, ``ui:`` and ``uz:`` follow it (see the table above).
        self.users_prefix = f"{prefix}u"

    def lease(self, edge_id: str) -> str:
        return f"{self.lease_prefix}{edge_id}"

    def group_channel(self, group: str) -> str:
        return f"{self.prefix}g:{group}"

    def direct_channel(self, edge_id: str) -> str:
        return f"{self.prefix}e:{edge_id}"

    def presence_channel(self, group: str) -> str:
        return f"{self.presence_prefix}{group}"

    def members(self, group: str) -> str:
        return f"{self.members_prefix}{group}"

    def edge_groups(self, edge_id: str) -> str:
        return f"{self.edge_groups_prefix}{edge_id}"

    def users(self, group: str) -> tuple[str, str, str]:
        """The counts, infos and order of ``group``'s users: ``un:``, ``ui:``, ``uz:``."""
        p = self.users_prefix
        return f"{p}n:{group}", f"{p}i:{group}", f"{p}z:{group}"

    def sweep_args(self) -> list[str]:
        """ARGV of :data:`SWEEP_DEAD_EDGES` (its KEYS: ``[self.edges]``)."""
        return [self.lease_prefix, self.edge_groups_prefix, self.members_prefix, self.presence_prefix,
                self.users_prefix]

    def send_key(self, key: str) -> str:
        return f"{self.prefix}k:{key}"

    def history(self, group: str) -> tuple[str, str]:
        """The stream of a group's history and the hash of its epoch and last offset."""
        return f"{self.prefix}h:{group}", f"{self.prefix}hm:{group}"


#: KEYS[1] the edges set; ARGV[1] the lease key prefix, ARGV[2] the edge
#: groups prefix. Returns the live announcements, and forgets the ids whose
#: lease lapsed, but for those whose members the sweep has still to tell.
LIVE_EDGES = """
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local announcement = redis.call('GET', ARGV[1] .. id)
  if announcement then
    table.insert(out, announcement)
  elseif redis.call('EXISTS', ARGV[2] .. id) == 0 then
    redis.call('SREM', KEYS[1], id)
  end
end
return out
"""

#: Lua: the users of a group (``up``: the users prefix). ``user_left`` takes a
#: connection away from its user: the user if it was their last. ``user_joined``
#: gives one to ``user`` with ``info``: whether to tell the user as joined (first
#: connection, or new info), and the user the connection had before if it left.
_USERS = """
local function user_left(up, group, conn)
  local byconn = up .. 'c:' .. group
  local user = redis.call('HGET', byconn, conn)
  if not user then
    return nil
  end
  redis.call('HDEL', byconn, conn)
  if redis.call('HINCRBY', up .. 'n:' .. group, user, -1) > 0 then
    return nil
  end
  redis.call('HDEL', up .. 'n:' .. group, user)
  redis.call('HDEL', up .. 'i:' .. group, user)
  redis.call('ZREM', up .. 'z:' .. group, user)
  return user
end
local function user_joined(up, group, conn, user, info)
  local byconn, infos = up .. 'c:' .. group, up .. 'i:' .. group
  local prior = redis.call('HGET', byconn, conn)
  if prior == user then
    if redis.call('HGET', infos, user) == info then
      return false, nil
    end
    redis.call('HSET', infos, user, info)
    return true, nil
  end
  local gone = nil
  if prior then
    gone = user_left(up, group, conn)
  end
  redis.call('HSET', byconn, conn, user)
  local n = redis.call('HINCRBY', up .. 'n:' .. group, user, 1)
  local old = redis.call('HGET', infos, user)
  redis.call('HSET', infos, user, info)
  if n == 1 then
    redis.call('ZADD', up .. 'z:' .. group, 0, user)
  end
  return n == 1 or old ~= info, gone
end
"""

#: Lua: remove ``ids`` from the hash ``key`` and publish them as left by
#: ``edge`` on ``channel`` (HDEL in slices: Lua's unpack has a limit), with
#: the users who left with them (``up``, ``group``: the users prefix and group; nil: none kept).
_TELL_LEFT = _USERS + """
local function tell_left(key, channel, edge, ids, up, group)
  for i = 1, #ids, 1000 do
    redis.call('HDEL', key, unpack(ids, i, math.min(i + 999, #ids)))
  end
  local change = {edge = edge, left = ids}
  if up then
    local gone = {}
    for _, conn in ipairs(ids) do
      local user = user_left(up, group, conn)
      if user then
        table.insert(gone, user)
      end
    end
    if #gone > 0 then
      change.uleft = gone
    end
  end
  redis.call('PUBLISH', channel, cjson.encode(change))
end
"""

#: KEYS[1] a group's presence hash; ARGV[1] the lease key prefix, ARGV[2] the
#: group's presence channel, ARGV[3] the users prefix, ARGV[4] the group.
#: Returns the ids of the members whose edge holds a
#: lease; drops the others, and tells them as left (the sweep then finds them gone).
GROUP_MEMBERS = _TELL_LEFT + """
local alive, out, dead = {}, {}, {}
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
    dead[edge] = dead[edge] or {}
    table.insert(dead[edge], conn)
  end
end
for edge, ids in pairs(dead) do
  tell_left(KEYS[1], ARGV[2], edge, ids, ARGV[3], ARGV[4])
end
return out
"""

#: Run by every edge at each renewal. KEYS[1] the edges set; ARGV[1] the lease
#: key prefix, ARGV[2] the edge groups prefix, ARGV[3] the presence hash
#: prefix, ARGV[4] the presence channel prefix, ARGV[5] the users prefix. For each edge whose lease
#: lapsed: its members leave each group of its ``eg:`` set, told in one
#: message per group; then the edge is forgotten. One script: two edges
#: sweeping at once tell each leave once. Returns the ids swept.
SWEEP_DEAD_EDGES = _TELL_LEFT + """
local swept = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. id) == 0 then
    local groups = ARGV[2] .. id
    for _, group in ipairs(redis.call('SMEMBERS', groups)) do
      local key, ids = ARGV[3] .. group, {}
      local all = redis.call('HGETALL', key)
      for i = 1, #all, 2 do
        if all[i + 1] == id then
          table.insert(ids, all[i])
        end
      end
      if #ids > 0 then
        tell_left(key, ARGV[4] .. group, id, ids, ARGV[5], group)
      end
    end
    redis.call('DEL', groups)
    redis.call('SREM', KEYS[1], id)
    table.insert(swept, id)
  end
end
return swept
"""

#: One presence change of an edge. KEYS[1] the group's presence hash, KEYS[2]
#: the edge's groups set, KEYS[3] the edges set (so that an edge swept while
#: it lived, which then dies before it renews, is swept again); ARGV[1] edge
#: id, ARGV[2] connection id, ARGV[3] '1' joined / '0' left, ARGV[4] the
#: group, ARGV[5] its presence channel, ARGV[6] '1' if the edge has no member
#: of the group left; ARGV[7] the users prefix, ARGV[8] the connection's user
#: ('' none) and ARGV[9] their info (JSON), on a join. Told only if the entry
#: appeared or disappeared (a sweep may have removed it first, and told it), or the user did, or their info changed.
MEMBER_CHANGED = _USERS + """
local changed, ujoined, uleft
local up = ARGV[7]
if up == '' then
  up = nil
end
if ARGV[3] == '1' then
  changed = redis.call('HSET', KEYS[1], ARGV[2], ARGV[1])
  redis.call('SADD', KEYS[2], ARGV[4])
  redis.call('SADD', KEYS[3], ARGV[1])
  if up and ARGV[8] ~= '' then
    local told, gone = user_joined(up, ARGV[4], ARGV[2], ARGV[8], ARGV[9])
    if told then
      ujoined = {[ARGV[8]] = ARGV[9]}
    end
    if gone then
      uleft = {gone}
    end
  end
else
  changed = redis.call('HDEL', KEYS[1], ARGV[2])
  if ARGV[6] == '1' then
    redis.call('SREM', KEYS[2], ARGV[4])
  end
  if up then
    local gone = user_left(up, ARGV[4], ARGV[2])
    if gone then
      uleft = {gone}
    end
  end
end
if changed == 1 or ujoined or uleft then
  local change = {edge = ARGV[1]}
  if changed == 1 then
    change[ARGV[3] == '1' and 'joined' or 'left'] = {ARGV[2]}
  end
  change.ujoined = ujoined
  change.uleft = uleft
  redis.call('PUBLISH', ARGV[5], cjson.encode(change))
end
return changed
"""

#: An edge's members of one group, written again (a new session, a late
#: renewal). KEYS[1] the group's presence hash, KEYS[2] the edge's groups
#: set, KEYS[3] the edges set; ARGV[1] edge id, ARGV[2] the group, ARGV[3]
#: its presence channel, ARGV[4] the users prefix, ARGV[5..] triples: connection
#: id, its user ('' none), their info. The ones whose entry was gone (swept, or lost by
#: Redis) are told as joined, in one message, with the users who appeared. Returns how many.
MEMBERS_REWRITTEN = _USERS + """
local joined, ujoined = {}, {}
local any = false
for i = 5, #ARGV, 3 do
  if redis.call('HSET', KEYS[1], ARGV[i], ARGV[1]) == 1 then
    table.insert(joined, ARGV[i])
  end
  if ARGV[i + 1] ~= '' and user_joined(ARGV[4], ARGV[2], ARGV[i], ARGV[i + 1], ARGV[i + 2]) then
    ujoined[ARGV[i + 1]] = ARGV[i + 2]
    any = true
  end
end
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
if #joined > 0 or any then
  local change = {edge = ARGV[1]}
  if #joined > 0 then
    change.joined = joined
  end
  if any then
    change.ujoined = ujoined
  end
  redis.call('PUBLISH', ARGV[3], cjson.encode(change))
end
return #joined
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

#: How long a history's epoch and last offset outlive its last message: a
#: client that comes back to a quiet group finds the same epoch, and no gap.
EPOCH_LIFE_MS = 24 * 3600 * 1000

#: A message of a group with history. KEYS[1] the stream, KEYS[2] its epoch
#: hash, KEYS[3] the idempotency key or ''; ARGV[1] channel, ARGV[2] the
#: packed message, ARGV[3] size, ARGV[4] ttl ms, ARGV[5] an epoch for a new
#: history, ARGV[6] the key's ttl ms, ARGV[7] how long the epoch outlives the
#: last message (ms). The offset is assigned, the message kept and published
#: with its position in one step: -1 for a repeated key, else the subscribers reached.
PUBLISH_WITH_HISTORY = """
if KEYS[3] ~= '' and not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[6]) then
  return -1
end
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[5]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'last', 0)
end
local offset = redis.call('HINCRBY', KEYS[2], 'last', 1)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], '0-' .. offset, 't', now, 'm', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4] + ARGV[7])
local position = '@' .. epoch .. ' ' .. offset
return redis.call('PUBLISH', ARGV[1], struct.pack('>I4', #position) .. position .. ARGV[2])
"""

#: What followed a client's position. KEYS[1] the stream, KEYS[2] its epoch
#: hash; ARGV[1] epoch, ARGV[2] offset, ARGV[3] ttl ms, ARGV[4] an epoch for a
#: new history, ARGV[5] how long an epoch outlives the last message (ms).
#: Returns {epoch, last, covered, message...}: covered is 1 when every
#: message after the offset is still kept (they follow, oldest first), else 0.
#: A group with no history yet gets one now, so that the client can come back to it.
READ_GAP = """
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[4]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'last', 0)
  redis.call('PEXPIRE', KEYS[2], ARGV[3] + ARGV[5])
end
local last = tonumber(redis.call('HGET', KEYS[2], 'last'))
local offset = tonumber(ARGV[2])
if epoch ~= ARGV[1] or offset > last then
  return {epoch, last, 0}
end
if offset == last then
  return {epoch, last, 1}
end
local entries = redis.call('XRANGE', KEYS[1], '0-' .. (offset + 1), '+')
local t = redis.call('TIME')
local horizon = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[3])
if #entries == 0 or entries[1][1] ~= '0-' .. (offset + 1) or tonumber(entries[1][2][2]) <= horizon then
  return {epoch, last, 0}
end
local out = {epoch, last, 1}
for _, entry in ipairs(entries) do
  table.insert(out, entry[2][4])
end
return out
"""


def pack(message: wire.Message) -> bytes:
    """One wire message as one Redis string: each frame, length first."""
    return b"".join(_LENGTH.pack(len(frame)) + bytes(frame) for frame in message.encode())


def unpack(data: bytes) -> tuple[wire.Message, tuple[str, int] | None]:
    """The message :func:`pack` made, and the (epoch, offset) PUBLISH_WITH_HISTORY put in front of it, if any.

    wire.ProtocolError if ``data`` is not one.
    """
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
    position = None
    if frames and frames[0][:1] == b"@":
        epoch, _, offset = frames.pop(0)[1:].decode("ascii", "replace").partition(" ")
        if not epoch or not offset.isdigit():
            raise wire.ProtocolError("bad position in front of a broker message")
        position = (epoch, int(offset))
    return wire.decode(frames), position
