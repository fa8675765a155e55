"""Connection middleware create/destroy (docs/python-api.md, 'Middleware') on socket clients."""

from ahtwist import ChatMiddleware, ConnectionMiddleware
from tests.socket_helpers import GOODBYE, WELCOME, FakeClient, connect, factory_for

events: list[tuple[str, ...]] = []


def hooks(name: str, priority: int | None):
    class M(ConnectionMiddleware):
        pass

    M.name = name
    M.priority = priority

    def create(self, connection):
        events.append((name, "create", str(connection.id in connection.node.connections)))

    def destroy(self, connection):
        events.append((name, "destroy", ",".join(connection.rooms)))

    M.create = create
    M.destroy = destroy
    return M


class LeaveWatch(ChatMiddleware):
    name = "leaveWatch"

    def leave(self, connection, room):
        events.append(("chat", "leave", room))


def setup_function():
    events.clear()


def test_create_and_destroy_run_in_priority_order_around_the_connections_life():
    plugins = [hooks("b", 100), hooks("c", 300), hooks("a", 10), hooks("b2", None), LeaveWatch]
    factory = factory_for(plugins=plugins)
    (client,) = connect(factory)
    # create ran for every hook, ascending priority (ties: registration order),
    # with the connection already registered, and before the welcome line
    assert events == [(n, "create", "True") for n in ("a", "b", "b2", "c")]
    events.clear()
    client.ask(b"roomAdd defaultRoom\nroomAdd otherRoom\n")
    client.drop()
    # destroy hooks see the rooms, then the connection leaves them
    assert events == [(n, "destroy", "defaultRoom,otherRoom") for n in ("a", "b", "b2", "c")] + [
        ("chat", "leave", "defaultRoom"),
        ("chat", "leave", "otherRoom"),
    ]
    assert factory.node.connections == {}


def test_a_failing_hook_is_logged_and_the_others_still_run():
    class Broken(ConnectionMiddleware):
        name = "broken"
        priority = 1

        def create(self, connection):
            raise RuntimeError("create failed")

        async def destroy(self, connection):
            raise RuntimeError("destroy failed")

    factory = factory_for(plugins=[Broken, hooks("after", 2)])
    (client,) = connect(factory)
    assert events == [("after", "create", "True")]
    assert client.ask(b"paramAdd key=x\n")  # the connection works
    client.drop()
    assert events[-1] == ("after", "destroy", "")
    assert factory.node.connections == {}


def test_create_hook_may_send_before_the_welcome_or_destroy_at_once():
    class Greeter(ConnectionMiddleware):
        name = "greeter"

        def create(self, connection):
            connection.send_message({"hello": "first"})

    client = FakeClient(factory_for(plugins=[Greeter]))
    assert client.lines() == [b'{"hello":"first"}', WELCOME]

    class Bouncer(ConnectionMiddleware):
        name = "bouncer"

        def create(self, connection):
            connection.destroy()

    factory = factory_for(plugins=[Bouncer, hooks("z", 500)])
    client = FakeClient(factory)
    assert client.lines() == [GOODBYE]
    factory.clock.advance(0)
    assert client.closed
    assert events == [("z", "create", "True"), ("z", "destroy", "")]
    assert factory.node.connections == {}


def test_server_side_destroy_says_goodbye_and_runs_destroy_once():
    factory = factory_for(plugins=[hooks("m", 1)])
    (client,) = connect(factory)
    client.connection.destroy()
    client.connection.destroy()
    assert client.lines() == [GOODBYE]
    factory.clock.advance(0)
    assert client.closed
    assert events == [("m", "create", "True"), ("m", "destroy", "")]
