"""Writes that reach the socket at once when nothing is waiting to be sent.

Twisted's ``transport.write`` never sends: it buffers the bytes and
registers the socket for writing (an ``epoll_ctl``); the next reactor turn
sends them and unregisters the socket (another ``epoll_ctl``), each step
through the reactor's logging context.  That is most of what a small reply
or a chat delivery costs on a TCP connection: a 500-member room pays it 500
times per message.

:func:`write_now` sends the bytes straight away when the transport is a
plain TCP or UNIX connection with nothing buffered, and hands Twisted only
what the kernel did not take (and anything when the socket refuses: the
error then surfaces through Twisted's own write, which closes the
connection as it always does).  Bytes and their order are unchanged: nothing
overtakes buffered data, TLS connections (TLS is a protocol in between, not
this transport) and every other transport go through ``write``.

It reads Twisted's buffer state (``dataBuffer``, ``_tempDataLen``,
``_writeDisconnected``; twisted/internet/abstract.py), as documented in
docs/architecture.md.
"""

from typing import Any

from twisted.internet import tcp, unix

#: transports whose socket can be written directly (not subclasses: a
#: subclass may write differently)
_DIRECT = frozenset({tcp.Server, unix.Server})


def no_delay(transport: Any) -> None:
    """Turn Nagle's algorithm off on a TCP connection written with
    :func:`write_now`: two sends to it in one reactor turn (a reply, then a
    chat message) are two segments, and Nagle would hold the second until
    the peer acknowledges the first -- up to its delayed-ACK time (40 ms).
    Twisted's buffer joined them into one send; Autobahn sets this on every
    websocket for the same reason."""
    if type(transport) is tcp.Server:
        transport.setTcpNoDelay(True)


def sends_now(transport: Any) -> bool:
    """Would :func:`write_now` send at once (nothing buffered, a plain TCP
    or UNIX connection that is open)?"""
    return (
        type(transport) in _DIRECT
        and not transport.dataBuffer
        and not transport._tempDataLen
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnected
        and not transport.TLS
    )


def write_now(transport: Any, data: bytes) -> None:
    """``transport.write(data)``, sending at once when nothing waits."""
    if sends_now(transport):
        try:
            sent = transport.socket.send(data)
        except OSError:  # full (EAGAIN) or broken: Twisted's write handles both
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)
