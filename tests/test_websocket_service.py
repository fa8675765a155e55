"""Service wiring: the websocket resource on every web listener, or none when disabled."""

from twisted.internet.testing import MemoryReactorClock

from ahtwist.service import WebService
from ahtwist.websocket import WebSocketFactory, WebSocketUpgradeResource
from tests.helpers import HTTPClient, make_node
from tests.wshelpers import WSHarness


def test_one_websocket_resource_serves_every_web_listener():
    node = make_node()
    reactor = MemoryReactorClock()
    service = WebService(node, reactor, ("tcp:0:interface=127.0.0.1", "tcp:0:interface=127.0.0.2"))
    service.startService()
    try:
        assert len(reactor.tcpServers) == 2
        # every listener gets the same site, whose web server hands /ws to one resource
        assert {id(factory) for _, factory, _, _ in reactor.tcpServers} == {id(service.site)}
        resource = service.server.websocket_resource
        assert isinstance(resource, WebSocketUpgradeResource)
        factory = resource._factory
        assert isinstance(factory, WebSocketFactory) and factory.ws_server is service.websockets
        assert (factory.webStatus, factory.server, factory.failByDrop) == (False, None, False)
        assert (factory.maxMessagePayloadSize, factory.maxFramePayloadSize) == (1048576, 1048576)
        assert (factory.autoPingInterval, factory.autoPingTimeout) == (30, 10)
    finally:
        service.stopService()


def test_limits_and_pings_come_from_the_config():
    node = make_node(
        "[servers.websocket]\nmaxMessageSize = 4096\npingInterval = 5\npingTimeout = 2\n"
    )
    factory = WSHarness(node).web_server.websocket_resource._factory
    assert (factory.maxMessagePayloadSize, factory.maxFramePayloadSize) == (4096, 4096)
    assert (factory.autoPingInterval, factory.autoPingTimeout) == (5, 2)


def test_disabled_websocket_leaves_the_path_to_the_web_server():
    node = make_node("[servers.websocket]\nenabled = false\n")
    service = WebService(node, MemoryReactorClock(), ())
    assert service.websockets is None and service.server.websocket_resource is None
    response = HTTPClient(node, service.server).get(
        "/ws", headers={"Upgrade": "websocket", "Connection": "Upgrade"}
    )
    assert (response.status, response.body) == (404, b"That file is not found")
