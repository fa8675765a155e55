"""Connection verbs shared by the long-lived transports (BEHAVIOUR.md 9.4, 10.2).

``roomAdd``, ``roomLeave``, ``roomView``, ``say``, ``detailsView`` and
``documentation`` mean the same on the socket and on the websocket; only the
framing differs.  Each verb here returns a :class:`VerbResult` (the error
text, and the ``data`` the reply carries, if any) and the transport turns it
into its reply shape.  Room rules live in :class:`~ahtwist.rooms.RoomService`;
this module only maps its outcomes onto the verb table.
"""

from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ahtwist import errors
from ahtwist.encoding import dumps
from ahtwist.errors import RoomError

if TYPE_CHECKING:
    from ahtwist.connection import Connection
    from ahtwist.node import Node

log = Logger(namespace="ahtwist.verbs")


class _NoData:
    """The reply has no ``data`` key (distinct from ``"data": null``)."""

    def __repr__(self) -> str:
        return "NO_DATA"


NO_DATA: Any = _NoData()


@attrs.frozen
class VerbResult:
    """A verb's outcome: ``error`` None means OK; ``data`` NO_DATA means absent."""

    error: Any = None
    data: Any = NO_DATA


OK = VerbResult()


def room_text(room: Any) -> str:
    """How a room appears inside an error text (non-strings as compact JSON)."""
    if isinstance(room, str):
        return room
    return dumps(room).decode("utf-8", "replace")


def say_text(values: list[Any]) -> str:
    """A say message from the verb's remaining arguments: strings as they are,
    anything else as compact JSON text, joined by single spaces (a null is
    empty, as in JavaScript's ``join``)."""
    parts = []
    for value in values:
        if isinstance(value, str):
            parts.append(value)
        elif value is None:
            parts.append("")
        else:
            parts.append(dumps(value).decode("utf-8", "replace"))
    return " ".join(parts)


def _unexpected(what: str, connection: "Connection") -> VerbResult:
    log.failure("{verb} failed for {id}", verb=what, id=connection.id)
    return VerbResult(errors.INTERNAL_ERROR)


async def _room_add(node: "Node", connection: "Connection", room: Any) -> VerbResult:
    if not isinstance(room, str):
        return VerbResult(errors.ROOM_DOES_NOT_EXIST, False)
    try:
        await node.rooms.add_member(connection.id, room)
    except RoomError as e:
        return VerbResult(e.message, False)
    except Exception:
        return attrs.evolve(_unexpected("roomAdd", connection), data=False)
    return VerbResult(None, True)


async def _room_leave(node: "Node", connection: "Connection", room: Any) -> VerbResult:
    if not isinstance(room, str):
        return VerbResult(errors.NOT_IN_ROOM.format(room=room_text(room)), False)
    try:
        await node.rooms.remove_member(connection.id, room)
    except RoomError as e:
        return VerbResult(e.message, False)
    except Exception:
        return attrs.evolve(_unexpected("roomLeave", connection), data=False)
    return VerbResult(None, True)


async def _room_view(node: "Node", connection: "Connection", room: Any) -> VerbResult:
    if not isinstance(room, str) or room not in connection.rooms:
        return VerbResult(errors.NOT_IN_ROOM.format(room=room_text(room)))
    try:
        status = await node.rooms.status(room)
    except RoomError as e:
        return VerbResult(e.message)
    except Exception:
        return _unexpected("roomView", connection)
    return VerbResult(None, status)


async def _say(node: "Node", connection: "Connection", room: Any, message: str) -> VerbResult:
    if not isinstance(room, str) and room and message != "":
        return VerbResult(errors.NOT_IN_ROOM.format(room=room_text(room)))
    try:
        await node.rooms.broadcast(connection, room, message)
    except RoomError as e:
        return VerbResult(e.message)
    except Exception:
        return _unexpected("say", connection)
    return OK


def room_add(node: "Node", connection: "Connection", room: Any) -> Deferred[VerbResult]:
    """Join ``room``: data true, or the error with data false."""
    return Deferred.fromCoroutine(_room_add(node, connection, room))


def room_leave(node: "Node", connection: "Connection", room: Any) -> Deferred[VerbResult]:
    """Leave ``room``: data true, or the error with data false."""
    return Deferred.fromCoroutine(_room_leave(node, connection, room))


def room_view(node: "Node", connection: "Connection", room: Any) -> Deferred[VerbResult]:
    """The room status for a member; otherwise ``connection not in this room``."""
    return Deferred.fromCoroutine(_room_view(node, connection, room))


def say(node: "Node", connection: "Connection", room: Any, message: str) -> Deferred[VerbResult]:
    """Broadcast ``message`` to ``room``; the OK reply carries no data."""
    return Deferred.fromCoroutine(_say(node, connection, room, message))


def details_view(connection: "Connection") -> VerbResult:
    return VerbResult(None, connection.details())


def documentation(node: "Node") -> VerbResult:
    return VerbResult(None, node.registry.documentation())
