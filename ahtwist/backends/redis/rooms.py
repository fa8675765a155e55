"""Rooms and memberships in Redis, with a local mirror for outages
(README.md, 'Running a cluster')."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ahtwist._async import start
from ahtwist.backends.interfaces import IBus, IRoomBackend
from ahtwist.backends.memory import MemoryRoomBackend
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

log = Logger(namespace="ahtwist.redis")


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
    """

    def __init__(
        self,
        link: RedisLink,
        reactor: Any,
        bus: IBus,
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
        self.redis = LocalFallback(link, "rooms")
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

        async def in_redis() -> bool:
            return await self.link.execute("SADD", self.rooms_key, room) == 1

        def offline() -> bool:
            if created_here:
                self.offline_rooms.add(room)
            return created_here

        return await self.redis.or_local(in_redis, offline)

    def remove_room(self, room: str) -> Deferred[bool]:
        return start(self._remove_room(room))

    async def _remove_room(self, room: str) -> bool:
        existed_here = await self.mirror.remove_room(room)
        self.offline_rooms.discard(room)

        async def in_redis() -> bool:
            return await REMOVE_ROOM(self.link, [self.rooms_key, self._members_key(room)], [room]) == 1

        return await self.redis.or_local(in_redis, lambda: existed_here)

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
        d = REASSERT(
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
        room = event.get("room")
        if event.get("type") == "destroy" and room is not None:
            self.mirror.remove_room(room)
            self.offline_rooms.discard(room)

    def remove_node(self, node_id: str, peers_key: str, only_if_dead: bool) -> Deferred[int]:
        """Remove a node's memberships and peer entry; -1 if it turned out alive."""
        window = str(PEER_WINDOW_MS) if only_if_dead else ""
        return REMOVE_NODE(
            self.link,
            [peers_key, self.host_key_of(node_id)],
            [node_id, self.members_prefix, window],
        )
