"""Writing to a client now instead of at the end of the reactor turn.

Twisted's ``transport.write`` only appends to the transport's buffer and
asks the reactor to watch the socket for writing; the reactor sends the
buffer in a later turn and stops watching again.  For one reply that costs
little, but a chat message to a 10,000-member room is 10,000 buffered
writes, 20,000 ``epoll_ctl`` calls and 10,000 trips through the reactor's
write dispatch on top of the 10,000 ``send`` calls that do the work (about
half the server's time for such a say in ``bench/profile_server.py say``).

:func:`write_now` sends straight away when nothing is waiting in the
transport's buffer; whatever the socket does not take at once (a full
socket buffer, an error) goes through ``transport.write`` as before, so the
bytes, their order, flow control (the transport's producer is paused by
what it buffers) and the handling of a connection that failed are
Twisted's.
"""

from typing import Any

from twisted.internet.tcp import Server as TCPServer

from ahtwist.servers.tcp_server import LazyTCPServer


def sends_now(transport: Any) -> bool:
    """Would :func:`write_now` send at once: a plain (not TLS) TCP server
    connection (Twisted's or a socket client's :class:`LazyTCPServer`),
    open, with an empty write buffer?"""
    kind = type(transport)
    return bool(
        (kind is LazyTCPServer or kind is TCPServer)
        and not transport.TLS
        and not transport._tempDataBuffer
        and not transport.dataBuffer
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnected
    )


def write_now(transport: Any, data: bytes) -> None:
    """Write ``data`` to ``transport``: sent at once when :func:`sends_now`,
    else (and for what the socket did not take) buffered by ``transport.write``."""
    if not sends_now(transport):
        transport.write(data)
        return
    try:
        sent = transport.socket.send(data)
    except OSError:  # full (EAGAIN), interrupted, reset...: Twisted's write path decides
        sent = 0
    if sent < len(data):
        transport.write(data[sent:] if sent else data)


def no_delay(transport: Any) -> None:
    """Turn Nagle's algorithm off on a TCP connection written with
    :func:`write_now`: two sends to it in one reactor turn (a reply, then a
    chat message) are two segments, and Nagle would hold the second until
    the peer acknowledges the first -- up to its delayed-ACK time (40 ms).
    Twisted's buffer joined them into one send; Autobahn sets this on every
    websocket for the same reason."""
    kind = type(transport)
    if kind is LazyTCPServer or kind is TCPServer:
        transport.setTcpNoDelay(True)
