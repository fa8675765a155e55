"""In-memory providers: the standalone default, nothing to install."""

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from ahtwist.backends.interfaces import IBus, ICache, IPeers, IRoomBackend, IStats
from ahtwist.errors import RPC_TIMEOUT, ActionError, RoomError


class CacheMiss(ActionError):
    """``Object not found`` / ``Object expired`` (ActionHero's texts)."""


def _now_ms(clock: IReactorTime) -> int:
    return int(clock.seconds() * 1000)


@implementer(ICache)
class MemoryCache:
    """Entries live in a dict; expired ones are dropped when touched or counted."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._entries: dict[str, dict[str, Any]] = {}

    def save(self, key: str, value: Any, expire_ms: int | None = None) -> Deferred[bool]:
        now = _now_ms(self.clock)
        self._entries[key] = {
            "value": value,
            "expireTimestamp": now + expire_ms if expire_ms else None,
            "createdAt": now,
            "readAt": None,
        }
        return succeed(True)

    def _live(self, key: str, now: int) -> dict[str, Any] | None:
        entry = self._entries.get(key)
        if entry is not None and entry["expireTimestamp"] is not None and entry["expireTimestamp"] <= now:
            del self._entries[key]
            return None
        return entry

    def load(self, key: str) -> Deferred[dict[str, Any]]:
        now = _now_ms(self.clock)
        if key in self._entries and self._live(key, now) is None:
            return fail(CacheMiss("Object expired"))
        entry = self._entries.get(key)
        if entry is None:
            return fail(CacheMiss("Object not found"))
        result = {
            "key": key,
            "value": entry["value"],
            "expireTimestamp": entry["expireTimestamp"],
            "createdAt": entry["createdAt"],
            "readAt": entry["readAt"],
        }
        entry["readAt"] = now
        return succeed(result)

    def destroy(self, key: str) -> Deferred[bool]:
        return succeed(self._entries.pop(key, None) is not None)

    def size(self) -> Deferred[int]:
        now = _now_ms(self.clock)
        for key in list(self._entries):
            self._live(key, now)
        return succeed(len(self._entries))

    def items(self) -> list[tuple[str, dict[str, Any]]]:
        """Every entry (expired ones included): ``(key, {value, expireTimestamp,
        createdAt, readAt})``, for a cluster cache replaying what it held
        while Redis was down."""
        return [(key, dict(entry)) for key, entry in self._entries.items()]


@implementer(IStats)
class MemoryStats:
    """Counters in a dict; standalone, so global totals equal local ones."""

    def __init__(self) -> None:
        # a plain dict: a Counter's += costs ~1,000 instructions more (no
        # specialised subscript for a dict subclass), once per request
        self._counts: dict[str, int] = {}

    def increment(self, key: str, count: int = 1) -> None:
        counts = self._counts
        counts[key] = counts.get(key, 0) + count

    def local(self, key: str) -> int:
        return self._counts.get(key, 0)

    def global_counts(self) -> Deferred[dict[str, int]]:
        return succeed(dict(self._counts))


@implementer(IPeers)
class MemoryPeers:
    """A standalone node is its own only peer."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id

    def peers(self) -> Deferred[list[str]]:
        return succeed([self.node_id])


@implementer(IRoomBackend)
class MemoryRoomBackend:
    """Rooms in a dict."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._rooms: dict[str, dict[str, dict[str, Any]]] = {}

    def add_room(self, room: str) -> Deferred[bool]:
        if room in self._rooms:
            return succeed(False)
        self._rooms[room] = {}
        return succeed(True)

    def remove_room(self, room: str) -> Deferred[bool]:
        return succeed(self._rooms.pop(room, None) is not None)

    def room_exists(self, room: str) -> Deferred[bool]:
        return succeed(room in self._rooms)

    def list_rooms(self) -> Deferred[list[str]]:
        return succeed(sorted(self._rooms))

    def members(self, room: str) -> Deferred[dict[str, dict[str, Any]]]:
        return succeed(dict(self._rooms.get(room, {})))

    def add_member(self, room: str, record: dict[str, Any]) -> Deferred[bool]:
        members = self._rooms.setdefault(room, {})
        if record["id"] in members:
            return succeed(False)
        members[record["id"]] = record
        return succeed(True)

    def remove_member(self, room: str, connection_id: str) -> Deferred[bool]:
        members = self._rooms.get(room)
        return succeed(members is not None and members.pop(connection_id, None) is not None)

    def records(self) -> list[tuple[str, dict[str, Any]]]:
        """Every ``(room, member record)``, rooms in creation order, members in
        join order (what a cluster node re-asserts after a Redis outage)."""
        return [(room, record) for room, members in self._rooms.items() for record in members.values()]


@implementer(IBus)
class MemoryBus:
    """A standalone node's bus: events come back to this node on the next
    reactor turn, so a verb's reply always goes out before the chat message
    it causes; no other node holds a connection."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        #: standalone: no other node ever asks
        self.on_rpc: Any = None
        self._handlers: list[Callable[[dict[str, Any]], Any]] = []
        #: what publish schedules: the only handler itself (the usual case), or all of them
        self._target: Callable[[dict[str, Any]], Any] | None = None

    def subscribe(self, handler: Callable[[dict[str, Any]], Any]) -> None:
        self._handlers.append(handler)
        self._target = handler if len(self._handlers) == 1 else self._deliver

    def publish(self, event: dict[str, Any]) -> Deferred[None]:
        if self._target is not None:
            self.clock.callLater(0, self._target, event)
        return succeed(None)

    def _deliver(self, event: dict[str, Any]) -> None:
        for handler in self._handlers:
            handler(event)

    def call_remote(self, connection_id: str, method: str, args: Any) -> Deferred[Any]:
        return fail(RoomError(RPC_TIMEOUT))
