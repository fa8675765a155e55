"""The Lua scripts of the Redis providers, and small reply helpers.

Multi-key operations are scripts: atomic, one round trip.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import txredisapi
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

if TYPE_CHECKING:
    from ahtwist.backends.redis.link import RedisLink

#: a node is a peer while it announced itself within this many ms (README.md, 'Running a cluster')
PEER_WINDOW_MS = 15000


class Script:
    """A Lua script run with EVALSHA, falling back to EVAL when Redis does
    not know it yet (first use, or after a Redis restart)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(self, link: RedisLink, keys: list[str], args: list[Any]) -> Deferred[Any]:
        d = link.execute("EVALSHA", self.sha, len(keys), *keys, *args)

        def retry(failure: Failure) -> Any:
            if failure.check(txredisapi.ResponseError) and "NOSCRIPT" in str(failure.value):
                return link.execute("EVAL", self.source, len(keys), *keys, *args)
            return failure

        return d.addErrback(retry)

    def load(self, link: RedisLink) -> Deferred[Any]:
        """Put the script in Redis's cache now: commands sent after it on the
        connection find it (no EVALSHA refused and sent again as EVAL, which
        would let a later command overtake it)."""
        return link.execute("SCRIPT", "LOAD", self.source)


# Member hash values are "<seq> <record JSON>": seq (from one cluster-wide
# counter) keeps join order, which neither hash order nor joinedAt (two joins
# in one ms, on two nodes) can.
ADD_MEMBER = Script(
    """
    if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
    local seq = redis.call('INCR', KEYS[3])
    redis.call('HSET', KEYS[1], ARGV[1], seq .. ' ' .. ARGV[2])
    redis.call('SADD', KEYS[2], ARGV[3])
    return 1
    """
)

REMOVE_MEMBER = Script(
    """
    redis.call('SREM', KEYS[2], ARGV[2])
    return redis.call('HDEL', KEYS[1], ARGV[1])
    """
)

# KEYS: rooms set, the room's members hash, its tombstone; ARGV[1]: room,
# ARGV[2]: deletion time (ms), ARGV[3]: tombstone lifetime (ms).  The tombstone
# keeps the latest deletion time: a node re-asserting the room or a membership
# it knew of before that time is refused (REASSERT).
REMOVE_ROOM = Script(
    """
    local t = redis.call('GET', KEYS[3])
    if not t or tonumber(t) < tonumber(ARGV[2]) then
        redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
    end
    local had_members = redis.call('DEL', KEYS[2])
    return redis.call('SREM', KEYS[1], ARGV[1]) + had_members
    """
)

# KEYS: rooms set, this host's set, the join counter.  ARGV[1]: members key
# prefix; ARGV[2]: JSON [[room, known since ms], ...] rooms to assert; ARGV[3]:
# JSON [[entry, room, id, record, joinedAt ms], ...] = every membership this
# node holds; ARGV[4]: JSON [[room, deleted at ms], ...] rooms this node
# deleted while Redis was out of reach; ARGV[5]: tombstone key prefix;
# ARGV[6]: tombstone lifetime (ms).
# First the deletions are replayed (with their tombstones); memberships of this
# host that Redis still has but the node no longer holds (left during the
# outage) are removed; then rooms and memberships are put back -- except those
# in a room the node knew of from before its deletion (a tombstone at or after
# the room's or any of its memberships' time): those rooms are returned as
# refused, for the node to drop.
# Returns {refused rooms, replayed deletions that removed something}.
REASSERT = Script(
    """
    local deleted = {}
    for _, d in ipairs(cjson.decode(ARGV[4])) do
        local tomb = ARGV[5] .. d[1]
        local t = redis.call('GET', tomb)
        if not t or tonumber(t) < tonumber(d[2]) then redis.call('SET', tomb, d[2], 'PX', ARGV[6]) end
        if redis.call('SREM', KEYS[1], d[1]) + redis.call('DEL', ARGV[1] .. d[1]) > 0 then
            table.insert(deleted, d[1])
        end
    end
    local function dead(room, since)
        local t = redis.call('GET', ARGV[5] .. room)
        return t and tonumber(t) >= tonumber(since)
    end
    local keep = {}
    for _, m in ipairs(cjson.decode(ARGV[3])) do keep[m[1]] = m end
    for _, entry in ipairs(redis.call('SMEMBERS', KEYS[2])) do
        if not keep[entry] then
            local e = cjson.decode(entry)
            redis.call('HDEL', ARGV[1] .. e[1], e[2])
            redis.call('SREM', KEYS[2], entry)
        end
    end
    local rooms, members = cjson.decode(ARGV[2]), cjson.decode(ARGV[3])
    local refused, seen = {}, {}
    local function refuse(room)
        if not seen[room] then seen[room] = true; table.insert(refused, room) end
    end
    for _, r in ipairs(rooms) do if dead(r[1], r[2]) then refuse(r[1]) end end
    for _, m in ipairs(members) do if dead(m[2], m[5]) then refuse(m[2]) end end
    for _, r in ipairs(rooms) do
        if not seen[r[1]] then redis.call('SADD', KEYS[1], r[1]) end
    end
    for _, m in ipairs(members) do
        if seen[m[2]] then
            redis.call('HDEL', ARGV[1] .. m[2], m[3])
            redis.call('SREM', KEYS[2], m[1])
        else
            redis.call('SADD', KEYS[1], m[2])
            if redis.call('HEXISTS', ARGV[1] .. m[2], m[3]) == 0 then
                local seq = redis.call('INCR', KEYS[3])
                redis.call('HSET', ARGV[1] .. m[2], m[3], seq .. ' ' .. m[4])
            end
            redis.call('SADD', KEYS[2], m[1])
        end
    end
    return {refused, deleted}
    """
)

# KEYS: peers zset; ARGV[1]: node id (or '' to only read), ARGV[2]: window ms.
# Returns {live ids, dead ids}, judged by Redis's clock (nodes' clocks may differ).
HEARTBEAT = Script(
    """
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    if ARGV[1] ~= '' then redis.call('ZADD', KEYS[1], now, ARGV[1]) end
    local cutoff = now - tonumber(ARGV[2])
    local live = redis.call('ZRANGEBYSCORE', KEYS[1], cutoff, '+inf')
    local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff)
    return {live, dead}
    """
)

# KEYS: peers zset, the node's host set; ARGV[1]: node id, ARGV[2]: members key
# prefix, ARGV[3]: window ms ('' = remove unconditionally, for a clean stop).
# Removes the node's memberships and its peer entry; returns how many members.
REMOVE_NODE = Script(
    """
    if ARGV[3] ~= '' then
        local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        if score and tonumber(score) >= now - tonumber(ARGV[3]) then return -1 end
    end
    local removed = 0
    for _, entry in ipairs(redis.call('SMEMBERS', KEYS[2])) do
        local e = cjson.decode(entry)
        removed = removed + redis.call('HDEL', ARGV[2] .. e[1], e[2])
    end
    redis.call('DEL', KEYS[2])
    redis.call('ZREM', KEYS[1], ARGV[1])
    return removed
    """
)

CACHE_SAVE = Script(
    """
    redis.call('DEL', KEYS[1])
    redis.call('HSET', KEYS[1], 'value', ARGV[2], 'createdAt', ARGV[3],
               'expireTimestamp', ARGV[4], 'readAt', '')
    if ARGV[4] ~= '' then
        redis.call('PEXPIREAT', KEYS[1], ARGV[4])
        redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
    else
        redis.call('ZADD', KEYS[2], '+inf', ARGV[1])
    end
    return 1
    """
)

CACHE_LOAD = Script(
    """
    local entry = redis.call('HGETALL', KEYS[1])
    if #entry > 0 then redis.call('HSET', KEYS[1], 'readAt', ARGV[1]) end
    return entry
    """
)

CACHE_DESTROY = Script(
    """
    redis.call('ZREM', KEYS[2], ARGV[1])
    return redis.call('DEL', KEYS[1])
    """
)

CACHE_SIZE = Script(
    """
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
    return redis.call('ZCARD', KEYS[1])
    """
)


def pairs(flat: list[Any]) -> dict[str, Any]:
    """A Redis ``HGETALL`` reply as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
