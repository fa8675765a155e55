"""Room history in memory: the standalone provider of
:class:`~ahtwist.backends.interfaces.IRoomHistory`.

Each room keeps its epoch, its latest offset and a deque of its stored
messages (offsets contiguous, oldest first).  Three bounds apply: the room's
``max_messages``, its ``max_age`` (checked when the room is said to or read)
and ``maxTotalBytes`` across all rooms of the node, past which the oldest
messages of any room go first.  So memory is bounded whatever the room count:
at most ``maxTotalBytes`` of messages (each counted as its text plus
:data:`ENTRY_OVERHEAD`) plus one small state per room (docs/architecture.md,
'Room history and resume').
"""

import os
from collections import deque
from itertools import islice
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from ahtwist.backends.interfaces import IBus, IRoomHistory
from ahtwist.encoding import dumps

#: what one stored message costs besides its text: its payload dict, strings,
#: tuple and bookkeeping (bench/history_bench.py measures 470-500 bytes)
ENTRY_OVERHEAD = 512


def new_epoch() -> str:
    """A fresh epoch: 16 random hex digits (never reused in practice)."""
    return os.urandom(8).hex()


def message_size(room: str, payload: dict[str, Any]) -> int:
    """What a stored message counts for against ``maxTotalBytes``."""
    message = payload.get("message")
    text = len(message) if isinstance(message, str) else len(dumps(message))
    return ENTRY_OVERHEAD + len(room) + text


@attrs.frozen
class HistoryLimits:
    """The bounds of one room's history (0: keep nothing / no age limit)."""

    max_messages: int = 100
    max_age: int = 300

    def override(self, max_messages: int | None, max_age: int | None) -> "HistoryLimits":
        """These limits with the given values replaced (None keeps one)."""
        return HistoryLimits(
            self.max_messages if max_messages is None else max(0, int(max_messages)),
            self.max_age if max_age is None else max(0, int(max_age)),
        )


class _RoomLog:
    """One room: its epoch, latest offset and stored ``(offset, at_ms,
    payload, size)`` entries (offsets contiguous)."""

    __slots__ = ("epoch", "offset", "entries", "limits")

    def __init__(self, limits: HistoryLimits) -> None:
        self.epoch = new_epoch()
        self.offset = 0
        self.entries: deque[tuple[int, int, dict[str, Any], int]] = deque()
        self.limits = limits


@implementer(IRoomHistory)
class MemoryRoomHistory:
    """Room history in this process, publishing say events on ``bus``.

    ``limits`` are the defaults (``[history]`` maxMessages/maxAge);
    ``max_total_bytes`` bounds all rooms together.
    """

    def __init__(
        self,
        bus: IBus,
        clock: IReactorTime,
        limits: HistoryLimits | None = None,
        max_total_bytes: int = 67108864,
    ) -> None:
        self.bus = bus
        self.clock = clock
        self.limits = limits if limits is not None else HistoryLimits()
        self.max_total_bytes = max_total_bytes
        self._rooms: dict[str, _RoomLog] = {}
        #: bytes of every stored message, all rooms
        self.total_bytes = 0
        #: stored messages of all rooms in the order they were said:
        #: (room log, offset); entries already gone are skipped when reached
        self._order: deque[tuple[_RoomLog, int]] = deque()
        self._stored = 0

    def _now_ms(self) -> int:
        return int(self.clock.seconds() * 1000)

    def _log(self, room: str) -> _RoomLog:
        log = self._rooms.get(room)
        if log is None:
            log = self._rooms[room] = _RoomLog(self.limits)
        return log

    # --- IRoomHistory -----------------------------------------------------------

    def create(self, room: str, max_messages: int | None = None, max_age: int | None = None) -> Deferred[str]:
        self._drop(room)
        log = self._rooms[room] = _RoomLog(self.limits.override(max_messages, max_age))
        return succeed(log.epoch)

    def destroy(self, room: str) -> Deferred[None]:
        self._drop(room)
        return succeed(None)

    def publish_say(self, room: str, payload: dict[str, Any]) -> Deferred[tuple[int, str]]:
        log = self._rooms.get(room)
        if log is None:
            log = self._log(room)
        log.offset = offset = log.offset + 1
        if log.limits.max_messages:
            self._store(room, log, offset, payload)
        epoch = log.epoch
        published = self.bus.publish({"type": "say", "room": room, "payload": payload, "offset": offset, "epoch": epoch})
        if published is None:
            return succeed((offset, epoch))
        # the bus's outcome (a cluster bus may fail) is the say's
        return published.addCallback(lambda _: (offset, epoch))

    def since(
        self, room: str, offset: int | None, epoch: str | None
    ) -> Deferred[tuple[bool, list[tuple[int, dict[str, Any]]], int, str]]:
        log = self._log(room)
        self._expire(log)
        position = log.offset
        if offset is None or (offset == position and epoch == log.epoch):
            return succeed((offset is None or epoch == log.epoch, [], position, log.epoch))
        if epoch != log.epoch or offset < 0 or offset > position:
            return succeed((False, [], position, log.epoch))
        entries = log.entries
        first = entries[0][0] if entries else position + 1
        start = max(0, offset + 1 - first)
        messages = [(entry[0], entry[2]) for entry in islice(entries, start, None)]
        return succeed((offset >= first - 1, messages, position, log.epoch))

    def position(self, room: str) -> Deferred[tuple[int, str]]:
        log = self._log(room)
        return succeed((log.offset, log.epoch))

    # --- bounds -------------------------------------------------------------------

    def _store(self, room: str, log: _RoomLog, offset: int, payload: dict[str, Any]) -> None:
        size = message_size(room, payload)
        entries = log.entries
        entries.append((offset, self._now_ms(), payload, size))
        self.total_bytes += size
        self._stored += 1
        self._order.append((log, offset))
        if len(entries) > log.limits.max_messages:
            self._pop_oldest(log)
        if log.limits.max_age:
            self._expire(log)
        if self.total_bytes > self.max_total_bytes:
            self._evict()
        elif len(self._order) > 2 * self._stored + 64:
            self._compact()

    def _pop_oldest(self, log: _RoomLog) -> None:
        entry = log.entries.popleft()
        self.total_bytes -= entry[3]
        self._stored -= 1

    def _expire(self, log: _RoomLog) -> None:
        max_age = log.limits.max_age
        entries = log.entries
        if not max_age or not entries:
            return
        oldest = self._now_ms() - max_age * 1000
        while entries and entries[0][1] <= oldest:
            self._pop_oldest(log)

    def _evict(self) -> None:
        """Drop the oldest messages of any room until under ``max_total_bytes``."""
        order = self._order
        while self.total_bytes > self.max_total_bytes and order:
            log, offset = order.popleft()
            entries = log.entries
            if entries and entries[0][0] == offset:
                self._pop_oldest(log)

    def _compact(self) -> None:
        """Forget order records of messages already gone (bounded bookkeeping)."""
        self._order = deque(
            (log, offset)
            for log, offset in self._order
            if log.entries and log.entries[0][0] <= offset
        )

    def _drop(self, room: str) -> None:
        log = self._rooms.pop(room, None)
        if log is not None:
            # its order records are skipped when reached (entries emptied)
            for entry in log.entries:
                self.total_bytes -= entry[3]
            self._stored -= len(log.entries)
            log.entries.clear()

    # --- introspection ---------------------------------------------------------

    def stored(self) -> int:
        """Messages stored, all rooms (for tests and benchmarks)."""
        return self._stored

    def rooms(self) -> int:
        """Rooms with history state."""
        return len(self._rooms)

