"""Rooms and memberships in Redis, with a local mirror for outages
(README.md, 'Running a cluster')."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ahtwist._async import start
from ahtwist.backends.interfaces import IRoomBackend
from ahtwist.backends.memory import MemoryRoomBackend
from ahtwist.backends.redis.bus import RedisBus
from ahtwist.backends.redis.link import LocalFallback, RedisLink
from ahtwist.backends.redis.scripts import (
    ADD_MEMBER,
    PEER_WINDOW_MS,
    REASSERT,
    REMOVE_MEMBER,
    REMOVE_NODE,
    REMOVE_ROOM,
    pairs,
    text,
)
from ahtwist.encoding import dumps, loads
from ahtwist.rooms import destroy_event

log = Logger(namespace="ahtwist.redis")

#: how long a deleted room's tombstone stays in Redis (ms): a node out of reach
#: for longer may bring back a room deleted meanwhile
TOMBSTONE_TTL_MS = 24 * 3600 * 1000


@implementer(IRoomBackend)
class RedisRoomBackend:
    """Rooms and memberships in Redis (events travel on the bus,
    :class:`~ahtwist.backends.redis.bus.RedisBus`).

    A local mirror (a :class:`MemoryRoomBackend`) holds the rooms this node
    knows and its own connections' memberships.  While Redis is down every
    call is answered from it (remote members are then unknown) and events are
    delivered to local members only; when Redis comes back the node
    re-asserts its starting rooms, the rooms created during the outage and
    its memberships.

    Deleting a room leaves a tombstone in Redis (its deletion time, kept
    ``TOMBSTONE_TTL_MS``), so a deletion another node did not hear of (it was
    cut off, or Redis restarted) is honoured when that node re-asserts: a
    room it knew of, or held members of, from before the deletion is not put
    back; the node drops it and its members get the deletion notice.  A room
    deleted here while Redis was out of reach is deleted in Redis (tombstone
    included) on reconnect and the notice published to the other nodes.
    Times are the nodes' clocks (ms): keep them in sync (NTP).
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
        self.reactor = reactor
        self.bus = bus
        self.node_id = node_id
        self.prefix = prefix
        self.starting_rooms = tuple(starting_rooms)
        self.mirror = MemoryRoomBackend(reactor)
        self.redis = LocalFallback(link, "rooms")
        #: since when this node knows its starting rooms (ms)
        self.started_at = self._now()
        #: rooms created while Redis was down -> when (re-asserted on reconnect)
        self.offline_rooms: dict[str, int] = {}
        #: rooms deleted while Redis was down -> when (replayed on reconnect)
        self.offline_deleted: dict[str, int] = {}
        self.tombstone_prefix = f"{prefix}:chatRoom:deleted:"
        #: rooms dropped on re-assertion because deleted meanwhile; deletions replayed
        self.refused_rooms = 0
        self.replayed_deletions = 0
        self.rooms_key = f"{prefix}:chatRoom:rooms"
        self.members_prefix = f"{prefix}:chatRoom:members:"
        self.host_key = self.host_key_of(node_id)
        self.seq_key = f"{prefix}:chatRoom:joins"
        link.on_up.append(self.reassert)
        # first subscriber: the mirror forgets a deleted room before the rooms
        # service hears of it
        bus.subscribe(self._room_event)

    def _now(self) -> int:
        return int(self.reactor.seconds() * 1000)

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

        async def in_redis() -> bool:
            return await self.link.execute("SADD", self.rooms_key, room) == 1

        def offline() -> bool:
            if created_here:
                self.offline_rooms[room] = self._now()
                self.offline_deleted.pop(room, None)
            return created_here

        return await self.redis.or_local(in_redis, offline)

    def remove_room(self, room: str) -> Deferred[bool]:
        return start(self._remove_room(room))

    async def _remove_room(self, room: str) -> bool:
        existed_here = await self.mirror.remove_room(room)
        self.offline_rooms.pop(room, None)
        now = self._now()

        async def in_redis() -> bool:
            keys = [self.rooms_key, self._members_key(room), self.tombstone_prefix + room]
            return await REMOVE_ROOM(self.link, keys, [room, now, TOMBSTONE_TTL_MS]) > 0

        def offline() -> bool:
            self.offline_deleted[room] = now
            return existed_here

        return await self.redis.or_local(in_redis, offline)

    def room_exists(self, room: str) -> Deferred[bool]:
        async def in_redis() -> bool:
            exists = await self.link.execute("SISMEMBER", self.rooms_key, room) == 1
            if exists:
                await self.mirror.add_room(room)
            return exists

        return start(self.redis.or_local(in_redis, lambda: self.mirror.room_exists(room)))

    def list_rooms(self) -> Deferred[list[str]]:
        async def in_redis() -> list[str]:
            rooms = sorted(text(r) for r in await self.link.execute("SMEMBERS", self.rooms_key))
            for room in rooms:  # known while Redis is down
                await self.mirror.add_room(room)
            return rooms

        return start(self.redis.or_local(in_redis, self.mirror.list_rooms))

    # --- members ---------------------------------------------------------------------

    def members(self, room: str) -> Deferred[dict[str, dict[str, Any]]]:
        async def in_redis() -> dict[str, dict[str, Any]]:
            flat = await self.link.execute("HGETALL", self._members_key(room))
            ordered = []
            for value in pairs(flat).values():
                seq, _, record = value.partition(" ")
                ordered.append((int(seq), loads(record)))
            ordered.sort(key=lambda item: item[0])
            return {record["id"]: record for _, record in ordered}

        return start(self.redis.or_local(in_redis, lambda: self.mirror.members(room)))

    def add_member(self, room: str, record: dict[str, Any]) -> Deferred[bool]:
        return start(self._add_member(room, record))

    async def _add_member(self, room: str, record: dict[str, Any]) -> bool:
        added_here = await self.mirror.add_member(room, record)

        async def in_redis() -> bool:
            keys = [self._members_key(room), self.host_key, self.seq_key]
            args = [record["id"], dumps(record), self._entry(room, record["id"])]
            return await ADD_MEMBER(self.link, keys, args) == 1

        return await self.redis.or_local(in_redis, lambda: added_here)

    def remove_member(self, room: str, connection_id: str) -> Deferred[bool]:
        return start(self._remove_member(room, connection_id))

    async def _remove_member(self, room: str, connection_id: str) -> bool:
        removed_here = await self.mirror.remove_member(room, connection_id)

        async def in_redis() -> bool:
            keys = [self._members_key(room), self.host_key]
            args = [connection_id, self._entry(room, connection_id)]
            return await REMOVE_MEMBER(self.link, keys, args) == 1

        return await self.redis.or_local(in_redis, lambda: removed_here)

    # --- re-asserting and cleaning up -------------------------------------------------

    def reassert(self) -> Deferred[None]:
        """Put this node's rooms and memberships back (on every (re)connect),
        after replaying the deletions made while Redis was out of reach; rooms
        deleted meanwhile (tombstones) are not put back but dropped here.

        Written before anything else is sent on the new connection, so every
        later command sees the re-asserted state.
        """
        rooms = {room: self.started_at for room in self.starting_rooms}
        rooms.update(self.offline_rooms)
        held = []
        for room, record in self.mirror.records():
            connection_id = record["id"]
            held.append([
                self._entry(room, connection_id), room, connection_id, dumps(record).decode(),
                int(record.get("joinedAt") or 0),
            ])
        offline = dict(self.offline_rooms)
        deletions = dict(self.offline_deleted)
        d = REASSERT(
            self.link,
            [self.rooms_key, self.host_key, self.seq_key],
            [
                self.members_prefix,
                dumps(sorted(rooms.items())).decode(),
                dumps(held).decode() if held else "[]",
                dumps(sorted(deletions.items())).decode() if deletions else "[]",
                self.tombstone_prefix,
                TOMBSTONE_TTL_MS,
            ],
        )

        def done(result: list[list[Any]]) -> None:
            refused, deleted = ([text(room) for room in rooms_] for rooms_ in result)
            for room in offline:
                if self.offline_rooms.get(room) == offline[room]:
                    del self.offline_rooms[room]
            for room, when in deletions.items():
                if self.offline_deleted.get(room) == when:
                    del self.offline_deleted[room]
            for room in deleted:
                self.replayed_deletions += 1
                log.info("room {room} deleted during the Redis outage: deleted in Redis too", room=room)
                self.bus.publish(destroy_event(room, deletions[room]))
            for room in refused:
                self.refused_rooms += 1
                log.info("room {room} was deleted while this node was cut off from Redis: dropped here",
                         room=room)
                self.mirror.remove_room(room)
                self.offline_rooms.pop(room, None)
                self.starting_rooms = tuple(r for r in self.starting_rooms if r != room)
                self.bus.deliver_here(destroy_event(room, self._now()))
            log.debug("re-asserted {rooms} rooms and {members} memberships", rooms=len(rooms), members=len(held))

        def failed(failure: Failure) -> None:
            log.warn("re-asserting rooms failed: {reason}", reason=failure.getErrorMessage())

        return d.addCallbacks(done, failed)

    def _room_event(self, event: dict[str, Any]) -> None:
        room = event.get("room")
        if event.get("type") == "destroy" and room is not None:
            self.mirror.remove_room(room)
            self.offline_rooms.pop(room, None)

    def remove_node(self, node_id: str, peers_key: str, only_if_dead: bool) -> Deferred[int]:
        """Remove a node's memberships and peer entry; -1 if it turned out alive."""
        window = str(PEER_WINDOW_MS) if only_if_dead else ""
        return REMOVE_NODE(
            self.link,
            [peers_key, self.host_key_of(node_id)],
            [node_id, self.members_prefix, window],
        )
