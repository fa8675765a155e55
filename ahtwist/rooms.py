"""Chat rooms shared by every transport (docs/python-api.md, 'The node:
rooms, cache, stats, other nodes').

The :class:`RoomService` holds the rules (errors, middleware, payload shape);
an :class:`~ahtwist.backends.interfaces.IRoomBackend` holds the state and an
:class:`~ahtwist.backends.interfaces.IBus` carries events between nodes.
Transports call the service through verbs and receive chat messages through
``connection.send_message``.

Events on the bus:

* ``{"type": "say", "room", "payload", "offset", "epoch"}`` -- deliver
  ``payload`` to this node's members of ``room`` (per-recipient ``say``
  middleware runs here); members that joined with ``since`` get it with
  ``offset`` and ``epoch`` added (:mod:`ahtwist.resume`).  The
  :class:`~ahtwist.backends.interfaces.IRoomHistory` publishes it, as it
  assigns the offset;
* ``{"type": "destroy", "room", "payload"}`` -- deliver the deletion notice,
  then remove this node's members of ``room``.
"""

from __future__ import annotations

import builtins
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Mapping
from inspect import isawaitable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ahtwist import errors
from ahtwist._async import start
from ahtwist.actions.middleware import ChatMiddleware, by_priority, check_middleware
from ahtwist.backends.history import MemoryRoomHistory
from ahtwist.backends.interfaces import IBus, IRoomBackend, IRoomHistory
from ahtwist.connection import Connection
from ahtwist.errors import ActionError, ConfigError, RoomError
from ahtwist.limits import Limits
from ahtwist.resume import Mark, Resumes, Since

log = Logger(namespace="ahtwist.rooms")

#: reasons a chat message was not handed to a member (``RoomService.dropped``)
DROPPED_BY_MIDDLEWARE = "middleware"
DROPPED_BY_ERROR = "error"


async def _resolve(value: Any) -> Any:
    if value is not None and isawaitable(value):
        return await value
    return value


def _veto_text(exc: BaseException) -> Any:
    return exc.error if isinstance(exc, ActionError) else str(exc)


def _delivery_failed(rooms: RoomService, recipient: Connection) -> None:
    """A transport raised delivering a chat message: logged, counted as dropped."""
    log.failure("delivering to {id}", id=recipient.id)
    rooms.delivered -= 1
    rooms.dropped[DROPPED_BY_ERROR] += 1


def room_message(message: Any, room: str, sender: Any, sent_at: int) -> dict[str, Any]:
    """The payload of a chat message (``sender`` 0: the server)."""
    return {"message": message, "room": room, "from": sender, "context": "user", "sentAt": sent_at}


def destroy_event(room: str, sent_at: int) -> dict[str, Any]:
    """The bus event of a room's deletion: members get the notice, then leave."""
    return {"type": "destroy", "room": room, "payload": room_message(errors.ROOM_DELETED, room, 0, sent_at)}


class RoomService:
    """Rooms, membership and chat, over a backend (state) and a bus (events, RPC).

    ``connections`` is the live table of this node's connections by id (a
    connection not in it is held by another node: asked over the bus);
    ``clock`` stamps ``joinedAt``/``sentAt``; ``node_id`` is the ``host`` of
    this node's membership records; ``history`` stores what is said and
    publishes it (default: in memory, on ``bus``).
    Counters for the metrics: :attr:`resumes` (:class:`~ahtwist.resume.Resumes`),
    :attr:`delivered`, :attr:`dropped`.
    """

    def __init__(
        self,
        backend: IRoomBackend,
        bus: IBus,
        *,
        connections: Mapping[str, Connection],
        clock: IReactorTime,
        node_id: str,
        middleware_priority: int,
        limits: Limits,
        history: IRoomHistory | None = None,
    ) -> None:
        self.backend = backend
        self.history: IRoomHistory = history if history is not None else MemoryRoomHistory(bus, clock)
        #: members that joined with ``since`` (offsets on, resume)
        self.resumes = Resumes(self.history, clock, self._send)
        self.limits = limits
        self.bus = bus
        self.connections = connections
        self.clock = clock
        self.node_id = node_id
        self.middleware_priority = middleware_priority
        self.middleware: list[ChatMiddleware] = []
        self._names: set[str] = set()
        self._has_say_hooks = False
        #: room -> {connection id: connection} for this node's members, join order
        self._local: dict[str, dict[str, Connection]] = {}
        #: chat messages handed to members' transports; not handed, by reason
        self.delivered = 0
        self.dropped: Counter[str] = Counter()
        bus.subscribe(self._on_event)

    def _now_ms(self) -> int:
        return int(self.clock.seconds() * 1000)

    # --- middleware --------------------------------------------------------

    def add_middleware(self, middleware: ChatMiddleware | type[ChatMiddleware]) -> None:
        if isinstance(middleware, type):
            middleware = middleware()
        name = check_middleware(middleware)
        if name in self._names:
            raise ConfigError(f"chat middleware {name!r} is registered twice")
        self._names.add(name)
        self.middleware = by_priority(
            [*self.middleware, middleware], self.middleware_priority
        )
        self._has_say_hooks = any(m.say is not None for m in self.middleware)

    async def _run_hooks(
        self, hook: str, connection: Connection | None, room: str, payload: Any = None
    ) -> Any:
        """Run one hook of every chat middleware; a truthy return replaces the
        payload.  Exceptions propagate (the caller decides: veto or ignore)."""
        current = dict(payload) if payload is not None else None
        for middleware in self.middleware:
            fn: Callable[..., Any] | None = getattr(middleware, hook, None)
            if fn is None:
                continue
            if current is None:
                await _resolve(fn(connection, room))
            else:
                result = await _resolve(fn(connection, room, current))
                if result:
                    current = result
        return current

    # --- rooms ---------------------------------------------------------------

    def add(
        self, room: str, *, history_messages: int | None = None, history_age: int | None = None
    ) -> Deferred[int]:
        """Create ``room`` (its history with a new epoch, ``history_*``
        overriding ``[history]``): fires 1, or fails with ``room exists``."""
        return start(self._add(room, history_messages, history_age))

    async def _add(self, room: str, history_messages: int | None = None, history_age: int | None = None) -> int:
        if not room or not isinstance(room, str):
            raise RoomError(errors.ROOM_REQUIRED)
        self.limits.check_room_name(room)
        if await self.backend.room_exists(room):
            raise RoomError(errors.ROOM_EXISTS)
        self.limits.check_new_room(len(await self.backend.list_rooms()))
        if not await self.backend.add_room(room):
            raise RoomError(errors.ROOM_EXISTS)
        await self.history.create(room, history_messages, history_age)
        return 1

    def exists(self, room: str) -> Deferred[bool]:
        return self.backend.room_exists(room)

    def list(self) -> Deferred[list[str]]:
        return self.backend.list_rooms()

    def destroy(self, room: str) -> Deferred[None]:
        """Tell the members ``this room has been deleted``, remove them, delete it."""
        return start(self._destroy(room))

    async def _destroy(self, room: str) -> None:
        self.limits.check_room_name(room)
        if not room or not await self.backend.room_exists(room):
            raise RoomError(errors.ROOM_DOES_NOT_EXIST)
        await self.backend.remove_room(room)
        await self.history.destroy(room)
        await self.bus.publish(destroy_event(room, self._now_ms()))

    def status(self, room: str) -> Deferred[dict[str, Any]]:
        """``{"room", "members": {id: {id, joinedAt}}, "membersCount"}``."""
        return start(self._status(room))

    async def _status(self, room: str) -> dict[str, Any]:
        if not room:
            raise RoomError(errors.ROOM_REQUIRED)
        self.limits.check_room_name(room)
        if not await self.backend.room_exists(room):
            raise RoomError(errors.ROOM_DOES_NOT_EXIST)
        members = await self.backend.members(room)
        shown = self.limits.room_view_members
        listed = members.items()
        if len(members) > shown:  # the count stays true; the list is bounded
            listed = list(listed)[:shown]
        return {
            "room": room,
            "members": {mid: {"id": rec["id"], "joinedAt": rec["joinedAt"]} for mid, rec in listed},
            "membersCount": len(members),
        }

    # --- membership ----------------------------------------------------------

    def add_member(self, connection_id: str, room: str, since: Since | None = None) -> Deferred[Any]:
        """Join: fires True; with ``since`` (resume, offsets on) fires
        ``{"recovered", "offset", "epoch"}`` and the missed messages follow."""
        return start(self._add_member(connection_id, room, since))

    async def _add_member(self, connection_id: str, room: str, since: Since | None = None) -> Any:
        connection = self.connections.get(connection_id)
        if connection is None:
            args: builtins.list[Any] = [room] if since is None else [room, since.to_wire()]
            return await self.bus.call_remote(connection_id, "add_member", args)
        if not room:
            raise RoomError(errors.ROOM_REQUIRED)
        self.limits.check_room_name(room)
        if room in connection.rooms:
            raise RoomError(errors.ALREADY_IN_ROOM.format(room=room))
        self.limits.check_join(len(connection.rooms))
        if not await self.backend.room_exists(room):
            raise RoomError(errors.ROOM_DOES_NOT_EXIST)
        try:
            await self._run_hooks("join", connection, room)
        except Exception as e:
            raise RoomError(_veto_text(e)) from None
        if connection.destroyed:
            # gone while an asynchronous join hook ran: it must not stay a member
            raise RoomError(errors.NOT_IN_ROOM.format(room=room))
        record = {"id": connection.id, "joinedAt": self._now_ms(), "host": self.node_id}
        await self.backend.add_member(room, record)
        connection.joined(room)
        self._local.setdefault(room, {})[connection.id] = connection
        if since is None:
            return True
        return await self.resumes.join(connection, room, since)

    def remove_member(self, connection_id: str, room: str) -> Deferred[bool]:
        return start(self._remove_member(connection_id, room))

    async def _remove_member(self, connection_id: str, room: str, force: bool = False) -> bool:
        connection = self.connections.get(connection_id)
        if connection is None:
            return await self.bus.call_remote(connection_id, "remove_member", [room])
        if room not in connection.rooms:
            self.limits.check_room_name(room)
            raise RoomError(errors.NOT_IN_ROOM.format(room=room))
        if not force and not await self.backend.room_exists(room):
            raise RoomError(errors.ROOM_DOES_NOT_EXIST)
        try:
            await self._run_hooks("leave", connection, room)
        except Exception as e:
            if not force:
                raise RoomError(_veto_text(e)) from None
            log.info("leave middleware veto ignored for {id} in {room}: {e}", id=connection.id, room=room, e=e)
        await self.backend.remove_member(room, connection.id)
        self._forget_local(connection, room)
        return True

    def _forget_local(self, connection: Connection, room: str) -> None:
        connection.left(room)
        if room in self.resumes.tracked:
            self.resumes.forget(connection.id, room)
        members = self._local.get(room)
        if members is not None:
            members.pop(connection.id, None)
            if not members:
                del self._local[room]

    async def leave_all(self, connection: Connection) -> None:
        """A connection going away leaves every room (vetoes ignored)."""
        for room in list(connection.rooms):
            try:
                await self._remove_member(connection.id, room, force=True)
            except Exception:
                log.failure("removing {id} from {room}", id=connection.id, room=room)
                self._forget_local(connection, room)

    # --- chat ----------------------------------------------------------------

    def _payload(self, message: Any, room: str, sender: Any) -> dict[str, Any]:
        return room_message(message, room, sender, self._now_ms())

    def broadcast(self, connection: Connection | None, room: str, message: Any) -> Deferred[None]:
        """Send ``message`` to every member of ``room`` (sender included).

        Fires once the message is accepted (after ``on_say_receive``); the
        delivery itself happens later, so a reply to the sender goes first.
        ``connection`` None is the server speaking (``from: 0``).
        """
        return start(self._broadcast(connection, room, message))

    async def _broadcast(self, connection: Connection | None, room: str, message: Any) -> None:
        if not room or message is None or message == "":
            raise RoomError(errors.ROOM_AND_MESSAGE_REQUIRED)
        self.limits.check_room_name(room)
        if connection is not None and room not in connection.rooms:
            raise RoomError(errors.NOT_IN_ROOM.format(room=room))
        payload = self._payload(message, room, connection.id if connection is not None else 0)
        try:
            payload = await self._run_hooks("on_say_receive", connection, room, payload)
        except Exception as e:
            raise RoomError(_veto_text(e)) from None
        await self.history.publish_say(room, payload)

    # --- events from the backend ---------------------------------------------

    def local_members(self, room: str) -> builtins.list[Connection]:  # list: our method
        """This node's connections in ``room``, in join order."""
        return list(self._local.get(room, {}).values())

    def _on_event(self, event: dict[str, Any]) -> Awaitable[None]:
        return start(self._handle_event(event))

    async def _handle_event(self, event: dict[str, Any]) -> None:
        try:
            kind, room, payload = event["type"], event["room"], event["payload"]
            if kind in ("say", "destroy"):
                members = self._local.get(room)
                tracks = self.resumes.tracked.get(room) if members else None
                if tracks and kind == "say":
                    await self.resumes.live(room, members, tracks, event)  # type: ignore[arg-type]
                elif members:
                    await self._send(list(members.values()), room, payload, None)
            if kind == "destroy":
                for member in self.local_members(room):
                    await self._remove_member(member.id, room, force=True)
        except Exception:
            log.failure("handling room event {event!r}", event=event)

    async def _send(
        self, recipients: Collection[Connection], room: str, payload: dict[str, Any], mark: Mark | None
    ) -> None:
        """Deliver ``payload`` (with ``offset``/``epoch`` when ``mark``: one
        dict for all, serialized once by transports) through say middleware."""
        if self._has_say_hooks:
            # per recipient; otherwise one plain loop, no coroutine per recipient
            for recipient in recipients:
                await self._deliver(recipient, room, payload, mark)
            return
        message = payload if mark is None else {**payload, "offset": mark[0], "epoch": mark[1]}
        self.delivered += len(recipients)  # one addition per message, not per member
        for recipient in recipients:
            try:
                recipient.send_message(message)
            except Exception:
                _delivery_failed(self, recipient)

    async def _deliver(self, recipient: Connection, room: str, payload: dict[str, Any], mark: Mark | None) -> None:
        try:
            message = await self._run_hooks("say", recipient, room, payload)
        except Exception as e:
            log.debug("say middleware vetoed delivery to {id}: {e}", id=recipient.id, e=e)
            self.dropped[DROPPED_BY_MIDDLEWARE] += 1
            return
        if mark is not None:
            message = {**message, "offset": mark[0], "epoch": mark[1]}
        self.delivered += 1
        try:
            recipient.send_message(message)
        except Exception:
            _delivery_failed(self, recipient)
