"""A TCP server connection that names itself when asked.

Twisted's ``tcp.Server.__init__`` formats two strings for every accepted
connection: ``logstr`` (its log prefix, ``"SocketProtocol,12,127.0.0.1"``)
and ``repstr`` (its ``repr``, ``"<SocketProtocol #12 on 5000>"``), ~150
bytes that an idle socket client keeps for its whole life although neither
is read until the reactor dispatches an event for it or someone prints it.

:class:`LazyTCPServer` makes both at first use: ``logstr`` and ``repstr``
are data descriptors, so the assignments in Twisted's ``__init__`` keep
nothing; :meth:`LazyTCPServer.logPrefix` (which the reactor calls before
every read or write event it dispatches) makes the prefix once and keeps it,
so only a connection that never had an event holds neither.  The values are
Twisted's, made from what Twisted made them from: the protocol's log prefix,
the session number, the peer's host, the protocol's class name and the
listening port's number as it was when the listener opened (a port that
stopped listening forgets its number; the connections it accepted do not).

A listening ``tcp.Port`` makes its connections with its ``transport``
attribute (Twisted documents that it may be changed): :func:`use_lazy_transport`
sets it.  Only for protocols that stay their transport's protocol (the
socket server's): a protocol that hands its transport to another (an HTTP
channel upgraded to a websocket) would name the new one, where Twisted's
strings name the first.
"""

from typing import Any
from weakref import WeakKeyDictionary

from twisted.internet import tcp

#: the number each port listened on (Twisted sets ``_realPortNumber`` to None when it stops)
_PORT_NUMBERS: "WeakKeyDictionary[tcp.Port, int]" = WeakKeyDictionary()


class _NotKept:
    """A data descriptor whose value is made by ``make(connection)`` when
    read; an assignment (Twisted's ``__init__`` makes one) goes to
    ``keep(connection, value)``, which may keep it, or is dropped."""

    def __init__(self, make: Any, keep: Any = None) -> None:
        self.make = make
        self.keep = keep

    def __get__(self, connection: Any, owner: Any = None) -> Any:
        if connection is None:
            return self
        return self.make(connection)

    def __set__(self, connection: Any, value: str) -> None:
        if self.keep is not None:
            self.keep(connection, value)


class LazyTCPServer(tcp.Server):
    """A ``tcp.Server`` whose log prefix and ``repr`` are made at first use
    (see the module docstring); everything else is Twisted's."""

    #: the log prefix once made (an instance attribute from then on)
    _log_prefix: str | None = None
    #: the ``repr`` once made (or given: a connection without a port)
    _repr: str | None = None

    def logPrefix(self) -> str:
        prefix = self._log_prefix
        if prefix is None:
            # what Twisted's __init__ formats
            prefix = self._log_prefix = (
                f"{self._getLogPrefix(self.protocol)},{self.sessionno},{self.hostname}"
            )
        return prefix

    def __repr__(self) -> str:
        text = self._repr
        if text is None:
            port = self.server
            number = _PORT_NUMBERS.get(port, port._realPortNumber)
            text = self._repr = (
                f"<{self.protocol.__class__.__name__} #{self.sessionno} on {number}>"
            )
        return text

    def _given_repr(self, value: str) -> None:
        # Twisted's __init__ formats it from the port (made again when
        # asked); only a connection without a port (made from a connected
        # socket) is given one that could not be made later
        if self.server is None:
            self._repr = value

    logstr = _NotKept(logPrefix)
    repstr = _NotKept(__repr__, _given_repr)

    def connectionLost(self, reason: Any) -> None:
        # Twisted drops the protocol here: the names are made from it first
        if hasattr(self, "protocol"):
            self.logPrefix()
            self.__repr__()
        super().connectionLost(reason)


def use_lazy_transport(port: Any) -> bool:
    """Make a listening ``tcp.Port`` (TCP, TLS, adopted) accept its
    connections as :class:`LazyTCPServer`; False for anything else (a unix
    port, a port whose transport was already changed, one not listening)."""
    if type(port) is not tcp.Port or port.transport is not tcp.Server:
        return False
    number = port._realPortNumber
    if number is None:
        return False
    _PORT_NUMBERS[port] = number
    port.transport = LazyTCPServer
    return True
