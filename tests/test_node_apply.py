"""``node.apply``: operations on a connection wherever it is held
(docs/protocol-socket.md, 'Operations on remote connections').  Standalone, a
connection is here or nowhere: nowhere -> RPC Timeout; the bus's ``on_rpc``
hook answers None for connections held elsewhere."""

from ahtwist.errors import RoomError
from ahtwist.socket import SocketFactory
from tests.helpers import make_node
from tests.socket_helpers import GOODBYE, connect


def failure_of(d):
    """The exception a fired Deferred failed with (consumed, so not logged as unhandled)."""
    failures = []
    d.addErrback(failures.append)
    assert len(failures) == 1, d
    return failures[0].value


def setup():
    node = make_node()
    (client,) = connect(SocketFactory(node))
    return node, client


def test_local_operations():
    node, client = setup()
    d = node.apply(client.id, "add_member", "defaultRoom")
    assert d.result is True
    assert client.connection.rooms == ["defaultRoom"]
    assert node.apply(client.id, "send_message", {"hello": "there"}).result is True
    assert client.lines() == [b'{"hello":"there"}']
    assert node.apply(client.id, "set", "params", {"a": 1}).result is True
    assert client.connection.params == {"a": 1}
    assert node.apply(client.id, "remove_member", "defaultRoom").result is True
    assert client.connection.rooms == []
    assert node.apply(client.id, "destroy").result is True
    client.clock.advance(0)
    assert client.lines() == [GOODBYE]
    assert client.id not in node.connections


def test_refusals():
    node, client = setup()
    error = failure_of(node.apply(client.id, "remove_member", "defaultRoom"))
    assert isinstance(error, RoomError) and error.message == (
        "connection not in this room (defaultRoom)"
    )
    for bad in (("set", "id", "x"), ("close",)):
        error = failure_of(node.apply(client.id, *bad))
        assert isinstance(error, ValueError)
        assert str(error) == f"unknown connection operation {bad[0]!r}"
    error = failure_of(node.apply("held-by-nobody", "send_message", {}))
    assert isinstance(error, RoomError) and error.message == "RPC Timeout"


def test_rpc_hook_answers_only_for_connections_held_here():
    node, client = setup()
    on_rpc = node.bus.on_rpc
    assert on_rpc("held-elsewhere", "add_member", ["defaultRoom"]) is None
    assert on_rpc(client.id, "add_member", ["defaultRoom"]).result is True
    assert client.connection.rooms == ["defaultRoom"]
