"""write_now (ahtwist/writes.py): straight to the socket when nothing waits, never out of order.

A real epoll reactor instance (not the global one) and real TCP sockets; the
test turns the reactor itself.
"""

import socket

from twisted.internet.epollreactor import EPollReactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport

from ahtwist.writes import write_now


class Held(Protocol):
    def connectionMade(self) -> None:
        self.factory.connected.append(self)


def connected() -> tuple[EPollReactor, Held, socket.socket, object]:
    reactor = EPollReactor()
    factory = Factory.forProtocol(Held)
    factory.connected = []
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    client = socket.create_connection(("127.0.0.1", port.getHost().port))
    for _ in range(200):
        if factory.connected:
            break
        reactor.iterate(0.01)
    return reactor, factory.connected[0], client, port


def read_all(reactor: EPollReactor, client: socket.socket, size: int) -> bytes:
    client.setblocking(False)
    data = b""
    for _ in range(100_000):
        if len(data) >= size:
            break
        reactor.iterate(0)
        try:
            data += client.recv(1 << 20)
        except BlockingIOError:
            pass
    return data


def stop(reactor: EPollReactor, protocol: Held, client: socket.socket, port) -> None:
    client.close()
    protocol.transport.abortConnection()
    port.stopListening()
    reactor.iterate(0)


def test_with_nothing_buffered_the_bytes_are_sent_before_the_reactor_turns():
    reactor, protocol, client, port = connected()
    try:
        write_now(protocol.transport, b'{"welcome":"hi"}\r\n')
        client.settimeout(5)
        assert client.recv(100) == b'{"welcome":"hi"}\r\n'  # the reactor has not run since
        assert protocol.transport.dataBuffer == b"" and protocol.transport._tempDataLen == 0
    finally:
        stop(reactor, protocol, client, port)


def test_what_the_kernel_does_not_take_is_buffered_and_later_writes_queue_behind_it():
    reactor, protocol, client, port = connected()
    try:
        big = bytes(range(256)) * 40_000  # 10 MB: more than the socket buffers hold
        write_now(protocol.transport, big)
        assert protocol.transport._tempDataLen > 0  # the rest went to Twisted's buffer
        write_now(protocol.transport, b"tail\r\n")  # must not overtake it
        assert read_all(reactor, client, len(big) + 6) == big + b"tail\r\n"
    finally:
        stop(reactor, protocol, client, port)


def test_a_closed_peer_surfaces_through_twisteds_write_and_other_transports_just_write():
    reactor, protocol, client, port = connected()
    lost = []
    protocol.connectionLost = lost.append
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
    client.close()
    for _ in range(100):
        write_now(protocol.transport, b"x" * 1000)
        reactor.iterate(0.01)
        if lost:
            break
    assert len(lost) == 1
    port.stopListening()
    reactor.iterate(0)
    transport = StringTransport()
    write_now(transport, b"line\r\n")
    assert transport.value() == b"line\r\n"
