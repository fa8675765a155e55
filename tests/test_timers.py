"""The timer wheel Autobahn's per-connection timers run on (ahtwist/timers.py)."""

from twisted.internet.task import Clock

from ahtwist.timers import TimerWheel


def wheel(chunk_size: int = 1000) -> tuple[Clock, TimerWheel]:
    clock = Clock()
    return clock, TimerWheel(200, chunk_size, clock.seconds, clock.callLater)


def test_calls_in_one_bucket_share_one_reactor_call_and_fire_in_order():
    clock, timers = wheel()
    clock.advance(10.3)
    fired: list[object] = []
    timers.call_later(5, fired.append, "a")
    timers.call_later(5.5, fired.append, "b")
    timers.call_later(5, lambda **kw: fired.append(kw), x=1)
    # txaio's quantization: whole seconds of now + delay, then 200 ms buckets
    assert [call.getTime() for call in clock.getDelayedCalls()] == [15.0]
    clock.advance(4.6)
    assert fired == []
    clock.advance(0.1)
    assert fired == ["a", "b", {"x": 1}]
    assert clock.getDelayedCalls() == []


def test_a_cancelled_call_never_fires_and_an_empty_bucket_cancels_its_reactor_call():
    clock, timers = wheel()
    fired: list[str] = []
    first = timers.call_later(3, fired.append, "first")
    second = timers.call_later(3, fired.append, "second")
    first.cancel()
    first.cancel()  # twice is harmless
    clock.advance(3)
    assert fired == ["second"]
    second.cancel()  # after it fired: nothing happens
    lone = timers.call_later(7, fired.append, "lone")
    lone.cancel()
    assert clock.getDelayedCalls() == []
    assert timers.buckets == {}


def test_a_big_bucket_runs_in_chunks_spread_over_one_bucket():
    clock, timers = wheel(chunk_size=2)
    fired: list[int] = []
    calls = [timers.call_later(1, fired.append, n) for n in range(5)]
    clock.advance(1)
    assert fired == [0, 1]
    calls[3].cancel()  # cancelled after its bucket fired, before its chunk ran
    clock.advance(0.2 / 3)
    assert fired == [0, 1, 2]
    clock.advance(0.2 / 3)
    assert fired == [0, 1, 2, 4]


def test_a_failing_call_is_logged_and_the_others_still_run():
    clock, timers = wheel()
    fired: list[str] = []

    def boom() -> None:
        raise ValueError("boom")

    timers.call_later(1, boom)
    timers.call_later(1, fired.append, "after")
    clock.advance(1)
    assert fired == ["after"]


class Watched:
    """An object a Deadlines watches (it carries its bucket)."""

    deadline_bucket = None

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def test_deadlines_are_met_on_the_next_whole_second_and_share_a_reactor_call():
    from ahtwist.timers import Deadlines

    clock = Clock()
    due: list[str] = []
    deadlines = Deadlines(clock, lambda obj: due.append(obj.name))
    a, b, c = Watched("a"), Watched("b"), Watched("c")
    clock.advance(0.25)
    deadlines.watch(a, 3.1)
    deadlines.watch(b, 3.9)
    deadlines.watch(c, 5.0)
    assert sorted(call.getTime() for call in clock.getDelayedCalls()) == [4.0, 5.0]
    assert a in deadlines
    assert a.deadline_bucket is b.deadline_bucket  # one bucket for the second 4
    clock.advance(3.74)  # 3.99
    assert due == []
    clock.advance(0.01)
    assert due == ["a", "b"]
    assert a not in deadlines and a.deadline_bucket is None
    deadlines.watch(c, 7)  # a new deadline replaces the old one
    clock.advance(1)
    assert due == ["a", "b"]
    deadlines.forget(c)
    deadlines.forget(c)  # forgetting twice is harmless
    assert clock.getDelayedCalls() == []
    assert deadlines.buckets == {} and c.deadline_bucket is None


def test_a_deadline_handler_may_watch_again_and_a_failing_one_does_not_stop_the_others():
    from ahtwist.timers import Deadlines

    clock = Clock()
    due: list[str] = []
    a, b, c = Watched("a"), Watched("b"), Watched("c")

    def on_due(obj: Watched) -> None:
        due.append(obj.name)
        if obj is a:
            raise ValueError("boom")
        if obj is b and len(due) < 3:
            deadlines.watch(b, clock.seconds() + 2)

    deadlines = Deadlines(clock, on_due)
    for obj in (a, b, c):
        deadlines.watch(obj, 1)
    clock.advance(1)
    assert due == ["a", "b", "c"]
    assert list(deadlines.buckets) == [3] and b in deadlines and c not in deadlines
    clock.advance(2)
    assert due == ["a", "b", "c", "b"]
    assert deadlines.buckets == {} and clock.getDelayedCalls() == []
