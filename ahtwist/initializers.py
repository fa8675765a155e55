"""Initializers: an application's start-up and shut-down code (ActionHero's initializers).

An :class:`Initializer` subclass in a folder of ``general.paths.initializers``
opens what the app needs -- a database pool, a client, a cache warm-up -- and
closes it again.  Its hooks may be plain functions, ``async def`` or return a
Deferred:

* ``initialize(node)`` -- all of them, by ``load_priority``;
* ``start(node)`` -- then all of them, by ``start_priority``; the listeners
  open only after every ``start`` finished, and a failure stops start-up with
  one line naming the initializer and a non-zero exit;
* ``stop(node)`` -- on SIGTERM, *after* the listeners closed and in-flight
  work drained, by ``stop_priority`` (the reverse of start order where
  priorities tie); a failing ``stop`` is logged and the others still run.

Lower priorities run first (default 1000, as in ActionHero).  App objects go
on ``node.app`` (``node.app.db = pool``), where actions (``data.node.app``),
middleware and servers reach them; ``node.registry.add_post_variables(...)``
is ActionHero's ``api.params.postVariables``.
"""

from collections.abc import Iterable
from inspect import isawaitable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger

from ahtwist.actions.loader import defined_in, user_modules
from ahtwist.errors import ConfigError

log = Logger(namespace="ahtwist.initializers")


class Initializer:
    """Base class of initializers; override the hooks you need."""

    #: unique name, shown in the start-up list and in failure lines
    name: str = ""
    load_priority: int = 1000
    start_priority: int = 1000
    stop_priority: int = 1000

    def initialize(self, node: Any) -> Any:
        """Prepare (all initializers, before any ``start``)."""

    def start(self, node: Any) -> Any:
        """Open resources; the listeners wait for it."""

    def stop(self, node: Any) -> Any:
        """Close resources, after the last request finished."""


class InitializerFailed(Exception):
    """An initializer hook failed during start-up."""

    def __init__(self, name: str, hook: str, error: BaseException) -> None:
        super().__init__(f"initializer {name!r} failed in {hook}: {type(error).__name__}: {error}")
        self.name = name
        self.hook = hook
        self.error = error


@attrs.define
class FoundInitializers:
    initializers: list[Initializer] = attrs.Factory(list)
    missing_folders: list[str] = attrs.Factory(list)


def load_initializers(folders: Iterable[str]) -> FoundInitializers:
    """Import every ``*.py`` of ``folders`` (sorted, skipping ``_``/``.``
    names) and instantiate the Initializer subclasses each one defines."""
    found = FoundInitializers()
    names: set[str] = set()
    for file, module in user_modules(folders, found.missing_folders):
        for cls in defined_in(module, Initializer):
            initializer = cls()
            check_initializer(initializer, names, file)
            found.initializers.append(initializer)
    return found


def check_initializer(initializer: Initializer, names: set[str], where: Any = "") -> None:
    """A name, integer priorities, no duplicate names (start-up errors)."""
    prefix = f"{where}: " if where else ""
    if not isinstance(initializer.name, str) or not initializer.name:
        raise ConfigError(f"{prefix}initializer {type(initializer).__name__} has no name")
    for attr in ("load_priority", "start_priority", "stop_priority"):
        value = getattr(initializer, attr)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{prefix}initializer {initializer.name!r}: {attr} must be an integer")
    if initializer.name in names:
        raise ConfigError(f"{prefix}initializer {initializer.name!r} is defined twice")
    names.add(initializer.name)


async def _call(initializer: Initializer, hook: str, node: Any) -> None:
    result = getattr(initializer, hook)(node)
    if isinstance(result, Deferred):
        await result
    elif result is not None and isawaitable(result):
        await result


class Initializers:
    """The initializers of one node, run in their orders."""

    def __init__(self, node: Any, initializers: Iterable[Initializer] = ()) -> None:
        self.node = node
        self.all: list[Initializer] = []
        self._names: set[str] = set()
        for initializer in initializers:
            self.add(initializer)
        #: those whose ``start`` finished, in start order
        self.started: list[Initializer] = []

    def add(self, initializer: Initializer | type[Initializer]) -> None:
        if isinstance(initializer, type):
            initializer = initializer()
        check_initializer(initializer, self._names)
        self.all.append(initializer)

    def by(self, priority: str) -> list[Initializer]:
        """Sorted by a priority attribute (stable: load order breaks ties)."""
        return sorted(self.all, key=lambda i: getattr(i, priority))

    def start(self) -> Deferred[None]:
        """``initialize`` all, then ``start`` all; fails with
        :class:`InitializerFailed` at the first failure."""
        return ensureDeferred(self._start())

    async def _start(self) -> None:
        for initializer in self.by("load_priority"):
            await self._run(initializer, "initialize")
        for initializer in self.by("start_priority"):
            await self._run(initializer, "start")
            self.started.append(initializer)

    async def _run(self, initializer: Initializer, hook: str) -> None:
        try:
            await _call(initializer, hook, self.node)
        except Exception as e:
            raise InitializerFailed(initializer.name, hook, e) from e

    def stop_order(self) -> list[Initializer]:
        """The started ones by ``stop_priority``; ties stop in reverse start order."""
        position = {id(i): n for n, i in enumerate(self.started)}
        return sorted(self.started, key=lambda i: (i.stop_priority, -position[id(i)]))

    def stop(self) -> Deferred[None]:
        """``stop`` every started initializer (failures are logged, not fatal)."""
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        for initializer in self.stop_order():
            try:
                await _call(initializer, "stop", self.node)
            except Exception:
                log.failure("initializer {name} failed to stop", name=initializer.name)
        self.started = []
