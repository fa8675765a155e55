"""Socket framing and input limits (docs/protocol-socket.md, 'Framing', 'Limits', 'Goodbye and closing'), in memory.

Every test drives the real SocketProtocol over a flow-controlled
StringTransport on a ManualClock and asserts whole reply lines.
"""

from ahtwist.node import SOCKET_REQUESTS
from tests.socket_helpers import GOODBYE, WELCOME, FakeClient, assert_lines, connect, factory_for

OK = '{"status":"OK","context":"response","messageCount":%d,"messageId":"<uuid>"}'
UNKNOWN = (
    '{"error":"unknown action or invalid apiVersion","context":"response",'
    '"messageCount":%d,"messageId":"<uuid>"}'
)


def test_welcome_is_the_first_line_without_counters():
    client = FakeClient(factory_for())
    assert client.read() == WELCOME + b"\r\n"


def test_lf_crlf_and_cr_all_end_a_line_and_empty_lines_are_not_counted():
    (client,) = connect(factory_for())
    lines = client.ask(b"paramAdd key=a\n\n\r\nparamAdd key=b\r\n\rparamAdd key=c\r\r\r")
    assert_lines(lines, [OK % 1, OK % 2, OK % 3])
    assert client.factory.node.stats.local(SOCKET_REQUESTS) == 3


def test_several_lines_in_one_packet_get_a_reply_each_in_order():
    (client,) = connect(factory_for())
    lines = client.ask(b"paramAdd key=abc\nparamView key\nparamsView\n")
    assert_lines(
        lines,
        [
            OK % 1,
            '{"status":"OK","context":"response","data":"abc","messageCount":2,"messageId":"<uuid>"}',
            '{"status":"OK","context":"response","data":{"key":"abc"},"messageCount":3,"messageId":"<uuid>"}',
        ],
    )


def test_a_line_split_across_packets_replies_only_when_complete():
    (client,) = connect(factory_for())
    for piece in (b"para", b"mAdd key=", b"x", b"yz"):
        assert client.ask(piece) == []
    assert_lines(client.ask(b"\n"), [OK % 1])
    assert_lines(
        client.ask(b"paramView key\n"),
        ['{"status":"OK","context":"response","data":"xyz","messageCount":2,"messageId":"<uuid>"}'],
    )


def test_multi_character_delimiter():
    (client,) = connect(factory_for('[servers.socket]\ndelimiter = "^]"\n'))
    # a newline is part of a line when the delimiter is something else
    lines = client.ask(b"paramAdd key=x^]paramView key^]paramAdd file=a\nb^")
    assert_lines(
        lines,
        [
            OK % 1,
            '{"status":"OK","context":"response","data":"x","messageCount":2,"messageId":"<uuid>"}',
        ],
    )
    # the delimiter split across two packets still ends the line
    assert_lines(client.ask(b"]paramView file^]"), [
        OK % 3,
        '{"status":"OK","context":"response","data":"a\\nb","messageCount":4,"messageId":"<uuid>"}',
    ])


def test_invalid_utf8_becomes_replacement_characters():
    (client,) = connect(factory_for())
    client.ask(b"paramAdd key=\xff\xfeab\xc3\n")
    lines = client.ask(b"paramView key\n")
    assert_lines(
        lines,
        [
            '{"status":"OK","context":"response","data":"\ufffd\ufffdab\ufffd",'
            '"messageCount":2,"messageId":"<uuid>"}'
        ],
    )


def test_invalid_utf8_in_a_json_line_is_answered_not_fatal():
    (client,) = connect(factory_for())
    lines = client.ask(b'{"action":"random\xffNumber"}\n')
    assert_lines(lines, [UNKNOWN % 1])
    assert not client.closed


def test_line_longer_than_max_data_length_is_dropped_not_counted():
    (client,) = connect(factory_for("[servers.socket]\nmaxDataLength = 64\n"))
    line = b"x" * 449
    lines = client.ask(line + b"\n")
    assert_lines(
        lines,
        [
            '{"status":"error","error":"data length is too big (449 received/64 max)",'
            '"context":"response","messageCount":0,"messageId":"<uuid>"}'
        ],
    )
    # exactly 64 bytes is fine, and it is the first counted line
    assert_lines(client.ask(b"paramAdd key=" + b"y" * 51 + b"\n"), [OK % 1])
    lines = client.ask(b"z" * 65 + b"\n")
    assert_lines(
        lines,
        [
            '{"status":"error","error":"data length is too big (65 received/64 max)",'
            '"context":"response","messageCount":1,"messageId":"<uuid>"}'
        ],
    )
    assert client.factory.node.stats.local(SOCKET_REQUESTS) == 1


def test_max_data_length_counts_bytes_not_characters():
    (client,) = connect(factory_for("[servers.socket]\nmaxDataLength = 10\n"))
    lines = client.ask("paramAdd é\n".encode())  # 10 characters, 11 bytes
    assert_lines(
        lines,
        [
            '{"status":"error","error":"data length is too big (11 received/10 max)",'
            '"context":"response","messageCount":0,"messageId":"<uuid>"}'
        ],
    )


def test_unterminated_line_is_capped_answered_once_and_discarded_to_the_delimiter():
    (client,) = connect(factory_for("[servers.socket]\nmaxBufferLength = 1000\n"))
    protocol = client.protocol
    assert client.ask(b"a" * 600) == []
    lines = client.ask(b"b" * 600)
    assert_lines(
        lines,
        [
            '{"status":"error","error":"data length is too big (1200 received/1000 max)",'
            '"context":"response","messageCount":0,"messageId":"<uuid>"}'
        ],
    )
    assert protocol._partial is None
    for _ in range(100):  # 6.4 MB more of the same line: nothing kept, nothing said
        assert client.ask(b"c" * 64000) == []
        assert protocol._partial is None
    # the rest of the long line is discarded; the next line is served
    assert_lines(client.ask(b"cccc\nparamAdd key=abc\n"), [OK % 1])


def test_unterminated_line_cap_with_a_multi_character_delimiter_split_across_reads():
    (client,) = connect(factory_for('[servers.socket]\nmaxBufferLength = 100\ndelimiter = "<>"\n'))
    lines = client.ask(b"q" * 150)
    assert len(lines) == 1 and b"(150 received/100 max)" in lines[0]
    assert client.ask(b"qqq<") == []
    assert_lines(client.ask(b">paramAdd key=x<>"), [OK % 1])


def test_cap_is_the_larger_of_max_data_length_and_max_buffer_length():
    (client,) = connect(factory_for("[servers.socket]\nmaxBufferLength = 100\nmaxDataLength = 300\n"))
    assert client.ask(b"x" * 250) == []  # under the cap: still buffered
    lines = client.ask(b"x" * 100)
    assert_lines(
        lines,
        [
            '{"status":"error","error":"data length is too big (350 received/300 max)",'
            '"context":"response","messageCount":0,"messageId":"<uuid>"}'
        ],
    )


def test_complete_line_over_the_buffer_cap_in_one_read_is_refused_too():
    (client,) = connect(factory_for("[servers.socket]\nmaxBufferLength = 100\n"))
    lines = client.ask(b"x" * 101 + b"\nparamAdd key=a\n")
    assert_lines(
        lines,
        [
            '{"status":"error","error":"data length is too big (101 received/100 max)",'
            '"context":"response","messageCount":0,"messageId":"<uuid>"}',
            OK % 1,
        ],
    )


def test_invalid_json_runs_the_first_word_as_an_action():
    (client,) = connect(factory_for())
    lines = client.ask(b'{not json\n{"action":\n[1,2]\n"randomNumber"\n')
    assert_lines(lines, [UNKNOWN % 1, UNKNOWN % 2, UNKNOWN % 3, UNKNOWN % 4])
    # the first word became the sticky action
    assert client.connection.params == {"action": '"randomNumber"'}


def test_http_request_typed_into_the_socket_gets_one_reply_per_non_empty_line():
    (client,) = connect(factory_for())
    lines = client.ask(b"GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n")
    assert_lines(lines, [UNKNOWN % 1, UNKNOWN % 2])


def test_quit_and_exit_say_goodbye_and_close():
    for verb in (b"quit", b"exit"):
        (client,) = connect(factory_for())
        client.send(verb + b"\nparamAdd key=x\n", advance=False)
        assert client.lines() == [GOODBYE]
        assert client.transport.disconnecting and not client.transport.aborted
        client.clock.advance(0)
        assert client.closed
        assert client.factory.node.connections == {}


def test_telnet_ctrl_c_and_ctrl_d_say_goodbye_and_close():
    for data in (b"\xff\xf4\xff\xfd\x06", b"\x04"):
        (client,) = connect(factory_for())
        assert client.ask(data) == [GOODBYE]
        assert client.closed


def test_ctrl_d_inside_other_input_is_just_a_byte():
    (client,) = connect(factory_for())
    assert_lines(client.ask(b"\x04\n"), [UNKNOWN % 1])
    assert not client.closed


def test_input_after_goodbye_is_ignored():
    (client,) = connect(factory_for())
    client.send(b"quit\n", advance=False)
    client.protocol.dataReceived(b"paramAdd key=x\n")
    assert client.lines() == [GOODBYE]
    assert client.connection.params == {}


def test_pending_replies_are_dropped_after_goodbye():
    (client,) = connect(factory_for())
    client.send(b'{"action":"sleepTest","params":{"sleepDuration":100}}\nquit\n')
    assert client.lines() == [GOODBYE]
    client.clock.advance(1)
    assert client.lines() == []


def test_idle_timeout_closes_a_half_line_without_touching_others():
    factory = factory_for("[servers.socket]\nidleTimeout = 30\n")
    quiet, busy = connect(factory, 2)
    quiet.send(b"paramAdd key=")  # half a line, then silence
    for _ in range(5):
        factory.clock.advance(7)
        assert_lines(busy.ask(b"paramAdd key=x\n"), [OK % (_ + 1)])
    assert quiet.lines() == [GOODBYE]
    assert quiet.closed
    assert not busy.closed
    assert list(factory.node.connections) == [busy.id]


def test_activity_postpones_the_idle_timeout():
    factory = factory_for("[servers.socket]\nidleTimeout = 10\n")
    (client,) = connect(factory)
    for _ in range(5):
        factory.clock.advance(9)
        client.send(b"x")
    assert not client.closed
    factory.clock.advance(10)
    assert client.lines() == [GOODBYE]
    assert client.closed


def test_idle_timeout_zero_never_closes():
    factory = factory_for("[servers.socket]\nidleTimeout = 0\n")
    (client,) = connect(factory)
    factory.clock.advance(10**7)
    assert not client.closed
    assert factory.clock.getDelayedCalls() == []


def test_a_client_that_never_reads_is_dropped_once_its_unread_output_passes_the_limit():
    factory = factory_for("[servers.socket]\nmaxBufferLength = 300000\n")
    (reader,) = connect(factory, buffer_size=65536)
    (talker,) = connect(factory)
    reader.ask(b"roomAdd defaultRoom\n")
    talker.ask(b"roomAdd defaultRoom\n")
    message = b"say defaultRoom " + b"m" * 1000 + b"\n"
    sent = 0
    while not reader.transport.aborted and sent < 1000:
        talker.send(message)
        talker.read()
        sent += 1
    assert reader.transport.aborted
    # its input was paused once it was 64 KiB behind; it was dropped 300 kB
    # behind: the server never held much more than that for it
    assert not reader.transport.reading
    assert 65536 + 300000 < len(reader.transport.value()) < 65536 + 300000 + 2 * 1100
    factory.clock.advance(0)
    assert reader.closed
    assert list(factory.node.connections) == [talker.id]
    assert factory.node.rooms.local_members("defaultRoom") == [talker.connection]


def test_a_slow_reader_that_catches_up_is_resumed_and_kept():
    factory = factory_for("[servers.socket]\nmaxBufferLength = 300000\n")
    (reader,) = connect(factory, buffer_size=65536)
    reader.send(b"roomAdd defaultRoom\n")
    received = b""
    for _ in range(300):
        factory.node.rooms.broadcast(None, "defaultRoom", "n" * 1000)
        factory.clock.advance(0)
        if not reader.transport.reading:
            received += reader.read()  # the client reads: producer resumed
            assert reader.transport.reading
    received += reader.read()
    assert not reader.transport.aborted
    assert received.count(b'"from":0') == 300


def test_dropped_connections_are_forgotten():
    factory = factory_for()
    clients = connect(factory, 50)
    for client in clients:
        client.ask(b"roomAdd defaultRoom\n")
    assert factory.node.active_by_type["socket"] == 50
    for client in clients:
        client.drop()
    assert factory.server.connections == {}
    assert factory.node.connections == {}
    assert factory.node.active_by_type["socket"] == 0
    assert factory.node.rooms.local_members("defaultRoom") == []


def test_a_pause_while_nothing_is_behind_does_not_stop_reading():
    """TLS pauses its producer while it buffers the welcome during the
    handshake: input must keep flowing or the handshake never completes."""
    factory = factory_for()
    (client,) = connect(factory)
    client.protocol.pauseProducing()
    assert client.transport.reading
    assert_lines(client.ask(b"paramAdd key=x\n"), [OK % 1])
    assert client.transport.reading
    client.protocol.resumeProducing()
    assert_lines(client.ask(b"paramAdd key=y\n"), [OK % 2])


def test_a_client_pipelining_without_reading_stops_being_read_but_is_kept():
    factory = factory_for()
    (client,) = connect(factory, buffer_size=65536)
    sent = 0
    while client.transport.reading and sent < 100000:
        client.send(b"paramsView\n", advance=False)
        sent += 1
    assert not client.transport.reading
    assert not client.transport.aborted
    assert len(client.transport.value()) < 65536 + 65536 + 200
    data = client.read()  # the client reads at last: requests are read again
    assert client.transport.reading
    assert data.count(b"\r\n") == sent


def test_requests_pipelined_in_one_read_stop_being_handled_once_the_client_is_behind():
    factory = factory_for()
    (client,) = connect(factory, buffer_size=65536)
    client.send(b"paramsView\n" * 20000 + b"paramAdd key=last\n", advance=False)
    # handled until 64 KiB were behind the transport's buffer; the rest is held,
    # so the client is not dropped although 20000 replies would be 2 MB
    assert not client.transport.reading and not client.transport.aborted
    answered = client.read().count(b"\r\n")
    assert 1000 < answered < 2000
    while answered < 20001:
        factory.clock.advance(0)  # held input is released on the next turn
        chunk = client.read()
        assert chunk, answered
        answered += chunk.count(b"\r\n")
    assert answered == 20001
    factory.clock.advance(0)
    assert client.transport.reading
    assert client.connection.params == {"key": "last"}
    assert client.connection.message_count == 20001


def test_keep_alive_is_set_when_configured_and_unix_peers_have_no_ip():
    from twisted.internet.address import UNIXAddress
    from twisted.internet.testing import StringTransport

    class KeepAliveTransport(StringTransport):
        keep_alive = None

        def setTcpKeepAlive(self, enabled):
            self.keep_alive = enabled

    for toml, expected in (("[servers.socket]\nsetKeepAlive = true\n", 1), ("", None)):
        factory = factory_for(toml)
        transport = KeepAliveTransport(peerAddress=UNIXAddress(None))
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(transport)
        assert transport.keep_alive == expected
        details = protocol.connection.details()
        assert (details["remoteIP"], details["remotePort"]) == ("unix", 0)
        assert transport.value() == WELCOME + b"\r\n"
