"""Room history and resume in the core (docs/architecture.md, 'Room history
and resume'): offsets, epochs, bounds, and a resuming member getting what it
missed, then live messages, in order, each once.

The in-memory history runs on a ManualClock; connections use the recording
transport of tests/test_rooms.py.
"""

from typing import Any

from zope.interface.verify import verifyObject

from ahtwist import ChatMiddleware
from ahtwist.backends.history import ENTRY_OVERHEAD, HistoryLimits, MemoryRoomHistory, message_size
from ahtwist.backends.interfaces import IRoomHistory
from ahtwist.backends.memory import MemoryBus
from ahtwist.resume import Since
from ahtwist.testing import ManualClock
from tests.helpers import make_node
from tests.test_rooms import join, msgs, result

T0 = 1795627006000


def history(max_messages: int = 100, max_age: int = 300, total: int = 1 << 20) -> tuple[MemoryRoomHistory, list[Any]]:
    clock = ManualClock()
    bus = MemoryBus(clock)
    events: list[Any] = []
    bus.subscribe(events.append)
    h = MemoryRoomHistory(bus, clock, HistoryLimits(max_messages, max_age), total)
    return h, events


def say(h: MemoryRoomHistory, room: str, text: str) -> tuple[int, str]:
    return result(h.publish_say(room, {"message": text, "room": room}))


def texts(messages: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, str]]:
    return [(offset, payload["message"]) for offset, payload in messages]


def test_provides_the_interface():
    h, _ = history()
    verifyObject(IRoomHistory, h)
    verifyObject(IRoomHistory, make_node().rooms.history)


def test_offsets_count_from_one_and_the_event_carries_them():
    h, events = history()
    epoch = result(h.create("r"))
    assert result(h.position("r")) == (0, epoch)
    assert say(h, "r", "a") == (1, epoch)
    assert say(h, "r", "b") == (2, epoch)
    h.clock.advance(0)
    assert events == [
        {"type": "say", "room": "r", "payload": {"message": "a", "room": "r"}, "offset": 1, "epoch": epoch},
        {"type": "say", "room": "r", "payload": {"message": "b", "room": "r"}, "offset": 2, "epoch": epoch},
    ]
    assert result(h.position("r")) == (2, epoch)


def test_since_returns_what_was_missed():
    h, _ = history()
    epoch = result(h.create("r"))
    for text in "abcde":
        say(h, "r", text)
    recovered, messages, position, current = result(h.since("r", 2, epoch))
    assert (recovered, texts(messages), position, current) == (True, [(3, "c"), (4, "d"), (5, "e")], 5, epoch)
    assert result(h.since("r", 5, epoch)) == (True, [], 5, epoch)
    assert result(h.since("r", 0, epoch))[0:2] == (True, [(n, {"message": t, "room": "r"}) for n, t in enumerate("abcde", 1)])
    assert result(h.since("r", None, None)) == (True, [], 5, epoch)


def test_since_another_epoch_or_the_future_is_not_recovered():
    h, _ = history()
    epoch = result(h.create("r"))
    say(h, "r", "a")
    assert result(h.since("r", 0, "other")) == (False, [], 1, epoch)
    assert result(h.since("r", 7, epoch)) == (False, [], 1, epoch)


def test_a_recreated_room_gets_a_new_epoch_and_starts_again():
    h, _ = history()
    first = result(h.create("r"))
    say(h, "r", "a")
    result(h.destroy("r"))
    second = result(h.create("r"))
    assert second != first
    assert result(h.position("r")) == (0, second)
    assert result(h.since("r", 1, first)) == (False, [], 0, second)
    assert h.stored() == 0 and h.total_bytes == 0


def test_a_room_never_created_gets_state_on_first_use():
    h, _ = history()
    offset, epoch = say(h, "r", "a")
    assert offset == 1 and len(epoch) == 16
    assert result(h.position("r")) == (1, epoch)


def test_max_messages_keeps_the_last_n_and_a_resume_before_them_is_partial():
    h, _ = history(max_messages=3)
    epoch = result(h.create("r"))
    for text in "abcdef":
        say(h, "r", text)
    assert h.stored() == 3
    recovered, messages, position, _ = result(h.since("r", 1, epoch))
    assert (recovered, texts(messages), position) == (False, [(4, "d"), (5, "e"), (6, "f")], 6)
    recovered, messages, _, _ = result(h.since("r", 3, epoch))
    assert (recovered, texts(messages)) == (True, [(4, "d"), (5, "e"), (6, "f")])


def test_max_age_drops_old_messages():
    h, _ = history(max_age=10)
    epoch = result(h.create("r"))
    say(h, "r", "old")
    h.clock.advance(6)
    say(h, "r", "new")
    h.clock.advance(5)
    recovered, messages, _, _ = result(h.since("r", 0, epoch))
    assert (recovered, texts(messages)) == (False, [(2, "new")])
    assert h.stored() == 1


def test_zero_keeps_nothing_but_counts_offsets():
    h, _ = history(max_messages=0)
    epoch = result(h.create("r"))
    say(h, "r", "a")
    assert h.stored() == 0
    assert result(h.since("r", 0, epoch)) == (False, [], 1, epoch)
    assert result(h.since("r", 1, epoch)) == (True, [], 1, epoch)


def test_per_room_override_at_creation():
    h, _ = history(max_messages=2)
    epoch = result(h.create("big", max_messages=5, max_age=0))
    result(h.create("off", max_messages=0))
    for text in "abcdef":
        say(h, "big", text)
        say(h, "off", text)
    h.clock.advance(10_000)
    recovered, messages, _, _ = result(h.since("big", 1, epoch))
    assert (recovered, [t for _, t in texts(messages)]) == (True, list("bcdef"))
    assert h.stored() == 5


def test_total_bytes_evicts_the_oldest_messages_of_any_room():
    size = message_size("r1", {"message": "x" * 100})
    assert size == ENTRY_OVERHEAD + 2 + 100
    h, _ = history(total=3 * size)
    e1 = result(h.create("r1"))
    e2 = result(h.create("r2"))
    say(h, "r1", "x" * 100)  # oldest overall
    say(h, "r2", "y" * 100)
    say(h, "r1", "z" * 100)
    say(h, "r2", "w" * 100)  # one too many: r1's first goes
    assert h.total_bytes == 3 * size
    assert result(h.since("r1", 0, e1))[0:2] == (False, [(2, {"message": "z" * 100, "room": "r1"})])
    assert texts(result(h.since("r2", 0, e2))[1]) == [(1, "y" * 100), (2, "w" * 100)]


def test_total_bytes_bookkeeping_stays_bounded():
    """The order records of messages dropped by a room's own limit do not pile up."""
    h, _ = history(max_messages=1)
    for n in range(10_000):
        say(h, "r", str(n))
    assert h.stored() == 1
    assert len(h._order) < 200


# --- resume through the RoomService ------------------------------------------------------


def node_and_members(n: int = 2):
    node = make_node()
    members = join(node, n)
    return node, members


def resume(node, connection, room: str, since: Since) -> dict[str, Any]:
    return result(node.rooms.add_member(connection.id, room, since))


def test_plain_members_get_todays_message_and_resuming_ones_get_offsets():
    node, (plain, tracked) = node_and_members()
    result(node.rooms.add_member(plain.id, "defaultRoom"))
    joined = resume(node, tracked, "defaultRoom", Since())
    epoch = joined["epoch"]
    assert joined == {"recovered": True, "offset": 0, "epoch": epoch}
    result(node.rooms.broadcast(plain, "defaultRoom", "hi"))
    node.reactor.advance(0)
    base = {"message": "hi", "room": "defaultRoom", "from": plain.id, "context": "user", "sentAt": T0}
    assert msgs(plain) == [base]
    assert msgs(tracked) == [{**base, "offset": 1, "epoch": epoch}]


def test_resume_delivers_the_missed_then_live_in_order_without_duplicates():
    node, (speaker, listener) = node_and_members()
    rooms = node.rooms
    result(rooms.add_member(speaker.id, "defaultRoom"))
    epoch = resume(node, listener, "defaultRoom", Since())["epoch"]
    result(rooms.broadcast(speaker, "defaultRoom", "m1"))
    node.reactor.advance(0)
    assert [m["offset"] for m in msgs(listener)] == [1]
    result(rooms.remove_member(listener.id, "defaultRoom"))  # "disconnected"
    for n in range(2, 6):
        result(rooms.broadcast(speaker, "defaultRoom", f"m{n}"))
    # m2..m5 are said and their events are still queued when it comes back
    joined = resume(node, listener, "defaultRoom", Since(1, epoch))
    assert joined == {"recovered": True, "offset": 5, "epoch": epoch}
    result(rooms.broadcast(speaker, "defaultRoom", "m6"))
    assert msgs(listener) == []  # nothing before the reply went out
    node.reactor.advance(0)
    got = msgs(listener)
    assert [(m["offset"], m["message"]) for m in got] == [(n, f"m{n}") for n in range(2, 7)]
    assert all(m["epoch"] == epoch and m["context"] == "user" for m in got)
    result(rooms.broadcast(speaker, "defaultRoom", "m7"))
    node.reactor.advance(0)
    assert [m["offset"] for m in msgs(listener)] == [7]
    assert (rooms.resumes.resume_hits, rooms.resumes.resume_misses) == (1, 0)


def test_live_says_during_a_slow_history_read_are_held_and_deduplicated():
    """A history that answers later (as Redis does): live events arriving in
    the meantime, some of them also in the answer, are delivered once, after
    the missed ones."""
    from twisted.internet.defer import Deferred

    node, (speaker, listener) = node_and_members()
    rooms = node.rooms
    memory = rooms.history
    pending: list[Deferred] = []

    class SlowHistory:
        def __getattr__(self, name):
            return getattr(memory, name)

        def since(self, room, offset, epoch):
            d: Deferred = Deferred()
            pending.append((d, room, offset, epoch))
            return d

    rooms.resumes.history = SlowHistory()
    result(rooms.add_member(speaker.id, "defaultRoom"))
    _, epoch = result(memory.position("defaultRoom"))
    for n in range(1, 4):
        result(rooms.broadcast(speaker, "defaultRoom", f"m{n}"))
    joining = rooms.add_member(listener.id, "defaultRoom", Since(1, epoch))
    node.reactor.advance(0)  # m1..m3 events reach the node while the read waits
    result(rooms.broadcast(speaker, "defaultRoom", "m4"))
    node.reactor.advance(0)
    assert msgs(listener) == []
    d, room, offset, since_epoch = pending.pop()
    d.callback(result(memory.since(room, offset, since_epoch)))  # answers up to m4
    assert result(joining) == {"recovered": True, "offset": 4, "epoch": epoch}
    result(rooms.broadcast(speaker, "defaultRoom", "m5"))
    node.reactor.advance(0)
    got = [(m["offset"], m["message"]) for m in msgs(listener)]
    assert got == [(2, "m2"), (3, "m3"), (4, "m4"), (5, "m5")]


def test_resume_of_a_lost_epoch_is_not_recovered_and_gets_all_of_the_new_one():
    """The room's history was lost (re-created, a restart): recovered false,
    and everything of the current epoch is new to the member."""
    node, (speaker, listener) = node_and_members()
    rooms = node.rooms
    result(rooms.add_member(speaker.id, "defaultRoom"))
    result(rooms.broadcast(speaker, "defaultRoom", "before"))
    joined = resume(node, listener, "defaultRoom", Since(7, "gone"))
    assert joined["recovered"] is False and joined["offset"] == 1
    result(rooms.broadcast(speaker, "defaultRoom", "after"))
    node.reactor.advance(0)
    assert [(m["offset"], m["message"]) for m in msgs(listener)] == [(1, "before"), (2, "after")]
    assert (rooms.resumes.resume_hits, rooms.resumes.resume_misses) == (0, 1)


def test_resume_observers_see_every_resume_that_named_an_offset():
    node, (speaker, listener) = node_and_members()
    rooms = node.rooms
    seen: list[Any] = []
    rooms.resumes.observers.append(lambda *args: seen.append(args))
    result(rooms.add_member(speaker.id, "defaultRoom"))
    epoch = resume(node, listener, "otherRoom", Since())["epoch"]
    result(rooms.broadcast(speaker, "defaultRoom", "x"))
    result(rooms.broadcast(speaker, "defaultRoom", "y"))
    _, room_epoch = result(rooms.history.position("defaultRoom"))
    resume(node, listener, "defaultRoom", Since(0, room_epoch))
    assert seen == [("defaultRoom", True, 2)]
    assert epoch != room_epoch


def test_say_middleware_runs_on_missed_messages_and_offsets_are_kept():
    class Shout(ChatMiddleware):
        name = "shout"

        def say(self, connection, room, payload):
            return {**payload, "message": payload["message"].upper()}

    node, (speaker, listener) = node_and_members()
    node.rooms.add_middleware(Shout)
    rooms = node.rooms
    result(rooms.add_member(speaker.id, "defaultRoom"))
    _, epoch = result(rooms.history.position("defaultRoom"))
    result(rooms.broadcast(speaker, "defaultRoom", "a"))
    resume(node, listener, "defaultRoom", Since(0, epoch))
    result(rooms.broadcast(speaker, "defaultRoom", "b"))
    node.reactor.advance(0)
    node.reactor.advance(0)
    got = [(m["offset"], m["message"], m["epoch"]) for m in msgs(listener)]
    assert got == [(1, "A", epoch), (2, "B", epoch)]
    assert [(m["message"], "offset" in m) for m in msgs(speaker)] == [("A", False), ("B", False)]


def test_a_member_that_leaves_while_catching_up_gets_nothing_more():
    node, (speaker, listener) = node_and_members()
    rooms = node.rooms
    result(rooms.add_member(speaker.id, "defaultRoom"))
    _, epoch = result(rooms.history.position("defaultRoom"))
    result(rooms.broadcast(speaker, "defaultRoom", "a"))
    resume(node, listener, "defaultRoom", Since(0, epoch))
    result(rooms.remove_member(listener.id, "defaultRoom"))
    node.reactor.advance(0)
    assert msgs(listener) == []
    assert rooms.resumes.tracked == {}


def test_room_created_with_its_own_history_size():
    node, (speaker, listener) = node_and_members()
    rooms = node.rooms
    result(rooms.add("big", history_messages=1000))
    result(rooms.add_member(speaker.id, "big"))
    _, epoch = result(rooms.history.position("big"))
    for n in range(500):
        result(rooms.broadcast(speaker, "big", str(n)))
    assert resume(node, listener, "big", Since(0, epoch))["recovered"] is True
    node.reactor.advance(0)
    assert [m["offset"] for m in msgs(listener)] == list(range(1, 501))


def test_history_ahead_of_the_bus_gives_no_duplicate():
    """With a bus that lags behind the history (Redis pub/sub after the
    script ran), a member that caught up from the history is ahead of the
    room's other members: it is deduplicated on its own until they meet,
    then shares the room's one check."""
    node, (speaker, early, late) = node_and_members(3)
    rooms = node.rooms
    history = rooms.history
    queued: list[dict[str, Any]] = []

    class LaggyBus:
        def publish(self, event):
            queued.append(event)

    def release():
        while queued:
            rooms._on_event(queued.pop(0))
        node.reactor.advance(0)

    history.bus = LaggyBus()
    result(rooms.add_member(speaker.id, "defaultRoom"))
    epoch = resume(node, early, "defaultRoom", Since())["epoch"]
    node.reactor.advance(0)
    assert rooms.resumes.caught_up["defaultRoom"] == {early.id: early}
    result(rooms.broadcast(speaker, "defaultRoom", "m1"))
    result(rooms.broadcast(speaker, "defaultRoom", "m2"))
    assert resume(node, late, "defaultRoom", Since(0, epoch)) == {"recovered": True, "offset": 2, "epoch": epoch}
    node.reactor.advance(0)
    assert [m["offset"] for m in msgs(late)] == [1, 2]
    assert late.id not in rooms.resumes.caught_up["defaultRoom"]
    release()
    assert late.id in rooms.resumes.caught_up["defaultRoom"]
    result(rooms.broadcast(speaker, "defaultRoom", "m3"))
    release()
    assert [m["offset"] for m in msgs(early)] == [1, 2, 3]
    assert [m["offset"] for m in msgs(late)] == [3]
    assert [m["message"] for m in msgs(speaker)] == ["m1", "m2", "m3"]


def test_a_duplicate_event_reaches_no_caught_up_member():
    node, (speaker, listener) = node_and_members()
    rooms = node.rooms
    events: list[dict[str, Any]] = []
    result(rooms.add_member(speaker.id, "defaultRoom"))
    resume(node, listener, "defaultRoom", Since())
    node.reactor.advance(0)
    rooms.bus.subscribe(events.append)
    result(rooms.broadcast(speaker, "defaultRoom", "once"))
    node.reactor.advance(0)
    rooms._on_event(events[-1])  # delivered again (a replay)
    node.reactor.advance(0)
    assert [m["message"] for m in msgs(listener)] == ["once"]
    assert [m["message"] for m in msgs(speaker)] == ["once", "once"]  # no offsets: no dedupe
