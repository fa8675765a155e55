"""Connection verbs (docs/protocol-socket.md, 'Verbs'; docs/protocol-websocket.md), transport-neutral.

ActionHero gives every long-lived connection a small command set besides
actions: room verbs, ``say``, ``detailsView``, ``documentation``, the socket's
sticky-param verbs and ``quit``/``exit``.  The rules (what each verb does,
which error text and ``data`` it answers with) are the same on the socket and
the websocket, so they live here; a transport only turns its input into
``(verb, args)`` and the outcome into its own reply shape.

``roomAdd`` has an opt-in resume form (``since``: the member gets offsets
and the messages it missed, docs/architecture.md 'Room history and
resume'); the transport parses its own spelling of it and passes
``since`` (the wire's ``{}`` or ``{"offset", "epoch"}``) to :meth:`Verbs.run`.

A verb answers with its ``data`` (``None`` means "no data key") or raises
:class:`VerbError` carrying the error text and, for ``roomAdd``/``roomLeave``,
``data: false``.  ``quit``/``exit`` answer :data:`NO_REPLY`: the connection is
destroyed and its transport says goodbye its own way.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

import ahtwist.errors as errors
from ahtwist.encoding import dumps
from ahtwist.errors import RoomError
from ahtwist.resume import Since

if TYPE_CHECKING:
    from ahtwist.connection import Connection

log = Logger(namespace="ahtwist.verbs")

#: verbs every chatting connection has (socket and websocket)
COMMON_VERBS = frozenset(
    ("quit", "exit", "documentation", "detailsView", "roomAdd", "roomLeave", "roomView", "say")
)
#: verbs that edit the socket's sticky params
PARAM_VERBS = frozenset(("paramAdd", "paramDelete", "paramView", "paramsView", "paramsDelete"))
SOCKET_VERBS = COMMON_VERBS | PARAM_VERBS


def room_text(room: Any) -> str:
    """How a room appears inside an error text (non-strings as compact JSON)."""
    if isinstance(room, str):
        return room
    return dumps(room).decode("utf-8", "replace")


def say_text(values: Sequence[Any]) -> str:
    """A say message from a verb's remaining arguments: strings as they are,
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


class _NoReply:
    def __repr__(self) -> str:
        return "NO_REPLY"


#: returned by ``quit``/``exit``: nothing is answered, the connection closes
NO_REPLY: Any = _NoReply()
_ABSENT: Any = object()
#: "not given" for :meth:`Verbs.run`'s ``since``
NO_SINCE: Any = _ABSENT


class VerbError(Exception):
    """A verb refused: ``message`` is the reply's ``status``/``error`` text,
    ``data`` (when not None) its ``data``."""

    def __init__(self, message: Any, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class UnknownVerb(Exception):
    """Not a verb of this transport (the socket then runs an action)."""


class Verbs:
    """The verb rules for one node."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.rooms = node.rooms
        self.registry = node.registry
        self.scrub = not node.config.general.disableParamScrubbing

    def run(
        self,
        connection: "Connection",
        verb: str,
        args: Sequence[str],
        allowed: frozenset[str] = SOCKET_VERBS,
        since: Any = _ABSENT,
    ) -> Deferred[Any]:
        """Run ``verb`` with its words; fires the data or fails with
        :class:`VerbError` (or :class:`UnknownVerb` for a verb not ``allowed``).
        ``since`` (roomAdd only): the wire's resume position."""
        return Deferred.fromCoroutine(self._run(connection, verb, args, allowed, since))

    async def _run(
        self, connection: "Connection", verb: str, args: Sequence[str], allowed: frozenset[str], since: Any = _ABSENT
    ) -> Any:
        if verb not in allowed:
            raise UnknownVerb(verb)
        first = args[0] if args else ""
        try:
            if verb == "roomAdd":
                if since is not _ABSENT:
                    return await self.room_resume(connection, first, since)
                return await self.room_add(connection, first)
            if verb == "roomLeave":
                return await self.room_leave(connection, first)
            if verb == "roomView":
                return await self.room_view(connection, first)
            if verb == "say":
                # words were split on single spaces: joining them with single
                # spaces gives back the message with its spacing
                return await self.say(connection, first, " ".join(args[1:]))
            if verb == "detailsView":
                return connection.details()
            if verb == "documentation":
                return self.registry.documentation()
            if verb in ("quit", "exit"):
                connection.destroy()
                return NO_REPLY
            return self._param_verb(connection, verb, args)
        except VerbError:
            raise
        except Exception:
            log.failure("verb {verb} failed for {id}", verb=verb, id=connection.id)
            raise VerbError(errors.INTERNAL_ERROR) from None

    # --- rooms -----------------------------------------------------------------

    async def room_add(self, connection: "Connection", room: Any) -> bool:
        if room is None or room == "":
            raise VerbError(errors.ROOM_REQUIRED, False)
        if not isinstance(room, str):  # a websocket frame may carry any JSON value
            raise VerbError(errors.ROOM_DOES_NOT_EXIST, False)
        try:
            return await self.rooms.add_member(connection.id, room)
        except RoomError as e:
            raise VerbError(e.message, False) from None

    async def room_resume(self, connection: "Connection", room: Any, since: Any) -> dict[str, Any]:
        """roomAdd with ``since``: data ``{"recovered", "offset", "epoch"}``."""
        try:
            position = Since.parse(since)
        except ValueError:
            raise VerbError(errors.BAD_SINCE, False) from None
        if room is None or room == "":
            raise VerbError(errors.ROOM_REQUIRED, False)
        if not isinstance(room, str):
            raise VerbError(errors.ROOM_DOES_NOT_EXIST, False)
        try:
            result: dict[str, Any] = await self.rooms.add_member(connection.id, room, position)
        except RoomError as e:
            raise VerbError(e.message, False) from None
        return result

    async def room_leave(self, connection: "Connection", room: Any) -> bool:
        if not isinstance(room, str):
            raise VerbError(errors.NOT_IN_ROOM.format(room=room_text(room)), False)
        try:
            return await self.rooms.remove_member(connection.id, room)
        except RoomError as e:
            raise VerbError(e.message, False) from None

    async def room_view(self, connection: "Connection", room: Any) -> dict[str, Any]:
        # v18+: only members may look (ActionHero's actionhero-client expects it)
        if not isinstance(room, str) or room not in connection.rooms:
            raise VerbError(errors.NOT_IN_ROOM.format(room=room_text(room)))
        try:
            return await self.rooms.status(room)
        except RoomError as e:
            raise VerbError(e.message) from None

    async def say(self, connection: "Connection", room: Any, message: Any) -> None:
        if not isinstance(room, str) and room and message != "":
            raise VerbError(errors.NOT_IN_ROOM.format(room=room_text(room)))
        try:
            await self.rooms.broadcast(connection, room, message)
        except RoomError as e:
            raise VerbError(e.message) from None
        return None

    # --- sticky params (socket) ------------------------------------------------

    def _param_verb(self, connection: "Connection", verb: str, args: Sequence[str]) -> Any:
        params = connection.params
        if verb == "paramsView":
            return dict(params)
        if verb == "paramsDelete":
            params.clear()
            return None
        key = args[0] if args else ""
        if verb == "paramView":
            return params.get(key)
        if verb == "paramDelete":
            params.pop(key, None)
            return None
        # paramAdd: "key=value" or "key value"; "key=a=b" stores "a" [v17]
        value = args[1] if len(args) > 1 else _ABSENT
        if "=" in key:
            parts = key.split("=")
            key, value = parts[0], parts[1]
        if not self.param_allowed(key):
            raise VerbError(errors.PARAM_NOT_ALLOWED.format(param=key))
        if value is _ABSENT:
            params.pop(key, None)
        else:
            params[key] = value
        return None

    def param_allowed(self, key: str) -> bool:
        """Sticky params hold known param names only (any name without
        scrubbing); ``messageId`` is never sticky."""
        if not key or key == "messageId":
            return False
        return not self.scrub or key in self.registry.post_variables
