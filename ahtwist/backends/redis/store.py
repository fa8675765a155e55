"""Cache, stats and peers in Redis, each working locally while Redis is down."""

from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from ahtwist._async import start
from ahtwist.backends.interfaces import ICache, IPeers, IStats
from ahtwist.backends.memory import CacheMiss, MemoryCache
from ahtwist.backends.redis.link import LocalFallback, RedisLink
from ahtwist.backends.redis.scripts import (
    CACHE_DESTROY,
    CACHE_LOAD,
    CACHE_SAVE,
    CACHE_SIZE,
    HEARTBEAT,
    PEER_WINDOW_MS,
    pairs,
    text,
)
from ahtwist.encoding import dumps, loads

log = Logger(namespace="ahtwist.redis")


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
        self.redis = LocalFallback(link, "the cache")
        self._offline_deleted: set[str] = set()
        link.on_up.append(self.replay)

    def _now(self) -> int:
        return int(self.reactor.seconds() * 1000)

    def save(self, key: str, value: Any, expire_ms: int | None = None) -> Deferred[bool]:
        return start(self._save(key, value, expire_ms))

    async def _save(self, key: str, value: Any, expire_ms: int | None) -> bool:
        async def in_redis() -> bool:
            now = self._now()
            expires = now + expire_ms if expire_ms else None
            await CACHE_SAVE(
                self.link,
                [self.key_prefix + key, self.index_key],
                [key, dumps(value), now, "" if expires is None else expires],
            )
            return True

        def offline() -> Deferred[bool]:
            self._offline_deleted.discard(key)
            return self.local.save(key, value, expire_ms)

        return await self.redis.or_local(in_redis, offline)

    def load(self, key: str) -> Deferred[dict[str, Any]]:
        async def in_redis() -> dict[str, Any]:
            now = self._now()
            flat = await CACHE_LOAD(self.link, [self.key_prefix + key], [now])
            if not flat:
                raise CacheMiss("Object not found")
            entry = pairs(flat)
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

        return start(self.redis.or_local(in_redis, lambda: self.local.load(key)))

    def destroy(self, key: str) -> Deferred[bool]:
        async def in_redis() -> bool:
            return await CACHE_DESTROY(self.link, [self.key_prefix + key, self.index_key], [key]) == 1

        def offline() -> Deferred[bool]:
            self._offline_deleted.add(key)
            return self.local.destroy(key)

        return start(self.redis.or_local(in_redis, offline))

    def size(self) -> Deferred[int]:
        async def in_redis() -> int:
            return int(await CACHE_SIZE(self.link, [self.index_key], [self._now()]))

        return start(self.redis.or_local(in_redis, self.local.size))

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
                await CACHE_DESTROY(self.link, [self.key_prefix + key, self.index_key], [key])
            for key, entry in entries:
                expires = entry["expireTimestamp"]
                if expires is not None and expires <= now:
                    continue
                await CACHE_SAVE(
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
        self.redis = LocalFallback(link, "stats")
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

            def release(result: Any) -> Any:
                flushed.callback(None)
                return result

            self._flushing.addBoth(release)
            await flushed
        await self.flush()

    def global_counts(self) -> Deferred[dict[str, int]]:
        return start(self._global_counts())

    async def _global_counts(self) -> dict[str, int]:
        async def in_redis() -> dict[str, int]:
            flat = await self.link.execute("HGETALL", self.key)
            self._known = {text(k): int(v) for k, v in pairs(flat).items()}
            return dict(self._known)

        totals = await self.redis.or_local(in_redis, lambda: dict(self._known))
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
        self.redis = LocalFallback(link, "peers")

    def heartbeat(self) -> Deferred[tuple[list[str], list[str]]]:
        """Announce this node; fires (live ids, dead ids)."""
        d = HEARTBEAT(self.link, [self.key], [self.node_id, PEER_WINDOW_MS])
        return d.addCallback(lambda r: ([text(x) for x in r[0]], [text(x) for x in r[1]]))

    def peers(self) -> Deferred[list[str]]:
        return start(self._peers())

    async def _peers(self) -> list[str]:
        async def in_redis() -> list[str]:
            live, _ = await HEARTBEAT(self.link, [self.key], ["", PEER_WINDOW_MS])
            return sorted({text(x) for x in live} | {self.node_id})

        return await self.redis.or_local(in_redis, lambda: [self.node_id])
