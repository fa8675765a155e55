"""Run a coroutine now; only pay for Twisted's coroutine driver if it waits.

Most actions, middleware and room operations finish without waiting for
anything.  ``Deferred.fromCoroutine`` would still set up its generic driver
for each one; :func:`start` steps the coroutine once right here and, when it
is already finished, returns an already-fired Deferred.  A coroutine that is
waiting on a Deferred is handed to Twisted's driver from that point on, so
the semantics are the same either way.
"""

from collections.abc import Coroutine
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail, succeed

T = TypeVar("T")


def start(coro: Coroutine[Any, Any, T]) -> Deferred[T]:
    """A Deferred for ``coro``'s result (already fired if it did not wait)."""
    try:
        waiting_on = coro.send(None)
    except StopIteration as stop:
        return succeed(stop.value)
    except BaseException:
        return fail()
    return Deferred.fromCoroutine(_resume(coro, waiting_on))


async def _resume(coro: Coroutine[Any, Any, T], waiting_on: Any) -> T:
    """Keep driving ``coro`` (currently waiting on ``waiting_on``) under Twisted."""
    while True:
        try:
            result = await waiting_on
        except BaseException as e:
            try:
                waiting_on = coro.throw(e)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                waiting_on = coro.send(result)
            except StopIteration as stop:
                return stop.value
