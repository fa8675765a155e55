"""The RoomService and chat middleware (docs/python-api.md, 'The node: rooms, cache, stats, other nodes' and 'Middleware'), transport-neutral.

Connections here use a recording transport, so these tests exercise only the
core: errors, payloads, ordering, middleware, destroy, leave-on-disconnect.
"""

from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import implementer
from zope.interface.verify import verifyObject

from ahtwist import ActionError, ChatMiddleware
from ahtwist.backends.interfaces import IRoomBackend
from ahtwist.connection import Connection, IConnection, IConnectionTransport
from ahtwist.errors import ConfigError, RoomError
from tests.helpers import make_node

T0 = 1795627006000


@implementer(IConnectionTransport)
class Recorder:
    """Collects what the core pushes to one client."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.closed = False
        self.connection: Connection | None = None

    def send_message(self, message):
        self.messages.append(message)

    def send_file(self, path):
        self.messages.append({"file": path})

    def close(self):
        self.closed = True
        self.connection.node.destroy_connection(self.connection)

    def take(self) -> list[dict[str, Any]]:
        out, self.messages = self.messages, []
        return out


def join(node, n: int = 1, type: str = "socket") -> list[Connection]:
    out = []
    for i in range(n):
        recorder = Recorder()
        connection = Connection(type, "127.0.0.1", 40000 + i, node.now_ms(), transport=recorder)
        recorder.connection = connection
        node.add_connection(connection)
        out.append(connection)
    return out


def result(d: Deferred) -> Any:
    """The already-fired result of ``d`` (raising its failure)."""
    box: list[Any] = []
    d.addBoth(box.append)
    assert box, "Deferred has not fired"
    if isinstance(box[0], Failure):
        box[0].raiseException()
    return box[0]


def failure_text(d: Deferred) -> str:
    with pytest.raises(RoomError) as info:
        result(d)
    return info.value.message


def msgs(connection: Connection) -> list[dict[str, Any]]:
    return connection.transport.take()


def test_interfaces():
    node = make_node()
    verifyObject(IRoomBackend, node.rooms.backend)
    (connection,) = join(node)
    verifyObject(IConnection, connection)
    from ahtwist.socket import SocketFactory, SocketProtocol

    verifyObject(IConnectionTransport, SocketProtocol(SocketFactory(node)))


def test_starting_rooms_default_and_configured():
    assert result(make_node().rooms.list()) == ["defaultRoom", "otherRoom"]
    node = make_node("[general]\nstartingChatRooms = ['lobby', 'games']\n")
    assert result(node.rooms.list()) == ["games", "lobby"]
    node = make_node("[general.startingChatRooms]\nonly = {}\n")
    assert result(node.rooms.list()) == ["only"]


def test_add_exists_list():
    rooms = make_node().rooms
    assert result(rooms.add("newRoom")) == 1
    assert failure_text(rooms.add("newRoom")) == "room exists"
    assert failure_text(rooms.add("defaultRoom")) == "room exists"
    assert result(rooms.exists("newRoom")) is True
    assert result(rooms.exists("NEWROOM")) is False  # case-sensitive
    assert result(rooms.list()) == ["defaultRoom", "newRoom", "otherRoom"]


def test_status_and_its_errors():
    node = make_node()
    a, b = join(node, 2)
    result(node.rooms.add_member(a.id, "defaultRoom"))
    node.reactor.advance(2)
    result(node.rooms.add_member(b.id, "defaultRoom"))
    status = result(node.rooms.status("defaultRoom"))
    assert status == {
        "room": "defaultRoom",
        "members": {a.id: {"id": a.id, "joinedAt": T0}, b.id: {"id": b.id, "joinedAt": T0 + 2000}},
        "membersCount": 2,
    }
    assert list(status) == ["room", "members", "membersCount"]
    assert list(status["members"]) == [a.id, b.id]
    assert failure_text(node.rooms.status("")) == "a room is required"
    assert failure_text(node.rooms.status(None)) == "a room is required"
    assert failure_text(node.rooms.status("nope")) == "room does not exist"
    assert result(node.rooms.status("otherRoom")) == {"room": "otherRoom", "members": {}, "membersCount": 0}


def test_add_member_and_remove_member_errors():
    node = make_node()
    (a,) = join(node)
    assert result(node.rooms.add_member(a.id, "defaultRoom")) is True
    assert failure_text(node.rooms.add_member(a.id, "defaultRoom")) == (
        "connection already in this room (defaultRoom)"
    )
    assert failure_text(node.rooms.add_member(a.id, "nope")) == "room does not exist"
    assert failure_text(node.rooms.remove_member(a.id, "otherRoom")) == (
        "connection not in this room (otherRoom)"
    )
    assert result(node.rooms.remove_member(a.id, "defaultRoom")) is True
    assert a.rooms == []
    assert node.rooms.local_members("defaultRoom") == []
    # a connection this node does not hold goes to the backend's RPC
    assert failure_text(node.rooms.add_member("someone-else", "defaultRoom")) == "RPC Timeout"
    assert failure_text(node.rooms.remove_member("someone-else", "defaultRoom")) == "RPC Timeout"


def test_joining_and_leaving_send_nothing_to_others():
    node = make_node()
    a, b = join(node, 2)
    result(node.rooms.add_member(a.id, "defaultRoom"))
    result(node.rooms.add_member(b.id, "defaultRoom"))
    result(node.rooms.remove_member(b.id, "defaultRoom"))
    node.reactor.advance(0)
    assert msgs(a) == [] and msgs(b) == []


def test_broadcast_payload_to_every_member_including_sender_on_the_next_turn():
    node = make_node()
    a, b, c = join(node, 3)
    for connection in (a, b):
        result(node.rooms.add_member(connection.id, "defaultRoom"))
    result(node.rooms.add_member(c.id, "otherRoom"))
    result(node.rooms.broadcast(a, "defaultRoom", "hello"))
    assert msgs(a) == []  # not yet: the sender's reply goes first
    node.reactor.advance(0)
    expected = {"message": "hello", "room": "defaultRoom", "from": a.id, "context": "user", "sentAt": T0}
    assert msgs(a) == [expected]
    assert msgs(b) == [expected]
    assert list(expected) == ["message", "room", "from", "context", "sentAt"]
    assert msgs(c) == []


def test_server_broadcast_is_from_zero_and_needs_no_membership():
    node = make_node()
    (a,) = join(node)
    result(node.rooms.add_member(a.id, "defaultRoom"))
    result(node.rooms.broadcast(None, "defaultRoom", {"any": "json"}))
    node.reactor.advance(0)
    assert msgs(a) == [
        {"message": {"any": "json"}, "room": "defaultRoom", "from": 0, "context": "user", "sentAt": T0}
    ]


def test_broadcast_errors():
    node = make_node()
    (a,) = join(node)
    result(node.rooms.add_member(a.id, "defaultRoom"))
    for room, message in (("", "hi"), (None, "hi"), ("defaultRoom", ""), ("defaultRoom", None)):
        assert failure_text(node.rooms.broadcast(a, room, message)) == "both room and message are required"
    assert failure_text(node.rooms.broadcast(None, "defaultRoom", "")) == "both room and message are required"
    assert failure_text(node.rooms.broadcast(a, "otherRoom", "hi")) == "connection not in this room (otherRoom)"
    node.reactor.advance(0)
    assert msgs(a) == []


def test_destroy_tells_members_removes_them_runs_leave_hooks_and_deletes():
    left = []

    class Watch(ChatMiddleware):
        name = "watch"

        def leave(self, connection, room):
            left.append((connection.id, room))
            raise ActionError("veto ignored on destroy")

    node = make_node(plugins=[Watch])
    a, b, outsider = join(node, 3)
    for connection in (a, b):
        result(node.rooms.add_member(connection.id, "otherRoom"))
        result(node.rooms.add_member(connection.id, "defaultRoom"))
    assert result(node.rooms.destroy("otherRoom")) is None
    assert result(node.rooms.exists("otherRoom")) is False
    assert failure_text(node.rooms.add_member(outsider.id, "otherRoom")) == "room does not exist"
    node.reactor.advance(0)
    notice = {"message": "this room has been deleted", "room": "otherRoom", "from": 0, "context": "user", "sentAt": T0}
    assert msgs(a) == [notice] and msgs(b) == [notice]
    assert msgs(outsider) == []
    assert a.rooms == ["defaultRoom"] and b.rooms == ["defaultRoom"]
    assert left == [(a.id, "otherRoom"), (b.id, "otherRoom")]
    assert node.rooms.local_members("otherRoom") == []
    assert failure_text(node.rooms.destroy("otherRoom")) == "room does not exist"
    assert failure_text(node.rooms.destroy("")) == "room does not exist"
    # the name can be used again
    assert result(node.rooms.add("otherRoom")) == 1
    assert result(node.rooms.status("otherRoom"))["membersCount"] == 0


def test_chat_middleware_runs_in_priority_order_then_registration_order():
    calls = []

    def make(name, priority):
        class M(ChatMiddleware):
            pass

        M.name = name
        M.priority = priority
        M.join = lambda self, c, r: calls.append((name, "join"))
        M.leave = lambda self, c, r: calls.append((name, "leave"))
        return M

    node = make_node(plugins=[make("late", 200), make("default1", None), make("early", 5), make("default2", None)])
    (a,) = join(node)
    result(node.rooms.add_member(a.id, "defaultRoom"))
    result(node.rooms.remove_member(a.id, "defaultRoom"))
    order = ["early", "default1", "default2", "late"]
    assert calls == [(n, "join") for n in order] + [(n, "leave") for n in order]


def test_middleware_needs_a_unique_name():
    node = make_node()

    class Nameless(ChatMiddleware):
        pass

    with pytest.raises(ConfigError, match="middleware.name is required"):
        node.rooms.add_middleware(Nameless)

    class One(ChatMiddleware):
        name = "one"

    node.rooms.add_middleware(One)
    with pytest.raises(ConfigError, match="registered twice"):
        node.rooms.add_middleware(One)


def test_join_veto_keeps_the_connection_out_and_async_hooks_are_awaited():
    gate: Deferred = Deferred()

    class Slow(ChatMiddleware):
        name = "slow"

        async def join(self, connection, room):
            await gate
            if room == "otherRoom":
                raise RuntimeError("no entry")

    node = make_node(plugins=[Slow])
    (a,) = join(node)
    d1 = node.rooms.add_member(a.id, "defaultRoom")
    d2 = node.rooms.add_member(a.id, "otherRoom")
    assert not d1.called and a.rooms == []
    gate.callback(None)
    assert result(d1) is True
    assert failure_text(d2) == "no entry"
    assert a.rooms == ["defaultRoom"]
    assert list(result(node.rooms.status("otherRoom"))["members"]) == []


def test_a_connection_destroyed_during_an_async_join_does_not_stay_a_member():
    gate: Deferred = Deferred()

    class Slow(ChatMiddleware):
        name = "slow"

        def join(self, connection, room):
            return gate

    node = make_node(plugins=[Slow])
    (a,) = join(node)
    d = node.rooms.add_member(a.id, "defaultRoom")
    a.destroy()
    gate.callback(None)
    assert failure_text(d) == "connection not in this room (defaultRoom)"
    assert result(node.rooms.status("defaultRoom"))["members"] == {}
    assert node.rooms.local_members("defaultRoom") == []


def test_on_say_receive_runs_once_last_non_empty_return_wins_and_may_veto():
    seen = []

    class First(ChatMiddleware):
        name = "first"
        priority = 1

        def on_say_receive(self, connection, room, payload):
            seen.append(("first", payload["message"]))
            if payload["message"] == "bad":
                raise ActionError("vetoed")
            return {**payload, "message": payload["message"] + "-1"}

    class Second(ChatMiddleware):
        name = "second"
        priority = 2

        async def on_say_receive(self, connection, room, payload):
            seen.append(("second", payload["message"]))
            return {}  # empty: keeps the payload

    class Third(ChatMiddleware):
        name = "third"
        priority = 3

        def on_say_receive(self, connection, room, payload):
            seen.append(("third", payload["message"]))
            payload["extra"] = True  # in-place changes count too
            return None

    node = make_node(plugins=[Third, Second, First])
    a, b = join(node, 2)
    for connection in (a, b):
        result(node.rooms.add_member(connection.id, "defaultRoom"))
    result(node.rooms.broadcast(a, "defaultRoom", "hi"))
    node.reactor.advance(0)
    expected = {"message": "hi-1", "room": "defaultRoom", "from": a.id, "context": "user", "sentAt": T0, "extra": True}
    assert msgs(a) == [expected] and msgs(b) == [expected]
    assert seen == [("first", "hi"), ("second", "hi-1"), ("third", "hi-1")]
    assert failure_text(node.rooms.broadcast(a, "defaultRoom", "bad")) == "vetoed"
    node.reactor.advance(0)
    assert msgs(a) == [] and msgs(b) == []


def test_say_middleware_per_recipient_change_or_veto_without_leaking():
    class PerRecipient(ChatMiddleware):
        name = "per"

        def say(self, connection, room, payload):
            if connection.remote_port == 40001:
                raise ActionError("not you")
            payload["to"] = connection.id  # in place, on this recipient's copy
            return None

    node = make_node(plugins=[PerRecipient])
    a, b, c = join(node, 3)
    for connection in (a, b, c):
        result(node.rooms.add_member(connection.id, "defaultRoom"))
    result(node.rooms.broadcast(a, "defaultRoom", "hi"))
    node.reactor.advance(0)
    assert [m["to"] for m in msgs(a)] == [a.id]
    assert msgs(b) == []
    assert [m["to"] for m in msgs(c)] == [c.id]


def test_middleware_may_broadcast_join_notices():
    class Announce(ChatMiddleware):
        name = "announce"

        async def join(self, connection, room):
            await connection.node.rooms.broadcast(None, room, f"I have entered the room: {connection.id}")

    node = make_node(plugins=[Announce])
    a, b = join(node, 2)
    result(node.rooms.add_member(a.id, "defaultRoom"))
    node.reactor.advance(0)
    result(node.rooms.add_member(b.id, "defaultRoom"))
    node.reactor.advance(0)
    assert [m["message"] for m in msgs(a)] == [
        f"I have entered the room: {a.id}",
        f"I have entered the room: {b.id}",
    ]
    # b joined after the notice was published and before it was delivered
    assert [m["message"] for m in msgs(b)] == [f"I have entered the room: {b.id}"]


def test_a_destroyed_connection_leaves_every_room_with_leave_hooks_and_vetoes_ignored():
    left = []

    class Sticky(ChatMiddleware):
        name = "sticky"

        def leave(self, connection, room):
            left.append(room)
            raise ActionError("stay")

    node = make_node(plugins=[Sticky])
    a, b = join(node, 2)
    for room in ("otherRoom", "defaultRoom"):
        result(node.rooms.add_member(a.id, room))
    result(node.rooms.add_member(b.id, "defaultRoom"))
    result(node.destroy_connection(a))
    assert left == ["otherRoom", "defaultRoom"]
    assert a.rooms == []
    assert result(node.rooms.status("defaultRoom"))["members"] == {b.id: {"id": b.id, "joinedAt": T0}}
    assert result(node.rooms.status("otherRoom"))["membersCount"] == 0
    assert a.id not in node.connections
    result(node.rooms.broadcast(b, "defaultRoom", "anyone?"))
    node.reactor.advance(0)
    assert msgs(a) == []
    assert len(msgs(b)) == 1


def test_a_recipient_that_fails_does_not_stop_delivery_to_the_others():
    class Shouty(ChatMiddleware):
        name = "shouty"

        def say(self, connection, room, payload):
            return {**payload, "message": payload["message"].upper()}

    for plugins in ([], [Shouty]):
        node = make_node(plugins=plugins)
        a, b, c = join(node, 3)
        for connection in (a, b, c):
            result(node.rooms.add_member(connection.id, "defaultRoom"))

        def broken(message):
            raise RuntimeError("transport bug")

        b.transport.send_message = broken
        result(node.rooms.broadcast(a, "defaultRoom", "hi"))
        node.reactor.advance(0)
        expected = "HI" if plugins else "hi"
        assert [m["message"] for m in msgs(a)] == [expected]
        assert [m["message"] for m in msgs(c)] == [expected]
