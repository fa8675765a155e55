"""One output policy for every transport (issue 12): a socket client and a
websocket client that do not read are dropped by the same
:class:`~ahtwist.limits.OutputPolicy`, each at its own configured limit
(``servers.socket.maxBufferLength``, ``servers.websocket.maxOutboundBytes``),
logged in one shape, counted in one counter, and the memory asked back.
"""

from ahtwist.limits import OutputPolicy
from ahtwist.socket import SocketFactory
from tests.helpers import make_node
from tests.socket_helpers import connect
from tests.wshelpers import WSHarness

SOCKET_LIMIT = 300000
WEBSOCKET_LIMIT = 20000


def test_socket_and_websocket_drop_a_client_that_does_not_read_through_one_policy(log_lines):
    node = make_node(
        f"[servers.socket]\nmaxBufferLength = {SOCKET_LIMIT}\n"
        f"[servers.websocket]\nmaxOutboundBytes = {WEBSOCKET_LIMIT}\n"
    )
    factory = SocketFactory(node)
    ws = WSHarness(node)
    socket_policy = factory.output_policy
    websocket_policy = ws.websockets.output_policy
    assert type(socket_policy) is OutputPolicy and type(websocket_policy) is OutputPolicy
    assert (socket_policy.transport, socket_policy.limit) == ("socket", SOCKET_LIMIT)
    assert (websocket_policy.transport, websocket_policy.limit) == ("websocket", WEBSOCKET_LIMIT)
    assert websocket_policy.limits is socket_policy.limits is node.limits

    # the socket client: its kernel buffer (64 KiB) fills, then chat piles up
    reader, talker = connect(factory, 2, buffer_size=65536)
    reader.ask(b"roomAdd defaultRoom\n")
    talker.ask(b"roomAdd defaultRoom\n")
    size_at_pause = None
    sizes = [len(reader.transport.value())]
    while not reader.transport.aborted:
        talker.send(b"say defaultRoom " + b"m" * 1000 + b"\n")
        talker.read()
        sizes.append(len(reader.transport.value()))
        if size_at_pause is None and reader.protocol._paused:
            # the write that filled the buffer is the first one counted unread
            size_at_pause = sizes[-2]
    assert size_at_pause is not None and size_at_pause <= 65536 < sizes[sizes.index(size_at_pause) + 1]
    socket_unread = sizes[-1] - size_at_pause
    one_message = sizes[-1] - sizes[-2]
    assert socket_unread - one_message <= SOCKET_LIMIT < socket_unread  # dropped on the message past it
    assert reader.transport.aborted
    assert node.stats.local("limits:slowClientsDropped") == 1

    # the websocket client: the same, over its own limit
    slow, ws_talker = ws.client(), ws.client()
    for c in (slow, ws_talker):
        assert c.request({"event": "roomAdd", "room": "defaultRoom"})[0]["data"] is True
    slow.transport.producer.pauseProducing()
    while slow.close_code is None:
        ws_talker.send({"event": "say", "room": "defaultRoom", "message": "x" * 1000})
        ws_talker.frames()
        slow.frames()
    assert (slow.close_code, slow.close_reason) == (1008, b"output buffer limit exceeded")
    assert node.stats.local("limits:slowClientsDropped") == 2

    assert [line for line in log_lines() if line.startswith("dropping ")] == [
        f"dropping socket client {reader.id}: {socket_unread} bytes of output it does not read",
        f"dropping websocket client {slow.transport.protocol.connection.id}: 20250 bytes of output it does not read",
    ]
    # one trim, 3 s after the latest drop, hands the memory back
    assert node.limits.memory._call is not None and node.limits.memory._call.active()
