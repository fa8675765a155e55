"""Service wiring: the websocket resource on every web listener, or none when disabled."""

import json

from twisted.internet.testing import MemoryReactorClock

from ahtwist.connection import EMPTY
from ahtwist.service import WebService
from ahtwist.websocket import WebSocketFactory, WebSocketUpgradeResource
from tests.helpers import HTTPClient, make_node
from tests.wshelpers import OP_CONT, OP_TEXT, WSHarness


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


# --- what one connection keeps (issue 14: memory per idle websocket) ----------------


def test_text_frame_writes_the_bytes_autobahn_frames():
    from autobahn.websocket.protocol import PreparedMessage

    from ahtwist.websocket import text_frame

    for size in (0, 1, 125, 126, 127, 65535, 65536, 70000):
        payload = b"x" * size
        assert text_frame(payload) == PreparedMessage(payload, False, False, True).payloadHybi


def test_options_are_class_attributes_of_the_factory_protocol_class():
    from ahtwist.websocket import WebSocketConnectionProtocol

    node = make_node("[servers.websocket]\nmaxMessageSize = 4096\n")
    factory = WSHarness(node).web_server.websocket_resource._factory
    protocol_class = factory.protocol
    assert issubclass(protocol_class, WebSocketConnectionProtocol)
    assert protocol_class is not WebSocketConnectionProtocol
    assert protocol_class.maxMessagePayloadSize == 4096
    factory.setProtocolOptions(maxMessagePayloadSize=2048)
    assert factory.protocol.maxMessagePayloadSize == 2048
    assert factory.protocol is not protocol_class


def test_an_open_websocket_keeps_no_handshake_data_and_no_copied_options():
    from ahtwist.websocket import WebSocketConnectionProtocol

    node = make_node()
    harness = WSHarness(node)
    client = harness.client()
    [connection] = node.connections.values()
    protocol = connection.transport
    assert isinstance(protocol, WebSocketConnectionProtocol)
    kept = set(vars(protocol))
    assert not kept & {"http_request_data", "http_response_data", "http_headers", "_wskey", "early"}
    assert not kept & set(WebSocketConnectionProtocol.CONFIG_ATTRS)
    assert protocol.send_queue == ()
    # connection.raw still has the request headers (names lower-cased)
    assert connection.raw.headers["upgrade"] == "websocket"
    [reply] = client.request({"event": "detailsView"})
    assert reply["data"]["id"] == connection.id


def test_an_open_websocket_keeps_ten_names_and_makes_its_peer_when_asked():
    node = make_node()
    harness = WSHarness(node)
    harness.client()
    [connection] = node.connections.values()
    protocol = connection.transport
    # the rest are class defaults: a compact dict of at most 10 names
    assert set(vars(protocol)) == {
        "autoPingPendingCall", "connected", "connection", "factory", "is_closed",
        "is_open", "meter", "state", "trafficStats", "transport",
    }
    assert protocol.peer == "tcp4:127.0.0.1:50001"
    assert protocol.websocket_version == 13
    assert protocol.websocket_extensions_in_use == ()
    # no cookie, no query: the shared read-only empty dict
    assert connection.raw.cookies is EMPTY and connection.raw.query is EMPTY


def test_cookies_and_query_of_the_upgrade_stay_on_connection_raw():
    node = make_node()
    harness = WSHarness(node)
    harness.client(path="/ws?token=abc", headers={"Cookie": "a=1"})
    [connection] = node.connections.values()
    assert (connection.raw.cookies, connection.raw.query) == ({"a": "1"}, {"token": "abc"})


def test_a_websocket_gets_its_utf8_validator_with_its_first_text_message():
    node = make_node()
    harness = WSHarness(node)
    a = harness.client()
    [protocol_a] = [c.transport for c in node.connections.values()]
    b = harness.client()
    assert "utf8validator" not in vars(protocol_a)
    body = json.dumps({"event": "detailsView", "messageId": "é"}, ensure_ascii=False).encode()
    cut = body.index(b"\xc3") + 1  # between the two bytes of "é"
    a.send_frame(OP_TEXT, body[:cut], fin=False)
    validator = vars(protocol_a)["utf8validator"]
    # b's whole messages (one invalid) are checked meanwhile, with a validator of its own
    [reply_b] = b.request({"event": "detailsView", "messageId": 2})
    assert reply_b["messageId"] == 2
    a.send_frame(OP_CONT, body[cut:])
    [reply_a] = a.messages()
    assert (reply_a["status"], reply_a["messageId"]) == ("OK", "é")
    b.send_frame(OP_TEXT, b'{"event":"\xff"}')
    b.frames()
    assert b.close_code == 1007
    assert a.request({"event": "detailsView", "messageId": 3})[0]["messageId"] == 3
    assert vars(protocol_a)["utf8validator"] is validator  # kept, not made per message


def test_a_browser_offering_permessage_deflate_is_answered_without_extensions():
    # the accept function is an option too: it must not become a method of the protocol class
    harness = WSHarness(make_node())
    client = harness.client(handshake=False)
    head = client.handshake(headers={"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"})
    assert head.startswith(b"HTTP/1.1 101")
    assert b"sec-websocket-extensions" not in head.lower()
