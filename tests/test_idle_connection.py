"""What an idle socket connection keeps (issue 14: memory per idle TCP client).

An idle client holds no params dict, no Membership, no handshake object and
no time of its own; each appears at its first use and behaves as before.
The line protocol runs in memory (StringTransport-style clients, a Clock).
"""

import pytest

from ahtwist.connection import NO_HANDSHAKE, NO_ROOMS, Connection, Membership
from tests.socket_helpers import GOODBYE, assert_lines, connect, factory_for, ok_data

OK = '{"status":"OK","context":"response","messageCount":%d,"messageId":"<uuid>"}'


def test_an_idle_socket_client_holds_shared_objects_and_one_registry_entry():
    factory = factory_for("[servers.socket]\nidleTimeout = 30\n")
    a, b = connect(factory, 2)
    for client in (a, b):
        connection = client.connection
        assert connection._params is None
        assert connection.rooms is NO_ROOMS
        assert connection.raw is NO_HANDSHAKE
        assert client.protocol._last_seen is None
        assert "_last_seen" not in vars(client.protocol)
    assert a.connection.raw.headers == {} and a.connection.raw.peer_certificate is None
    assert a.connection.raw.secure is False
    # one registry on the server, the node's by id, and one shared idle bucket
    assert list(factory.server.connections) == [a.connection, b.connection]
    assert list(factory.node.connections) == [a.id, b.id]
    assert a.protocol.deadline_bucket is b.protocol.deadline_bucket
    assert list(a.protocol.deadline_bucket.members) == [a.protocol, b.protocol]


def test_params_appear_at_first_use_and_stay_sticky():
    (client,) = connect(factory_for())
    connection = client.connection
    assert connection.details()["params"] == {}
    assert_lines(client.ask(b"paramAdd key=a\n"), [OK % 1])
    assert connection.params == {"key": "a"}
    assert_lines(client.ask(b"paramsView\n"), [ok_data('{"key":"a"}', 2)])
    # an action line makes them when nothing set them before
    (other,) = connect(factory_for())
    other.ask(b"randomNumber\n")
    assert other.connection._params == {"action": "randomNumber"}


def test_rooms_become_the_connections_own_at_the_first_join_and_shared_again_after_the_last_leave():
    (client,) = connect(factory_for())
    connection = client.connection
    assert_lines(client.ask(b"roomAdd defaultRoom\n"), [ok_data("true", 1)])
    assert connection.rooms is not NO_ROOMS and connection.rooms == ["defaultRoom"]
    assert isinstance(connection.rooms, Membership)
    assert_lines(client.ask(b"roomLeave defaultRoom\n"), [ok_data("true", 2)])
    assert connection.rooms is NO_ROOMS and connection.rooms == []


def test_the_shared_empty_rooms_refuse_changes():
    with pytest.raises(TypeError, match="join and leave rooms through node.rooms"):
        NO_ROOMS.add("x")
    with pytest.raises(TypeError):
        NO_ROOMS["x"] = None
    with pytest.raises(TypeError):
        NO_ROOMS.discard("x")
    assert NO_ROOMS == [] and repr(NO_ROOMS) == "Membership([])"


def test_a_connection_leaving_one_of_two_rooms_keeps_the_other():
    connection = Connection("socket", "127.0.0.1", 1, 0)
    connection.joined("a")
    connection.joined("b")
    rooms = connection.rooms
    connection.left("a")
    connection.left("c")  # not a member: nothing changes
    assert connection.rooms is rooms and connection.rooms == ["b"]
    connection.left("b")
    assert connection.rooms is NO_ROOMS


def test_a_silent_client_is_closed_by_its_accept_deadline_and_a_talking_one_later():
    factory = factory_for("[servers.socket]\nidleTimeout = 10\n")
    silent, talking = connect(factory, 2)
    start = factory.clock.seconds()
    factory.clock.advance(5)
    talking.send(b"x")
    assert talking.protocol._last_seen == start + 5
    factory.clock.advance(4.99)
    assert not silent.closed
    factory.clock.advance(0.01)
    assert silent.lines() == [GOODBYE] and silent.closed
    assert not talking.closed
    factory.clock.advance(5)
    assert talking.lines() == [GOODBYE] and talking.closed
    assert factory.idle.buckets == {} and factory.clock.getDelayedCalls() == []
