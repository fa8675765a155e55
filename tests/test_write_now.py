"""write_now: a frame or line sent at once when nothing waits in the transport's
buffer, Twisted's buffered write otherwise (order kept, the rest of a partial
send buffered)."""

import socket

import pytest
from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor, StringTransport

from ahtwist.servers.tcp_server import LazyTCPServer
from ahtwist.servers.write import write_now


@pytest.fixture(params=[tcp.Server, LazyTCPServer], ids=["tcp.Server", "LazyTCPServer"])
def pair(request):
    """A real tcp.Server transport (Twisted's, or a socket client's
    LazyTCPServer) over one end of a socket pair (its reactor only records
    readers and writers), and the other end."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    reactor = MemoryReactor()
    transport = request.param(ours, Protocol(), ("127.0.0.1", 40000), None, 1, reactor)
    yield transport, theirs, reactor
    ours.close()
    theirs.close()


def received(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


def test_an_empty_buffer_sends_at_once_without_watching_for_writes(pair):
    transport, theirs, reactor = pair
    write_now(transport, b"hello")
    assert received(theirs) == b"hello"
    assert reactor.getWriters() == []
    assert (transport.dataBuffer, transport._tempDataBuffer) == (b"", [])


def test_behind_buffered_bytes_it_waits_its_turn(pair):
    transport, theirs, reactor = pair
    transport.write(b"first ")
    write_now(transport, b"second")
    assert received(theirs) == b""
    assert transport._tempDataBuffer == [b"first ", b"second"]
    assert reactor.getWriters() == [transport]
    transport.doWrite()
    assert received(theirs) == b"first second"


def test_what_the_socket_does_not_take_is_buffered_in_order(pair):
    transport, theirs, reactor = pair
    transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    payload = bytes(range(256)) * 4096  # 1 MiB: more than the socket takes
    write_now(transport, payload)
    assert 0 < len(b"".join(transport._tempDataBuffer)) < len(payload)
    assert reactor.getWriters() == [transport]
    got = received(theirs)
    while len(got) < len(payload):
        transport.doWrite()
        got += received(theirs)
    assert got == payload
    write_now(transport, b"after")
    assert received(theirs) == b"after"


def test_a_closing_or_other_transport_gets_a_plain_write(pair):
    transport, theirs, _ = pair
    transport.disconnecting = True
    write_now(transport, b"late")
    assert received(theirs) == b""
    assert transport._tempDataBuffer == [b"late"]
    memory = StringTransport()
    write_now(memory, b"x")
    assert memory.value() == b"x"
