"""Run a coroutine now; only pay for Twisted's coroutine driver if it waits.

Most actions, middleware and room operations finish without waiting for
anything.  ``Deferred.fromCoroutine`` would still set up its generic driver
for each one; :func:`run_now` steps the coroutine once right here and, when it
is already finished, returns its value.  A coroutine that is waiting on a
Deferred is handed to Twisted's driver from that point on, forwarding sends,
throws and closes exactly as ``yield from`` would, so the semantics are the
same either way.
"""

from collections.abc import Awaitable, Coroutine, Generator
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail, succeed

T = TypeVar("T")


def run_now(coro: Coroutine[Any, Any, T]) -> "T | Deferred[T]":
    """``coro``'s value if it finished without waiting, else a Deferred for it
    (a coroutine that raised at once gives a failed Deferred)."""
    try:
        waiting_on = coro.send(None)
    except StopIteration as stop:
        return stop.value
    except BaseException:
        return fail()
    return Deferred.fromCoroutine(_Resume(coro, waiting_on).wait())


def first_step(coro: Coroutine[Any, Any, Any]) -> "Awaitable[Any] | None":
    """Run ``coro`` until it first waits: None when it finished without
    waiting (its value is dropped; what it raised is raised here), else an
    awaitable that continues it (await it as you would have awaited ``coro``)."""
    try:
        waiting_on = coro.send(None)
    except StopIteration:
        return None
    return _Resume(coro, waiting_on)


def start(coro: Coroutine[Any, Any, T]) -> "Deferred[T]":
    """A Deferred for ``coro``'s result (already fired if it did not wait)."""
    result = run_now(coro)
    return result if isinstance(result, Deferred) else succeed(result)


class _Resume:
    """An awaitable continuing a coroutine that already ran its first step."""

    __slots__ = ("coro", "waiting_on")

    def __init__(self, coro: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self.coro = coro
        self.waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, Any]:
        return (yield from _delegate(self.coro, self.waiting_on))

    async def wait(self) -> Any:
        return await self


def _delegate(coro: Coroutine[Any, Any, Any], waiting_on: Any) -> Generator[Any, Any, Any]:
    while True:
        try:
            value = yield waiting_on
        except GeneratorExit:  # closed (garbage collected): close it too
            coro.close()
            raise
        except BaseException as e:  # thrown in by the driver: pass it down
            try:
                waiting_on = coro.throw(e)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                waiting_on = coro.send(value)
            except StopIteration as stop:
                return stop.value
