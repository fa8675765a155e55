"""SocketService wiring and graceful stop (docs/protocol-socket.md, 'Stopping'), in memory.

The node and the services run on a MemoryReactorClock: listeners are
recorded instead of bound, and time only moves when the test says so.
"""

import json

from twisted.internet.testing import MemoryReactorClock

from ahtwist.service import AhtwistService, SocketService
from ahtwist.socket import SocketFactory
from ahtwist.tap import build_service
from tests.helpers import config_from, make_node
from tests.socket_helpers import GOODBYE, assert_lines, connect


def started(toml: str = "", endpoints=("tcp:5000:interface=127.0.0.1",)):
    reactor = MemoryReactorClock()
    node = make_node(toml, clock=reactor)
    top = AhtwistService(node, reactor)
    sockets = SocketService(node, reactor, endpoints)
    sockets.setServiceParent(top)
    top.startService()
    return reactor, node, top, sockets


def fired(d) -> list:
    box: list = []
    d.addBoth(box.append)
    return box


def test_build_service_listens_on_every_socket_endpoint():
    reactor = MemoryReactorClock()
    config = config_from(
        "", web=("none",), socket=("tcp:5001:interface=127.0.0.1", "tcp6:5002:interface=\\:\\:1")
    )
    top = build_service(config, reactor)
    top.startService()
    ports = [(port, factory, interface) for port, factory, _, interface in reactor.tcpServers]
    assert [(p, i) for p, _, i in ports] == [(5001, "127.0.0.1"), (5002, "::1")]
    assert all(isinstance(f, SocketFactory) for _, f, _ in ports)
    assert ports[0][1] is ports[1][1]  # one factory (one set of connections) for all


def test_build_service_default_and_disabled_socket_server():
    reactor = MemoryReactorClock()
    build_service(config_from("", web=("none",)), reactor).startService()
    assert [(p, i) for p, _, _, i in reactor.tcpServers] == [(5000, "0.0.0.0")]
    reactor = MemoryReactorClock()
    top = build_service(config_from("", web=("none",), socket=("none",)), reactor)
    top.startService()
    assert reactor.tcpServers == []
    assert not any(isinstance(s, SocketService) for s in top)


def test_stop_says_goodbye_to_idle_clients_and_waits_for_pending_actions():
    reactor, node, top, sockets = started()
    idle, busy = connect(sockets.factory, 2)
    busy.ask(b'{"action":"sleepTest","params":{"sleepDuration":2500}}\n')
    done = fired(top.stopService())
    assert node.stopping
    assert idle.lines() == [GOODBYE]
    reactor.advance(0)
    assert idle.closed
    assert not busy.closed and busy.lines() == []
    # new actions during the wait are refused; the connection stays for its pending one
    assert_lines(
        busy.ask(b"randomNumber\n"),
        ['{"error":"the server is shutting down","context":"response","messageCount":2,"messageId":"<uuid>"}'],
    )
    reactor.advance(2)
    assert done == [] and not busy.closed
    reactor.advance(0.5)
    lines = busy.lines()
    assert json.loads(lines[0])["sleepDuration"] == 2500
    assert lines[1:] == [GOODBYE]
    reactor.advance(0)
    assert busy.closed
    assert done == [None]
    assert node.connections == {}


def test_stop_forces_connections_closed_after_the_wait_limit():
    reactor, node, top, sockets = started("[servers.socket]\npendingShutdownWaitLimit = 3000\n")
    (busy,) = connect(sockets.factory)
    busy.ask(b'{"action":"sleepTest","params":{"sleepDuration":60000}}\n')
    done = fired(top.stopService())
    for _ in range(29):
        reactor.advance(0.1)
    assert not busy.closed and done == []
    reactor.advance(0.2)
    assert busy.transport.aborted
    reactor.advance(0)
    assert busy.closed and done == [None]
    assert busy.lines() == []  # the pending reply never comes
    # nothing is left scheduled: the socket server's timers are gone, and the
    # action of the aborted connection was cancelled with it (issue 12, item 6)
    assert reactor.getDelayedCalls() == []


def test_stop_with_no_clients_is_immediate():
    reactor, node, top, sockets = started()
    assert fired(top.stopService()) == [None]


def test_stop_gives_up_on_a_transport_that_never_reports_closing():
    reactor, node, top, sockets = started("[servers.socket]\npendingShutdownWaitLimit = 1000\n")
    (client,) = connect(sockets.factory)
    client.ask(b'{"action":"sleepTest","params":{"sleepDuration":60000}}\n')
    client.transport._lost = lambda reason: None  # a transport that never calls back
    done = fired(top.stopService())
    reactor.advance(1)
    assert client.transport.aborted and done == []
    reactor.advance(1)
    assert done == [None]


def test_stop_aborts_a_client_that_never_reads_its_goodbye_at_the_wait_limit():
    reactor, node, top, sockets = started()
    (client,) = connect(sockets.factory)
    client.transport.loseConnection = lambda: None  # the goodbye is never flushed
    done = fired(top.stopService())
    assert client.lines() == [GOODBYE]
    reactor.advance(4.9)
    assert not client.transport.aborted
    reactor.advance(0.1)
    assert client.transport.aborted
    reactor.advance(0)
    assert client.closed and done == [None]


def test_quit_aborts_a_client_that_never_reads_its_goodbye_after_ten_seconds():
    reactor, node, top, sockets = started()
    (client,) = connect(sockets.factory)
    client.transport.loseConnection = lambda: None
    assert client.ask(b"quit\n") == [GOODBYE]
    reactor.advance(9.9)
    assert not client.transport.aborted
    reactor.advance(0.1)
    assert client.transport.aborted
    reactor.advance(0)
    assert client.closed
    assert node.connections == {}
