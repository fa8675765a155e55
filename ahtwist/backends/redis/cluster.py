"""Cluster mode for one node: the Redis link, the providers over it, the periodic work."""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ahtwist.backends.history import HistoryLimits
from ahtwist.backends.redis.bus import RedisBus
from ahtwist.backends.redis.history import RedisRoomHistory
from ahtwist.backends.redis.link import RedisLink, reason_of
from ahtwist.backends.redis.rooms import RedisRoomBackend
from ahtwist.backends.redis.store import RedisCache, RedisPeers, RedisStats
from ahtwist.backends.redis_url import parse_redis_url
from ahtwist.encoding import loads

log = Logger(namespace="ahtwist.redis")

#: seconds between heartbeats (and crash-cleanup sweeps)
HEARTBEAT_INTERVAL = 2.0
#: seconds between two flushes of the stats counters
STATS_FLUSH_INTERVAL = 1.0
#: seconds a clean stop waits for Redis to take this node out of the cluster
STOP_TIMEOUT = 1.0


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
            reactor,
            self.target,
            general.channel,
            config.redis.reconnectMaxDelay,
            subscription_timeout=config.redis.subscriptionTimeout,
            command_timeout=config.redis.commandTimeout,
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
        history = config.history
        self.history = RedisRoomHistory(
            self.link, self.bus, prefix=prefix, limits=HistoryLimits(history.maxMessages, history.maxAge)
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
        """Report ``Redis unavailable`` in the node's status; the node's
        metrics read the link, bus and history counters through ``node.cluster``."""
        self.node = node
        node.cluster = self
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
