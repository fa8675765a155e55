"""One timer wheel for many per-connection timeouts.

Autobahn asks its factory's ``_batched_timer`` for every per-connection
timer (opening-handshake timeout, the next auto-ping, the pong timeout,
the closing-handshake timeout).  txaio's batched timer already groups them
into 200 ms buckets with one reactor call per bucket, but each timer costs a
``_BatchedCall`` plus a closure over the callback's arguments (~0.5 KiB per
idle websocket) and cancelling one is a scan of its bucket's list (with
10,000 websockets opened in the same second, every close scanned thousands
of entries).

:class:`TimerWheel` is the same schedule with less per timer: a slotted
:class:`WheelCall` holding the callback, kept in an insertion-ordered dict
per bucket, so a cancel is one dict removal.  Buckets fire exactly as
txaio's do: at the bucket's time, in chunks of ``chunk_size`` calls spread
over one bucket's width (the ``txaio.IBatchedTimer`` contract:
``call_later(delay, func, *args, **kwargs)`` returns an object with
``cancel()``).
"""

import math
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

log = Logger(namespace="ahtwist.timers")


class WheelCall:
    """One pending call of a :class:`TimerWheel` (``cancel()`` to drop it)."""

    __slots__ = ("wheel", "bucket", "func", "args", "kwargs")

    def __init__(
        self,
        wheel: "TimerWheel | None",
        bucket: int,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
    ) -> None:
        self.wheel = wheel
        self.bucket = bucket
        self.func = func
        self.args = args
        self.kwargs = kwargs

    def cancel(self) -> None:
        wheel = self.wheel
        if wheel is not None:
            self.wheel = None
            wheel._remove(self)

    def __call__(self) -> Any:
        self.wheel = None
        if self.kwargs:
            return self.func(*self.args, **self.kwargs)
        return self.func(*self.args)


class TimerWheel:
    """``call_later`` quantized to ``bucket_ms`` buckets, one reactor call per bucket."""

    def __init__(
        self,
        bucket_ms: int,
        chunk_size: int,
        seconds: Callable[[], float],
        call_later: Callable[..., Any],
    ) -> None:
        if bucket_ms <= 0:
            raise ValueError("bucket_ms must be > 0")
        self.bucket_ms = bucket_ms
        self.chunk_size = chunk_size
        self.seconds = seconds
        self.reactor_call_later = call_later
        #: bucket time (ms) -> (the reactor's delayed call, {WheelCall: None})
        self.buckets: dict[int, tuple[Any, dict[WheelCall, None]]] = {}

    def call_later(
        self, delay: float, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> WheelCall:
        now = self.seconds()
        # the same quantization as txaio's _BatchedTimer
        bucket = int(now + delay) * 1000
        bucket -= bucket % self.bucket_ms
        call = WheelCall(self, bucket, func, args, kwargs or None)
        entry = self.buckets.get(bucket)
        if entry is None:
            delayed = self.reactor_call_later(max(0.0, bucket / 1000.0 - now), self._fire, bucket)
            self.buckets[bucket] = (delayed, {call: None})
        else:
            entry[1][call] = None
        return call

    def _remove(self, call: WheelCall) -> None:
        entry = self.buckets.get(call.bucket)
        if entry is None:
            return
        calls = entry[1]
        calls.pop(call, None)
        if not calls:
            del self.buckets[call.bucket]
            entry[0].cancel()

    def _fire(self, bucket: int) -> None:
        _, calls = self.buckets.pop(bucket)
        pending = list(calls)
        delay_ms = self.bucket_ms / math.ceil(len(pending) / self.chunk_size)
        self._run_chunk(pending, max(0.0, delay_ms))

    def _run_chunk(self, pending: list[WheelCall], delay_ms: float) -> None:
        for call in pending[: self.chunk_size]:
            if call.wheel is None:
                continue  # cancelled after its bucket fired
            try:
                call()
            except Exception:
                log.failure("a timer call failed")
        rest = pending[self.chunk_size :]
        if rest:
            self.reactor_call_later(delay_ms / 1000.0, self._run_chunk, rest, delay_ms)


class DeadlineBucket:
    """The objects of a :class:`Deadlines` due in one whole second."""

    __slots__ = ("second", "call", "members")

    def __init__(self, second: int, call: Any) -> None:
        self.second = second
        #: the reactor's delayed call that fires the bucket
        self.call = call
        self.members: dict[Any, None] = {}


class Deadlines:
    """Many objects' deadlines on whole seconds, one reactor call per second
    that has any due (the socket server's idle timeouts: a ``DelayedCall``
    per connection cost ~0.3 KiB of every idle client).

    :meth:`watch` files an object under the first whole second at or after
    its deadline; when that second comes, ``on_due(obj)`` is called for every
    object filed there (it may :meth:`watch` it again for a later deadline).
    A deadline is therefore met up to one second late, never early.

    A watched object carries its bucket in its ``deadline_bucket`` attribute
    (None when it is not watched; one :class:`Deadlines` per object): all a
    deadline costs the object is that attribute and its bucket's dict entry.
    """

    def __init__(self, clock: Any, on_due: Callable[[Any], None]) -> None:
        self.clock = clock
        self.on_due = on_due
        #: second -> its bucket
        self.buckets: dict[int, DeadlineBucket] = {}

    def watch(self, obj: Any, deadline: float) -> None:
        self.forget(obj)
        second = math.ceil(deadline)
        bucket = self.buckets.get(second)
        if bucket is None:
            delay = max(0.0, second - self.clock.seconds())
            bucket = DeadlineBucket(second, self.clock.callLater(delay, self._fire, second))
            self.buckets[second] = bucket
        bucket.members[obj] = None
        obj.deadline_bucket = bucket

    def forget(self, obj: Any) -> None:
        bucket = obj.deadline_bucket
        if bucket is None:
            return
        obj.deadline_bucket = None
        members = bucket.members
        del members[obj]
        if not members:
            del self.buckets[bucket.second]
            bucket.call.cancel()

    def __contains__(self, obj: Any) -> bool:
        return obj.deadline_bucket is not None

    def _fire(self, second: int) -> None:
        members = self.buckets.pop(second).members
        for obj in members:
            obj.deadline_bucket = None
        for obj in members:
            try:
                self.on_due(obj)
            except Exception:
                log.failure("a deadline handler failed")
