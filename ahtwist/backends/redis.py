"""Redis providers: cluster mode (README.md, 'Running a cluster').

Several nodes started with the same ``redis.url`` and ``general.serverToken``
share rooms, membership, chat, cache, stats and peers through one Redis.

Importing this module imports txredisapi, which imports the global reactor:
only :func:`ahtwist.tap.build_service` (after twistd has chosen the reactor)
and tests import it.

The pieces:

* :class:`~ahtwist.backends.redis_link.RedisLink` -- this node's one link to
  Redis: a command connection and a subscriber connection, (re)connected
  together with exponential back-off, knowing whether Redis is *up*.  Every
  command fails at once with ``RedisUnavailable`` while it is down.
* :class:`RedisRoomBackend`, :class:`RedisCache`, :class:`RedisStats`,
  :class:`RedisPeers` -- the providers of the backend interfaces.  Each keeps
  working locally while Redis is down (rooms through a local mirror, cache
  through a local cache, stats counted locally) and re-asserts what it must
  when Redis comes back.
* :class:`ClusterService` -- starts the link and the periodic work (stats
  flush, heartbeat, crash cleanup); its stop takes this node out of the
  cluster.

Keys (``<p>`` = ``general.channel``, so two clusters may share one Redis
database by using different channels)::

    <p>:chatRoom:rooms            set   room names
    <p>:chatRoom:members:<room>   hash  connection id -> "<join seq> <member record JSON>"
    <p>:chatRoom:joins            int   join counter (orders members cluster-wide)
    <p>:chatRoom:host:<node id>   set   '["<room>","<id>"]' memberships held by that node
    <p>:cache:<key>               hash  value (JSON), createdAt, expireTimestamp, readAt
    <p>:cache:index               zset  cache key -> expireTimestamp (+inf: none)
    <p>:stats                     hash  counter -> cluster-wide total
    <p>:peers                     zset  node id -> last heartbeat (Redis clock, ms)

Multi-key operations are Lua scripts (atomic, one round trip); they address
keys they compute, which a single Redis server allows (Redis Cluster
sharding is not supported).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import txredisapi
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ahtwist._async import start
from ahtwist.backends.interfaces import IBus, ICache, IPeers, IRoomBackend, IStats
from ahtwist.backends.memory import CacheMiss, MemoryCache, MemoryRoomBackend
from ahtwist.backends.redis_link import RedisLink, RedisUnavailable, reason_of
from ahtwist.backends.redis_url import parse_redis_url
from ahtwist.connection import new_id
from ahtwist.encoding import dumps, loads
from ahtwist.errors import INTERNAL_ERROR, RPC_TIMEOUT, RoomError

log = Logger(namespace="ahtwist.redis")

#: seconds between heartbeats (and crash-cleanup sweeps)
HEARTBEAT_INTERVAL = 2.0
#: a node is a peer while it announced itself within this many ms (section 13.1)
PEER_WINDOW_MS = 15000
#: seconds between two flushes of the stats counters
STATS_FLUSH_INTERVAL = 1.0
#: seconds a clean stop waits for Redis to take this node out of the cluster
STOP_TIMEOUT = 1.0


# --- scripts -------------------------------------------------------------------------


class _Script:
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


# Member hash values are "<seq> <record JSON>": seq (from one cluster-wide
# counter) keeps join order, which neither hash order nor joinedAt (two joins
# in one ms, on two nodes) can.
_ADD_MEMBER = _Script(
    """
    if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
    local seq = redis.call('INCR', KEYS[3])
    redis.call('HSET', KEYS[1], ARGV[1], seq .. ' ' .. ARGV[2])
    redis.call('SADD', KEYS[2], ARGV[3])
    return 1
    """
)

_REMOVE_MEMBER = _Script(
    """
    redis.call('SREM', KEYS[2], ARGV[2])
    return redis.call('HDEL', KEYS[1], ARGV[1])
    """
)

_REMOVE_ROOM = _Script(
    """
    redis.call('DEL', KEYS[2])
    return redis.call('SREM', KEYS[1], ARGV[1])
    """
)

# KEYS: rooms set, this host's set, the join counter; ARGV[1]: members key prefix, ARGV[2]: JSON
# rooms to assert, ARGV[3]: JSON [[entry, room, id, record], ...] = every
# membership this node holds.  Memberships of this host that Redis still has
# but the node no longer holds (left during the outage) are removed.
_REASSERT = _Script(
    """
    local keep = {}
    for _, m in ipairs(cjson.decode(ARGV[3])) do keep[m[1]] = m end
    for _, entry in ipairs(redis.call('SMEMBERS', KEYS[2])) do
        if not keep[entry] then
            local e = cjson.decode(entry)
            redis.call('HDEL', ARGV[1] .. e[1], e[2])
            redis.call('SREM', KEYS[2], entry)
        end
    end
    for _, room in ipairs(cjson.decode(ARGV[2])) do redis.call('SADD', KEYS[1], room) end
    for _, m in ipairs(cjson.decode(ARGV[3])) do
        redis.call('SADD', KEYS[1], m[2])
        if redis.call('HEXISTS', ARGV[1] .. m[2], m[3]) == 0 then
            local seq = redis.call('INCR', KEYS[3])
            redis.call('HSET', ARGV[1] .. m[2], m[3], seq .. ' ' .. m[4])
        end
        redis.call('SADD', KEYS[2], m[1])
    end
    return 1
    """
)

# KEYS: peers zset; ARGV[1]: node id (or '' to only read), ARGV[2]: window ms.
# Returns {live ids, dead ids}, judged by Redis's clock (nodes' clocks may differ).
_HEARTBEAT = _Script(
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
_REMOVE_NODE = _Script(
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

_CACHE_SAVE = _Script(
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

_CACHE_LOAD = _Script(
    """
    local entry = redis.call('HGETALL', KEYS[1])
    if #entry > 0 then redis.call('HSET', KEYS[1], 'readAt', ARGV[1]) end
    return entry
    """
)

_CACHE_DESTROY = _Script(
    """
    redis.call('ZREM', KEYS[2], ARGV[1])
    return redis.call('DEL', KEYS[1])
    """
)

_CACHE_SIZE = _Script(
    """
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
    return redis.call('ZCARD', KEYS[1])
    """
)


def _pairs(flat: list[Any]) -> dict[str, Any]:
    """A Redis ``HGETALL`` reply as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


# --- rooms ---------------------------------------------------------------------------


@implementer(IRoomBackend)
class RedisRoomBackend:
    """Rooms and memberships in Redis (events travel on the :class:`RedisBus`).

    A local mirror (a :class:`MemoryRoomBackend`) holds the rooms this node
    knows and its own connections' memberships.  While Redis is down every
    call is answered from it (remote members are then unknown) and events are
    delivered to local members only; when Redis comes back the node
    re-asserts its starting rooms, the rooms created during the outage and
    its memberships (section 13.4).
    """

    def __init__(
        self,
        link: RedisLink,
        reactor: Any,
        bus: RedisBus,
        *,
        node_id: str,
        prefix: str,
        starting_rooms: tuple[str, ...] = (),
    ) -> None:
        self.link = link
        self.node_id = node_id
        self.prefix = prefix
        self.starting_rooms = tuple(starting_rooms)
        self.mirror = MemoryRoomBackend(reactor)
        #: rooms created while Redis was down (re-asserted on reconnect)
        self.offline_rooms: set[str] = set()
        self.rooms_key = f"{prefix}:chatRoom:rooms"
        self.members_prefix = f"{prefix}:chatRoom:members:"
        self.host_key = self.host_key_of(node_id)
        self.seq_key = f"{prefix}:chatRoom:joins"
        link.on_up.append(self.reassert)
        # first subscriber: the mirror forgets a deleted room before the rooms
        # service hears of it
        bus.subscribe(self._room_event)

    def host_key_of(self, node_id: str) -> str:
        return f"{self.prefix}:chatRoom:host:{node_id}"

    def _members_key(self, room: str) -> str:
        return self.members_prefix + room

    @staticmethod
    def _entry(room: str, connection_id: str) -> str:
        return dumps([room, connection_id]).decode()

    # --- rooms ---------------------------------------------------------------------

    def add_room(self, room: str) -> Deferred[bool]:
        return start(self._add_room(room))

    async def _add_room(self, room: str) -> bool:
        created_here = await self.mirror.add_room(room)
        if self.link.up:
            try:
                return await self.link.execute("SADD", self.rooms_key, room) == 1
            except RedisUnavailable:
                pass
            except txredisapi.ConnectionError:
                pass
        if created_here:
            self.offline_rooms.add(room)
        return created_here

    def remove_room(self, room: str) -> Deferred[bool]:
        return start(self._remove_room(room))

    async def _remove_room(self, room: str) -> bool:
        existed_here = await self.mirror.remove_room(room)
        self.offline_rooms.discard(room)
        if self.link.up:
            try:
                keys = [self.rooms_key, self._members_key(room)]
                return await _REMOVE_ROOM(self.link, keys, [room]) == 1
            except (RedisUnavailable, txredisapi.ConnectionError):
                pass
        return existed_here

    def room_exists(self, room: str) -> Deferred[bool]:
        return start(self._room_exists(room))

    async def _room_exists(self, room: str) -> bool:
        if self.link.up:
            try:
                exists = await self.link.execute("SISMEMBER", self.rooms_key, room) == 1
            except (RedisUnavailable, txredisapi.ConnectionError):
                pass
            else:
                if exists:
                    await self.mirror.add_room(room)
                return exists
        return await self.mirror.room_exists(room)

    def list_rooms(self) -> Deferred[list[str]]:
        return start(self._list_rooms())

    async def _list_rooms(self) -> list[str]:
        if self.link.up:
            try:
                rooms = sorted(_text(r) for r in await self.link.execute("SMEMBERS", self.rooms_key))
            except (RedisUnavailable, txredisapi.ConnectionError):
                pass
            else:
                for room in rooms:  # known while Redis is down
                    await self.mirror.add_room(room)
                return rooms
        return await self.mirror.list_rooms()

    # --- members ---------------------------------------------------------------------

    def members(self, room: str) -> Deferred[dict[str, dict[str, Any]]]:
        return start(self._members(room))

    async def _members(self, room: str) -> dict[str, dict[str, Any]]:
        if self.link.up:
            try:
                flat = await self.link.execute("HGETALL", self._members_key(room))
            except (RedisUnavailable, txredisapi.ConnectionError):
                pass
            else:
                ordered = []
                for value in _pairs(flat).values():
                    seq, _, record = value.partition(" ")
                    ordered.append((int(seq), loads(record)))
                ordered.sort(key=lambda item: item[0])
                return {record["id"]: record for _, record in ordered}
        return await self.mirror.members(room)

    def add_member(self, room: str, record: dict[str, Any]) -> Deferred[bool]:
        return start(self._add_member(room, record))

    async def _add_member(self, room: str, record: dict[str, Any]) -> bool:
        added_here = await self.mirror.add_member(room, record)
        if self.link.up:
            try:
                keys = [self._members_key(room), self.host_key, self.seq_key]
                args = [record["id"], dumps(record), self._entry(room, record["id"])]
                return await _ADD_MEMBER(self.link, keys, args) == 1
            except (RedisUnavailable, txredisapi.ConnectionError):
                pass
        return added_here

    def remove_member(self, room: str, connection_id: str) -> Deferred[bool]:
        return start(self._remove_member(room, connection_id))

    async def _remove_member(self, room: str, connection_id: str) -> bool:
        removed_here = await self.mirror.remove_member(room, connection_id)
        if self.link.up:
            try:
                keys = [self._members_key(room), self.host_key]
                args = [connection_id, self._entry(room, connection_id)]
                return await _REMOVE_MEMBER(self.link, keys, args) == 1
            except (RedisUnavailable, txredisapi.ConnectionError):
                pass
        return removed_here

    # --- re-asserting and cleaning up -------------------------------------------------

    def reassert(self) -> Deferred[None]:
        """Put this node's rooms and memberships back (on every (re)connect).

        Written before anything else is sent on the new connection, so every
        later command sees the re-asserted state.
        """
        rooms = sorted(set(self.starting_rooms) | self.offline_rooms)
        held = []
        for room, record in self.mirror.records():
            connection_id = record["id"]
            held.append([self._entry(room, connection_id), room, connection_id, dumps(record).decode()])
        offline = set(self.offline_rooms)
        d = _REASSERT(
            self.link,
            [self.rooms_key, self.host_key, self.seq_key],
            [self.members_prefix, dumps(rooms).decode(), dumps(held).decode() if held else "[]"],
        )

        def done(_: Any) -> None:
            self.offline_rooms -= offline
            log.debug("re-asserted {rooms} rooms and {members} memberships", rooms=len(rooms), members=len(held))

        def failed(failure: Failure) -> None:
            log.warn("re-asserting rooms failed: {reason}", reason=failure.getErrorMessage())

        return d.addCallbacks(done, failed)

    def _room_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "destroy":
            self.mirror.remove_room(event.get("room"))
            self.offline_rooms.discard(event.get("room"))

    def remove_node(self, node_id: str, peers_key: str, only_if_dead: bool) -> Deferred[int]:
        """Remove a node's memberships and peer entry; -1 if it turned out alive."""
        window = str(PEER_WINDOW_MS) if only_if_dead else ""
        return _REMOVE_NODE(
            self.link,
            [peers_key, self.host_key_of(node_id)],
            [node_id, self.members_prefix, window],
        )


# --- the bus ------------------------------------------------------------------------------


@implementer(IBus)
class RedisBus:
    """Room events and RPCs (section 13.3) over the link's pub/sub channel.

    Every message carries the ``serverToken`` (others are ignored) and this
    node's id.  While Redis is down events are delivered to this node only
    and RPCs fail at once with ``RPC Timeout``.
    """

    def __init__(
        self, link: RedisLink, reactor: Any, *, node_id: str, server_token: str, rpc_timeout_ms: int
    ) -> None:
        self.link = link
        self.reactor = reactor
        self.node_id = node_id
        self.server_token = server_token
        self.rpc_timeout = rpc_timeout_ms / 1000
        self.on_rpc: Any = None
        self._handlers: list[Callable[[dict[str, Any]], Any]] = []
        #: request id -> (Deferred, timeout call) of RPCs waiting for an answer
        self.pending_rpcs: dict[str, tuple[Deferred[Any], Any]] = {}
        link.on_down.append(self._fail_pending_rpcs)

    def subscribe(self, handler: Callable[[dict[str, Any]], Any]) -> None:
        self._handlers.append(handler)

    # --- events -----------------------------------------------------------------------

    def _message(self, kind: str, **fields: Any) -> bytes:
        return dumps({"serverToken": self.server_token, "serverId": self.node_id, "kind": kind, **fields})

    def publish(self, event: dict[str, Any]) -> Deferred[None]:
        if self.link.up:
            d = self.link.execute("PUBLISH", self.link.channel, self._message("event", event=event))
            return d.addCallbacks(lambda _: None, self._publish_failed, errbackArgs=(event,))
        self.reactor.callLater(0, self._event_received, event)
        return succeed(None)

    def _publish_failed(self, failure: Failure, event: dict[str, Any]) -> None:
        log.warn("publishing a room event failed ({reason}); delivered locally", reason=failure.getErrorMessage())
        self.reactor.callLater(0, self._event_received, event)

    def _event_received(self, event: dict[str, Any]) -> None:
        for handler in self._handlers:
            handler(event)

    def message_received(self, message: dict[str, Any]) -> None:
        """A cluster message of ours (token already checked)."""
        kind = message.get("kind")
        if kind == "event":
            self._event_received(message["event"])
        elif kind == "rpc":
            if message.get("serverId") != self.node_id:
                self._rpc_request(message)
        elif kind == "rpcResult":
            if message.get("to") == self.node_id:
                self._rpc_answer(message)

    # --- RPC (section 13.3) -----------------------------------------------------------------

    def call_remote(self, connection_id: str, method: str, args: Any) -> Deferred[Any]:
        if not self.link.up:
            return fail(RoomError(RPC_TIMEOUT))
        request_id = new_id()
        result: Deferred[Any] = Deferred(lambda d: self._forget_rpc(request_id))
        timer = self.reactor.callLater(self.rpc_timeout, self._rpc_timed_out, request_id)
        self.pending_rpcs[request_id] = (result, timer)
        message = self._message(
            "rpc", requestId=request_id, connectionId=connection_id, method=method, args=list(args)
        )
        sent = self.link.execute("PUBLISH", self.link.channel, message)
        sent.addErrback(lambda _: self._rpc_timed_out(request_id))
        return result

    def _forget_rpc(self, request_id: str) -> tuple[Deferred[Any], Any] | None:
        pending = self.pending_rpcs.pop(request_id, None)
        if pending is not None and pending[1].active():
            pending[1].cancel()
        return pending

    def _rpc_timed_out(self, request_id: str) -> None:
        pending = self._forget_rpc(request_id)
        if pending is not None:
            pending[0].errback(RoomError(RPC_TIMEOUT))

    def _fail_pending_rpcs(self) -> None:
        """Redis went down: nobody can answer, fail every waiting RPC now."""
        for request_id in list(self.pending_rpcs):
            self._rpc_timed_out(request_id)

    def _rpc_answer(self, message: dict[str, Any]) -> None:
        pending = self._forget_rpc(message.get("requestId", ""))
        if pending is None:
            return
        if message.get("ok"):
            pending[0].callback(message.get("result"))
        else:
            pending[0].errback(RoomError(message.get("error") or INTERNAL_ERROR))

    def _rpc_request(self, message: dict[str, Any]) -> None:
        if self.on_rpc is None:
            return
        try:
            running = self.on_rpc(message.get("connectionId"), message.get("method"), message.get("args") or [])
        except Exception:
            running = fail()
        if running is None:  # not held here
            return
        request_id = message.get("requestId")
        to = message.get("serverId")

        def answer(result: Any) -> None:
            self._answer(to, request_id, ok=True, result=result)

        def refused(failure: Failure) -> None:
            if failure.check(RoomError):
                error = failure.value.message
            else:
                log.failure("remote connection call {method} failed", failure, method=message.get("method"))
                error = INTERNAL_ERROR
            self._answer(to, request_id, ok=False, error=error)

        defer.maybeDeferred(lambda: running).addCallbacks(answer, refused)

    def _answer(self, to: Any, request_id: Any, **fields: Any) -> None:
        reply = self._message("rpcResult", to=to, requestId=request_id, **fields)
        self.link.execute("PUBLISH", self.link.channel, reply).addErrback(
            lambda f: log.warn("answering an RPC failed: {reason}", reason=f.getErrorMessage())
        )

    def stop(self) -> None:
        self._fail_pending_rpcs()


# --- cache ---------------------------------------------------------------------------------


@implementer(ICache)
class RedisCache:
    """Cache entries shared by the cluster, expiring on Redis (PEXPIREAT).

    While Redis is down a local cache serves saves and loads; on reconnect
    what was saved or deleted meanwhile is written to Redis.
    """

    def __init__(self, link: RedisLink, reactor: Any, prefix: str) -> None:
        self.link = link
        self.reactor = reactor
        self.key_prefix = f"{prefix}:cache:"
        self.index_key = f"{prefix}:cache:index"
        self.local = MemoryCache(reactor)
        self._offline_deleted: set[str] = set()
        link.on_up.append(self.replay)

    def _now(self) -> int:
        return int(self.reactor.seconds() * 1000)

    def save(self, key: str, value: Any, expire_ms: int | None = None) -> Deferred[bool]:
        return start(self._save(key, value, expire_ms))

    async def _save(self, key: str, value: Any, expire_ms: int | None, created: int | None = None) -> bool:
        now = self._now() if created is None else created
        expires = now + expire_ms if expire_ms else None
        if self.link.up:
            try:
                await _CACHE_SAVE(
                    self.link,
                    [self.key_prefix + key, self.index_key],
                    [key, dumps(value), now, "" if expires is None else expires],
                )
                return True
            except (RedisUnavailable, txredisapi.ConnectionError):
                pass
        self._offline_deleted.discard(key)
        return await self.local.save(key, value, expire_ms)

    def load(self, key: str) -> Deferred[dict[str, Any]]:
        return start(self._load(key))

    async def _load(self, key: str) -> dict[str, Any]:
        if self.link.up:
            now = self._now()
            try:
                flat = await _CACHE_LOAD(self.link, [self.key_prefix + key], [now])
            except (RedisUnavailable, txredisapi.ConnectionError):
                pass
            else:
                if not flat:
                    raise CacheMiss("Object not found")
                entry = _pairs(flat)
                expires = int(entry["expireTimestamp"]) if entry.get("expireTimestamp") else None
                if expires is not None and expires <= now:
                    raise CacheMiss("Object expired")
                return {
                    "key": key,
                    "value": loads(entry["value"]),
                    "expireTimestamp": expires,
                    "createdAt": int(entry["createdAt"]),
                    "readAt": int(entry["readAt"]) if entry.get("readAt") else None,
                }
        return await self.local.load(key)

    def destroy(self, key: str) -> Deferred[bool]:
        return start(self._destroy(key))

    async def _destroy(self, key: str) -> bool:
        if self.link.up:
            try:
                return await _CACHE_DESTROY(self.link, [self.key_prefix + key, self.index_key], [key]) == 1
            except (RedisUnavailable, txredisapi.ConnectionError):
                pass
        self._offline_deleted.add(key)
        return await self.local.destroy(key)

    def size(self) -> Deferred[int]:
        return start(self._size())

    async def _size(self) -> int:
        if self.link.up:
            try:
                return int(await _CACHE_SIZE(self.link, [self.index_key], [self._now()]))
            except (RedisUnavailable, txredisapi.ConnectionError):
                pass
        return await self.local.size()

    def replay(self) -> Deferred[None]:
        """Write what was saved or deleted while Redis was down."""
        return start(self._replay())

    async def _replay(self) -> None:
        deleted, self._offline_deleted = self._offline_deleted, set()
        now = self._now()
        entries = self.local.items()
        self.local = MemoryCache(self.reactor)
        try:
            for key in deleted:
                await _CACHE_DESTROY(self.link, [self.key_prefix + key, self.index_key], [key])
            for key, entry in entries:
                expires = entry["expireTimestamp"]
                if expires is not None and expires <= now:
                    continue
                await _CACHE_SAVE(
                    self.link,
                    [self.key_prefix + key, self.index_key],
                    [key, dumps(entry["value"]), entry["createdAt"], "" if expires is None else expires],
                )
        except Exception as e:
            log.warn("writing the offline cache to Redis failed: {e}", e=e)


# --- stats ------------------------------------------------------------------------------------


@implementer(IStats)
class RedisStats:
    """Counters counted locally and added to Redis in batches.

    A request costs two dict updates; :meth:`flush` (every second) sends the
    increments as one burst of HINCRBY.  Increments that could not be sent
    stay pending and go with the next flush.
    """

    def __init__(self, link: RedisLink, prefix: str) -> None:
        self.link = link
        self.key = f"{prefix}:stats"
        self._local: Counter[str] = Counter()
        self._pending: Counter[str] = Counter()
        #: cluster totals as last seen (for status while Redis is down)
        self._known: dict[str, int] = {}
        self._flushing: Deferred[None] | None = None

    def increment(self, key: str, count: int = 1) -> None:
        self._local[key] += count
        self._pending[key] += count

    def local(self, key: str) -> int:
        return self._local[key]

    def flush(self) -> Deferred[None]:
        """Send the pending increments (one flush at a time)."""
        if self._flushing is not None or not self._pending or not self.link.up:
            return succeed(None)
        batch, self._pending = self._pending, Counter()
        sent = [self.link.execute("HINCRBY", self.key, key, count) for key, count in batch.items()]
        d = defer.DeferredList(sent, consumeErrors=True)

        def done(results: list[tuple[bool, Any]]) -> None:
            self._flushing = None
            for (key, count), (ok, value) in zip(batch.items(), results, strict=True):
                if ok:
                    self._known[key] = int(value)
                else:
                    self._pending[key] += count

        self._flushing = d.addCallback(done)
        return self._flushing

    async def flush_now(self) -> None:
        """Wait for a flush in flight, then send what is still pending (a clean stop)."""
        if self._flushing is not None:
            flushed: Deferred[None] = Deferred()
            self._flushing.addBoth(lambda result: (flushed.callback(None), result)[1])
            await flushed
        await self.flush()

    def global_counts(self) -> Deferred[dict[str, int]]:
        return start(self._global_counts())

    async def _global_counts(self) -> dict[str, int]:
        totals = dict(self._known)
        if self.link.up:
            try:
                flat = await self.link.execute("HGETALL", self.key)
            except (RedisUnavailable, txredisapi.ConnectionError):
                pass
            else:
                totals = {_text(k): int(v) for k, v in _pairs(flat).items()}
                self._known = dict(totals)
        for key, count in self._pending.items():
            totals[key] = totals.get(key, 0) + count
        return totals


# --- peers ------------------------------------------------------------------------------------


@implementer(IPeers)
class RedisPeers:
    """Live nodes: those that announced themselves within the last 15 s."""

    def __init__(self, link: RedisLink, prefix: str, node_id: str) -> None:
        self.link = link
        self.node_id = node_id
        self.key = f"{prefix}:peers"

    def heartbeat(self) -> Deferred[tuple[list[str], list[str]]]:
        """Announce this node; fires (live ids, dead ids)."""
        d = _HEARTBEAT(self.link, [self.key], [self.node_id, PEER_WINDOW_MS])
        return d.addCallback(lambda r: ([_text(x) for x in r[0]], [_text(x) for x in r[1]]))

    def peers(self) -> Deferred[list[str]]:
        return start(self._peers())

    async def _peers(self) -> list[str]:
        if self.link.up:
            try:
                live, _ = await _HEARTBEAT(self.link, [self.key], ["", PEER_WINDOW_MS])
            except (RedisUnavailable, txredisapi.ConnectionError):
                pass
            else:
                return sorted({_text(x) for x in live} | {self.node_id})
        return [self.node_id]


# --- the service -------------------------------------------------------------------------------


class ClusterService(Service):
    """Cluster mode for one node: the link, the providers, the periodic work.

    Started before the listeners and stopped after them (by
    :class:`~ahtwist.service.AhtwistService`), so by the time it stops every
    connection has left its rooms; the stop then removes whatever this node
    still has in Redis, flushes the stats and leaves ``peers``.
    """

    name = "cluster"

    def __init__(self, config: Any, reactor: Any, link: RedisLink | None = None) -> None:
        general = config.general
        self.reactor = reactor
        self.target = parse_redis_url(config.redis.url)
        self.link = link or RedisLink(
            reactor, self.target, general.channel, config.redis.reconnectMaxDelay
        )
        prefix = general.channel
        self.server_token = general.serverToken
        self.bus = RedisBus(
            self.link,
            reactor,
            node_id=general.id,
            server_token=general.serverToken,
            rpc_timeout_ms=general.rpcTimeout,
        )
        self.rooms = RedisRoomBackend(
            self.link,
            reactor,
            self.bus,
            node_id=general.id,
            prefix=prefix,
            starting_rooms=tuple(general.startingChatRooms),
        )
        self.cache = RedisCache(self.link, reactor, prefix)
        self.stats = RedisStats(self.link, prefix)
        self.peers = RedisPeers(self.link, prefix, general.id)
        self.link.on_message = self._message_received
        # First on a new connection: a node back from a long outage must look
        # alive before it re-asserts its memberships, or another node's sweep
        # could take them out again in between.
        self.link.on_up.insert(0, self._beat)
        self.node: Any = None
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = reactor
        self._flusher = LoopingCall(self.stats.flush)
        self._flusher.clock = reactor
        self._cleaning: set[str] = set()

    def attach(self, node: Any) -> None:
        """Report ``Redis unavailable`` in the node's status."""
        self.node = node
        node.health_checks.append(self.problems)

    def problems(self) -> list[str]:
        return [] if self.link.up else ["Redis unavailable"]

    def _message_received(self, text: str) -> None:
        try:
            message = loads(text)
        except ValueError:
            log.debug("ignored a cluster message that is not JSON")
            return
        if not isinstance(message, dict) or message.get("serverToken") != self.server_token:
            log.debug("ignored a cluster message with another serverToken")
            return
        self.bus.message_received(message)

    # --- periodic work --------------------------------------------------------------

    def _beat(self) -> Deferred[None] | None:
        if not self.link.up:
            return None
        d = self.peers.heartbeat()
        d.addCallbacks(self._sweep, lambda f: log.debug("heartbeat failed: {r}", r=f.getErrorMessage()))
        return None

    def _sweep(self, result: tuple[list[str], list[str]]) -> None:
        """Remove the members of nodes that stopped announcing themselves."""
        _, dead = result
        for node_id in dead:
            if node_id == self.peers.node_id or node_id in self._cleaning:
                continue
            self._cleaning.add(node_id)
            d = self.rooms.remove_node(node_id, self.peers.key, only_if_dead=True)
            d.addCallbacks(self._cleaned, self._cleanup_failed, callbackArgs=(node_id,), errbackArgs=(node_id,))

    def _cleaned(self, removed: int, node_id: str) -> None:
        self._cleaning.discard(node_id)
        if removed >= 0:
            log.info(
                "node {node} left the cluster without stopping; removed its {count} room member(s)",
                node=node_id,
                count=removed,
            )

    def _cleanup_failed(self, failure: Failure, node_id: str) -> None:
        self._cleaning.discard(node_id)
        log.warn("cleaning up after node {node} failed: {reason}", node=node_id, reason=failure.getErrorMessage())

    # --- lifecycle ---------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        log.info("cluster mode: Redis {url}, node {node}", url=self.target.masked, node=self.peers.node_id)
        self.link.start()
        self._heartbeat.start(HEARTBEAT_INTERVAL, now=False)
        self._flusher.start(STATS_FLUSH_INTERVAL, now=False)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        for loop in (self._heartbeat, self._flusher):
            if loop.running:
                loop.stop()
        node = self.node
        if node is not None:
            for connection in list(node.connections.values()):
                if connection.rooms:
                    try:
                        await node.rooms.leave_all(connection)
                    except Exception:
                        log.failure("leaving rooms of {id}", id=connection.id)
        if self.link.up:
            leaving = Deferred.fromCoroutine(self._leave())
            leaving.addTimeout(STOP_TIMEOUT, self.reactor)
            try:
                await leaving
            except Exception as e:
                log.warn("leaving the cluster cleanly failed: {e}", e=reason_of(Failure(e)))
        self.bus.stop()
        await self.link.stop()

    async def _leave(self) -> None:
        """Last counts, and this node out of the rooms and ``peers``."""
        await self.stats.flush_now()
        await self.rooms.remove_node(self.peers.node_id, self.peers.key, only_if_dead=False)
