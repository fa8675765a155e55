"""Bounded output (issue 12, item 4): a websocket client that does not read
its replies or its chat is not buffered for without bound.

The in-memory transport plays the kernel's part: ``pauseProducing`` on the
registered producer is what Twisted calls once 64 KiB wait in a real
transport's buffer, ``resumeProducing`` once it is flushed.
"""


from tests.helpers import make_node
from tests.wshelpers import WSHarness

LIMIT = 20000


def harness() -> WSHarness:
    return WSHarness(make_node(f"[servers.websocket]\nmaxOutboundBytes = {LIMIT}\n"))


def test_a_client_behind_stops_being_read_and_resumes_when_it_caught_up():
    h = harness()
    c = h.client()
    producer = c.transport.producer
    assert producer is c.transport.protocol.meter and c.transport.streaming
    producer.pauseProducing()  # 64 KiB wait in the kernel's buffer
    assert c.transport.producerState == "paused"  # its requests are no longer read
    producer.resumeProducing()
    assert c.transport.producerState == "producing"
    assert c.request({"event": "detailsView", "messageId": 1})[0]["status"] == "OK"


def test_chat_to_a_client_that_does_not_read_closes_it_with_1008(log_lines):
    h = harness()
    slow, talker = h.client(), h.client()
    for c in (slow, talker):
        assert c.request({"event": "roomAdd", "room": "defaultRoom"})[0]["data"] is True
    slow.transport.producer.pauseProducing()
    slow_id = slow.transport.protocol.connection.id
    said = 0
    while slow.close_code is None:
        talker.send({"event": "say", "room": "defaultRoom", "message": "x" * 1000})
        talker.frames()
        slow.frames()
        said += 1
        assert said < 100
    # each say frame is ~1.1 KB: dropped on the frame that passed 20,000 bytes
    assert said == 18
    assert (slow.close_code, slow.close_reason) == (1008, b"output buffer limit exceeded")
    assert slow.texts() == []  # nothing more is sent
    talker.send({"event": "say", "room": "defaultRoom", "message": "more"})
    assert slow.texts() == []
    assert not slow.transport.aborted
    h.node.reactor.advance(1.5)  # the client does not answer the close: aborted
    assert slow.lost and slow.transport.aborted
    assert slow_id not in h.node.connections
    assert h.node.stats.local("limits:slowClientsDropped") == 1
    assert [line for line in log_lines() if line.startswith("dropping websocket client")] == [
        f"dropping websocket client {slow_id}: 20250 bytes of output it does not read"
    ]


def test_replies_to_a_client_that_does_not_read_are_bounded_too():
    """Amplification: 65-byte ``file`` requests, ~19 KB replies."""
    h = harness()
    c = h.client()
    c.transport.producer.pauseProducing()
    frame = {"event": "file", "file": "javascript/actionheroClient.js"}
    c.send(frame)  # one reply past the pause: 19 KB, under the limit
    assert c.close_code is None
    c.frames()
    c.send(frame)
    c.frames()
    assert (c.close_code, c.close_reason) == (1008, b"output buffer limit exceeded")


def test_the_socket_server_counts_the_clients_it_drops_in_the_same_counter():
    from ahtwist.socket import SocketFactory
    from tests.socket_helpers import connect

    factory = SocketFactory(make_node("[servers.socket]\nmaxBufferLength = 300000\n"))
    (reader,) = connect(factory, buffer_size=65536)
    (talker,) = connect(factory)
    reader.ask(b"roomAdd defaultRoom\n")
    talker.ask(b"roomAdd defaultRoom\n")
    while not reader.transport.aborted:
        talker.send(b"say defaultRoom " + b"m" * 1000 + b"\n")
        talker.read()
    assert factory.node.stats.local("limits:slowClientsDropped") == 1
