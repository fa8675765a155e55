"""Middleware definitions: action, connection and chat middleware.

Subclass one of these and override the hooks you need; hooks may return a
Deferred or be ``async def``.  Hooks run in ascending ``priority`` (default
``general.defaultMiddlewarePriority``); equal priorities keep registration
order.  Raise :class:`ahtwist.ActionError` from an action or chat hook to
refuse with that text.
"""

from collections.abc import Iterable
from typing import Any, ClassVar, TypeVar

from ahtwist.errors import MIDDLEWARE_NAME_REQUIRED, ConfigError


class _Middleware:
    name: ClassVar[str | None] = None
    priority: ClassVar[int | None] = None

    def effective_priority(self, default: int) -> int:
        return default if self.priority is None else self.priority


class ActionMiddleware(_Middleware):
    """Runs around actions: ``pre_processor(data)`` and ``post_processor(data)``.

    ``is_global = True`` applies it to every action; otherwise an action opts
    in by listing its name in ``Action.middleware``.
    """

    is_global: ClassVar[bool] = False
    pre_processor: Any = None
    post_processor: Any = None


class ConnectionMiddleware(_Middleware):
    """``create(connection)`` / ``destroy(connection)`` for every connection.

    Exceptions are logged and ignored.
    """

    create: Any = None
    destroy: Any = None


class ChatMiddleware(_Middleware):
    """Chat room hooks (docs/python-api.md, 'Middleware').

    ``join(connection, room)`` / ``leave(connection, room)`` may veto by
    raising; ``on_say_receive(connection, room, payload)`` runs once per say and
    may return a changed payload or veto; ``say(connection, room, payload)``
    runs per recipient and may return a changed payload or veto delivery to
    that recipient.
    """

    join: Any = None
    leave: Any = None
    on_say_receive: Any = None
    say: Any = None


M = TypeVar("M", bound=_Middleware)


def check_middleware(middleware: _Middleware) -> str:
    """The middleware's name; a middleware without one is refused."""
    name = getattr(middleware, "name", None)
    if not name:
        raise ConfigError(MIDDLEWARE_NAME_REQUIRED)
    return name


def by_priority(items: Iterable[M], default: int) -> list[M]:
    """Stable sort by priority (registration order breaks ties)."""
    return sorted(items, key=lambda m: m.effective_priority(default))
