"""Redis providers: cluster mode (README.md, 'Running a cluster').

Several nodes started with the same ``redis.url`` and ``general.serverToken``
share rooms, membership, chat, cache, stats and peers through one Redis.

Importing this package imports txredisapi, which imports the global reactor:
only :func:`ahtwist.tap.build_service` (after twistd has chosen the reactor)
and tests import it.

The pieces, one module each:

* :mod:`.link` -- :class:`RedisLink`, this node's one link to Redis: a command
  connection and a subscriber connection, (re)connected together with
  exponential back-off, knowing whether Redis is *up*.  Every command fails at
  once with ``RedisUnavailable`` while it is down.  :class:`LocalFallback` is
  the one rule "ask Redis, else answer from the local copy" every provider
  uses.
* :mod:`.scripts` -- the Lua scripts (multi-key operations).
* :mod:`.rooms` -- :class:`RedisRoomBackend`: rooms and memberships, with a
  local mirror.
* :mod:`.bus` -- :class:`RedisBus`: room events and RPCs over pub/sub.
* :mod:`.history` -- :class:`RedisRoomHistory`: room history on Redis
  Streams (offsets, epochs, resume on any node), and the filter of this
  node's say events that drops duplicates and fills subscription gaps.
* :mod:`.store` -- :class:`RedisCache`, :class:`RedisStats`,
  :class:`RedisPeers`.  Each keeps working locally while Redis is down
  (cache through a local cache, stats counted locally) and re-asserts what it
  must when Redis comes back.
* :mod:`.cluster` -- :class:`ClusterService`: builds the providers, starts the
  link and the periodic work (stats flush, heartbeat, crash cleanup); its
  stop takes this node out of the cluster.

Keys (``<p>`` = ``general.channel``, so two clusters may share one Redis
database by using different channels)::

    <p>:chatRoom:rooms            set   room names
    <p>:chatRoom:members:<room>   hash  connection id -> "<join seq> <member record JSON>"
    <p>:chatRoom:joins            int   join counter (orders members cluster-wide)
    <p>:chatRoom:host:<node id>   set   '["<room>","<id>"]' memberships held by that node
    <p>:chatRoom:deleted:<room>   str   tombstone: when the room was last deleted (ms; 24 h)
    <p>:history:<room>            hash  epoch, offset (latest), maxMessages/maxAge overrides
    <p>:history:<room>:stream     stream "<offset>-0" -> p (payload JSON), t (ms)
    <p>:history:node:<nonce>      str   number of the last say stored from one node process (1 day)
    <p>:cache:<key>               hash  value (JSON), createdAt, expireTimestamp, readAt
    <p>:cache:index               zset  cache key -> expireTimestamp (+inf: none)
    <p>:stats                     hash  counter -> cluster-wide total
    <p>:peers                     zset  node id -> last heartbeat (Redis clock, ms)

Channels: ``<p>`` (room events and RPCs), and ``<p>:ping:<random>`` per node
(its self-pings, which prove its subscription alive).

Multi-key operations are Lua scripts (atomic, one round trip); they address
keys they compute, which a single Redis server allows (Redis Cluster
sharding is not supported).
"""


from ahtwist.backends.redis.bus import RedisBus
from ahtwist.backends.redis.cluster import HEARTBEAT_INTERVAL, ClusterService
from ahtwist.backends.redis.history import RedisRoomHistory
from ahtwist.backends.redis.link import LocalFallback, RedisLink, RedisUnavailable
from ahtwist.backends.redis.rooms import RedisRoomBackend
from ahtwist.backends.redis.scripts import PEER_WINDOW_MS
from ahtwist.backends.redis.store import RedisCache, RedisPeers, RedisStats

__all__ = [
    "HEARTBEAT_INTERVAL",
    "PEER_WINDOW_MS",
    "ClusterService",
    "LocalFallback",
    "RedisBus",
    "RedisCache",
    "RedisLink",
    "RedisPeers",
    "RedisRoomBackend",
    "RedisRoomHistory",
    "RedisStats",
    "RedisUnavailable",
]
