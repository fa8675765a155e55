"""Resume: members that joined a room with ``since`` (docs/architecture.md,
'Room history and resume').

A member that opts in gets every say of the room with its ``offset`` and
``epoch``, and, when it names the last offset it saw, the messages it missed
first.  While those are fetched from the history (possibly over the network),
live says of the room for that member are held back; then the missed ones
are delivered, then the held ones, each offset at most once and in order.

:class:`Resumes` holds that per-member state for the
:class:`~ahtwist.rooms.RoomService` (which calls it from its event handler
and its join); the :class:`~ahtwist.backends.interfaces.IRoomHistory`
provider holds the messages.
"""

from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ahtwist._async import start
from ahtwist.backends.interfaces import IRoomHistory

if TYPE_CHECKING:
    from ahtwist.connection import Connection

log = Logger(namespace="ahtwist.rooms")

#: missed messages sent per reactor turn (the transport writes in between)
CATCH_UP_BATCH = 200
#: (offset, epoch) added to a say delivered to a resuming member
Mark = tuple[int, str]
#: RoomService's delivery: (recipients, room, payload, mark or None)
Send = Callable[[Collection["Connection"], str, dict[str, Any], "Mark | None"], Awaitable[None]]
#: called as observer(room, recovered, missed) after every resume that named an offset
ResumeObserver = Callable[[str, bool, int], None]


@attrs.frozen
class Since:
    """Where a member resumes from: the last ``offset`` it saw of ``epoch``
    (both None: from now, offsets on)."""

    offset: int | None = None
    epoch: str | None = None

    @classmethod
    def parse(cls, value: Any) -> "Since":
        """The wire's ``since``: ``{}`` or ``{"offset": int >= 0, "epoch": str}``;
        ValueError otherwise."""
        if not isinstance(value, Mapping):
            raise ValueError("since is not an object")
        if not value:
            return cls()
        offset, epoch = value.get("offset"), value.get("epoch")
        if set(value) - {"offset", "epoch"} or type(offset) is not int or offset < 0 or not isinstance(epoch, str):
            raise ValueError("since needs an integer offset >= 0 and a string epoch")
        return cls(offset, epoch)

    def to_wire(self) -> dict[str, Any]:
        return {} if self.offset is None else {"offset": self.offset, "epoch": self.epoch}


class _Track:
    """One resuming member of one room: the last offset delivered (of
    ``epoch``) and, while its missed messages are fetched, the held events."""

    __slots__ = ("last", "epoch", "held", "connection")

    def __init__(self, connection: "Connection") -> None:
        self.connection = connection
        self.last = -1
        self.epoch: str | None = None
        #: (offset, epoch, payload) of live says held back, None once live
        self.held: list[tuple[int, str, dict[str, Any]]] | None = []


class Resumes:
    """The resuming members of this node's rooms.

    A member is *catching up* (its live says held) until its missed messages
    are out, then deduplicated on its own until it has had exactly what the
    room's other live members had; from then on it is with them in
    :attr:`caught_up`, where one check per event (the room's last delivered
    offset) serves all -- so a room of resuming members costs about what a
    room of plain ones costs per delivery.  This relies on the bus delivering a room's says in
    offset order (a provider that detects a gap fills it before it delivers
    anything later): an offset not above the last one delivered is a
    duplicate.

    ``resume_hits``/``resume_misses`` count resumes that named an offset and
    were / were not fully recovered; every ``observers`` callable is called
    as ``observer(room, recovered, missed)`` after each of them (for
    metrics).
    """

    def __init__(self, history: IRoomHistory, clock: IReactorTime, send: Send) -> None:
        self.history = history
        self.clock = clock
        self.send = send
        #: room -> {connection id: its track}: every resuming member
        self.tracked: dict[str, dict[str, _Track]] = {}
        #: room -> {connection id: connection}: members caught up with the room
        self.caught_up: dict[str, dict[str, Connection]] = {}
        #: room -> (epoch, offset) of the last say delivered to its live members
        self.room_last: dict[str, tuple[str, int]] = {}
        self.resume_hits = 0
        self.resume_misses = 0
        self.observers: list[ResumeObserver] = []

    # --- joining -------------------------------------------------------------------

    async def join(self, connection: "Connection", room: str, since: Since) -> dict[str, Any]:
        """``connection`` (already a member) opts in; answers the roomAdd
        data ``{"recovered", "offset", "epoch"}``.  The missed messages and
        the live ones held meanwhile are delivered on the next reactor turn,
        after the reply."""
        track = _Track(connection)
        self.tracked.setdefault(room, {})[connection.id] = track
        try:
            recovered, missed, position, epoch = await self.history.since(room, since.offset, since.epoch)
            base = since.offset
            if base is not None and since.epoch != epoch:
                # its history was lost (room re-created, restart, Redis data
                # gone): all of the current epoch is new to this member
                _, missed, position, epoch = await self.history.since(room, 0, epoch)
                base = 0
        except Exception:
            log.failure("reading the history of {room}", room=room)
            recovered, missed, position, epoch, base = False, [], 0, "", None
        track.epoch = epoch
        track.last = position if base is None else min(base, position)
        if since.offset is not None:
            if recovered:
                self.resume_hits += 1
            else:
                self.resume_misses += 1
            for observer in self.observers:
                try:
                    observer(room, recovered, len(missed))
                except Exception:
                    log.failure("resume observer failed")
        self.clock.callLater(0, lambda: start(self._catch_up(connection, room, track, missed)))
        return {"recovered": recovered, "offset": position, "epoch": epoch}

    async def _catch_up(
        self, connection: "Connection", room: str, track: _Track, missed: list[tuple[int, dict[str, Any]]]
    ) -> None:
        try:
            for count, (offset, payload) in enumerate(missed, 1):
                if not self._current(connection, room, track):
                    return
                if offset > track.last:
                    track.last = offset
                    await self.send((connection,), room, payload, (offset, track.epoch or ""))
                if count % CATCH_UP_BATCH == 0:
                    await self._next_turn()  # let the transport write what it has
            while track.held:
                held, track.held = track.held, []
                for offset, epoch, payload in held:
                    if not self._current(connection, room, track):
                        return
                    if self._fresh(track, offset, epoch):
                        await self.send((connection,), room, payload, (offset, epoch))
            track.held = None
        except Exception:
            log.failure("resuming {id} in {room}", id=connection.id, room=room)
            track.held = None
        if self._current(connection, room, track):
            self._promote(room, connection.id, track)

    def _promote(self, room: str, connection_id: str, track: _Track) -> None:
        """Move a caught-up member to the room's live ones once it has had
        exactly what they had (or when it is the first)."""
        live = self.caught_up.get(room)
        last = self.room_last.get(room)
        if not live or last is None:
            self.room_last[room] = (track.epoch or "", track.last)
        elif last != (track.epoch, track.last):
            return
        self.caught_up.setdefault(room, {})[connection_id] = track.connection

    def _next_turn(self) -> Deferred[None]:
        turn: Deferred[None] = Deferred()
        self.clock.callLater(0, turn.callback, None)
        return turn

    def _current(self, connection: "Connection", room: str, track: _Track) -> bool:
        return not connection.destroyed and self.tracked.get(room, {}).get(connection.id) is track

    @staticmethod
    def _fresh(track: _Track, offset: int, epoch: str) -> bool:
        """Not yet delivered: a later offset, or a new epoch (history lost:
        offsets start again); records it as delivered."""
        if epoch == track.epoch and offset <= track.last:
            return False
        track.epoch = epoch
        track.last = offset
        return True

    def forget(self, connection_id: str, room: str) -> None:
        """The member left (or went away)."""
        live = self.caught_up.get(room)
        if live is not None:
            live.pop(connection_id, None)
        tracks = self.tracked.get(room)
        if tracks is not None and tracks.pop(connection_id, None) is not None and not tracks:
            del self.tracked[room]
            self.caught_up.pop(room, None)
            self.room_last.pop(room, None)

    # --- live says -----------------------------------------------------------------

    async def live(
        self,
        room: str,
        members: Mapping[str, "Connection"],
        tracks: dict[str, _Track],
        event: dict[str, Any],
    ) -> None:
        """Deliver a say event to a room with resuming members: first the
        others (today's message), then the resuming ones (with offset and
        epoch; held back while they catch up; never twice)."""
        payload = event["payload"]
        offset, epoch = event.get("offset"), event.get("epoch")
        if type(offset) is not int or not isinstance(epoch, str):
            # no offset (an older node said it): everyone gets the plain message
            await self.send(list(members.values()), room, payload, None)
            return
        if len(tracks) != len(members):
            await self.send([m for cid, m in members.items() if cid not in tracks], room, payload, None)
        live = self.caught_up.get(room)
        last = self.room_last.get(room)
        ready: list[Connection] = []
        if last is None or last[0] != epoch or offset > last[1]:
            self.room_last[room] = (epoch, offset)
            if live:
                ready.extend(live.values())
        if len(live or ()) != len(tracks):
            for connection_id, track in list(tracks.items()):
                if live and connection_id in live:
                    continue
                if track.held is not None:
                    track.held.append((offset, epoch, payload))
                    continue
                if self._fresh(track, offset, epoch):
                    ready.append(track.connection)
                self._promote(room, connection_id, track)
        if ready:
            await self.send(ready, room, payload, (offset, epoch))
