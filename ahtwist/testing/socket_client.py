"""In-memory socket clients for the real line protocol, and exact line matching.

:class:`FakeClient` connects a real :class:`~ahtwist.socket.SocketProtocol` to
a :class:`FlowControlTransport` -- a ``StringTransport`` that behaves like a
TCP transport where it matters: it pauses its streaming producer when more
than ``buffer_size`` unread bytes pile up, resumes it when the test "reads"
(:meth:`FakeClient.read`), and reports ``connectionLost`` on the next clock
turn after ``loseConnection``/``abortConnection``.

:func:`match_line` compares a line with a template exactly, except for the
placeholders ``<uuid>`` (a lowercase RFC 4122 v4 uuid) and ``<ms>`` (an
integer), so tests can assert whole lines, key order included.
"""

import json
import re
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from ahtwist.socket import SocketFactory

UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
WELCOME = b'{"welcome":"Hello! Welcome to the actionhero api","context":"api"}'
GOODBYE = b'{"status":"Bye!","context":"api"}'
NOT_FOUND = b'"That file is not found"'


def template_regex(template: bytes | str) -> re.Pattern[bytes]:
    """``template`` with ``<uuid>``/``<ms>`` placeholders as an exact regex."""
    if isinstance(template, str):
        template = template.encode("utf-8")
    pattern = re.escape(template)
    pattern = pattern.replace(re.escape(b"<uuid>"), UUID_RE.encode())
    pattern = pattern.replace(re.escape(b"<ms>"), rb"\d+")
    return re.compile(pattern + rb"\Z", re.DOTALL)


def match_line(line: bytes, template: bytes | str) -> bool:
    return template_regex(template).match(line) is not None


def assert_lines(lines: list[bytes], templates: list[bytes | str]) -> None:
    """Every line matches its template, in order, and there are no others."""
    shown = "\n".join(repr(x) for x in lines)
    assert len(lines) == len(templates), f"expected {len(templates)} lines, got:\n{shown}"
    for line, template in zip(lines, templates, strict=True):
        assert match_line(line, template), f"{line!r}\n  does not match\n{template!r}"


class FlowControlTransport(StringTransport):
    """A StringTransport with TCP-like flow control and disconnection."""

    def __init__(self, clock: Any, buffer_size: int | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.clock = clock
        self.buffer_size = buffer_size
        self.protocol: Any = None
        self.aborted = False
        self.reading = True
        self.lost = False

    def write(self, data: bytes) -> None:
        if self.lost or self.disconnected:
            return
        super().write(data)
        if (
            self.buffer_size is not None
            and self.producer is not None
            and self.streaming
            and len(self.io.getvalue()) > self.buffer_size
        ):
            self.producer.pauseProducing()

    def drain(self) -> bytes:
        """The client reads everything; a paused producer is resumed."""
        data = self.value()
        self.clear()
        if self.producer is not None and self.streaming and data and not self.lost:
            self.producer.resumeProducing()
        return data

    # the protocol pauses/resumes *reading* through these
    def pauseProducing(self) -> None:
        self.reading = False

    def resumeProducing(self) -> None:
        self.reading = True

    def loseConnection(self) -> None:
        if not self.disconnecting:
            super().loseConnection()
            self.clock.callLater(0, self._lost, ConnectionDone())

    def abortConnection(self) -> None:
        self.aborted = True
        self.disconnected = True
        if not self.disconnecting:
            self.disconnecting = True
            self.clock.callLater(0, self._lost, ConnectionLost())

    def _lost(self, reason: Exception) -> None:
        if not self.lost:
            self.lost = True
            self.protocol.connectionLost(Failure(reason))


class FakeClient:
    """One in-memory socket client of a :class:`SocketFactory`."""

    def __init__(
        self,
        factory: SocketFactory,
        peer: tuple[str, int] = ("127.0.0.1", 46810),
        buffer_size: int | None = None,
    ) -> None:
        self.factory = factory
        self.clock: Any = factory.clock  # a Clock in tests
        address = IPv4Address("TCP", *peer)
        self.transport = FlowControlTransport(
            self.clock,
            buffer_size,
            peerAddress=address,
            hostAddress=IPv4Address("TCP", "127.0.0.1", 5000),
        )
        self.protocol = factory.buildProtocol(address)
        self.transport.protocol = self.protocol
        self.protocol.makeConnection(self.transport)
        self._pending = b""

    @property
    def connection(self) -> Any:
        return self.protocol.connection

    @property
    def id(self) -> str:
        return self.protocol.connection.id

    def send(self, data: bytes | str, advance: bool = True) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.protocol.dataReceived(data)
        if advance:
            self.clock.advance(0)

    def read(self) -> bytes:
        """Everything written since the last read (resumes a paused producer)."""
        return self.transport.drain()

    def read_until_quiet(self) -> bytes:
        """Read again and again (each read resumes a paused producer) until
        nothing more comes."""
        data = b""
        while chunk := self.read():
            data += chunk
        return data

    def lines(self) -> list[bytes]:
        """Complete ``\\r\\n`` lines written since the last call (without CRLF)."""
        data = self._pending + self.read()
        *lines, self._pending = data.split(b"\r\n")
        return lines

    def messages(self) -> list[Any]:
        return [json.loads(line) for line in self.lines()]

    def ask(self, data: bytes | str) -> list[bytes]:
        """Send a request and return the lines it produced."""
        self.send(data)
        return self.lines()

    def drop(self) -> None:
        """The client goes away abruptly."""
        if not self.transport.lost:
            self.transport.lost = True
            self.protocol.connectionLost(Failure(ConnectionLost()))
        self.clock.advance(0)

    @property
    def closed(self) -> bool:
        return self.transport.lost


def connect(factory: SocketFactory, n: int = 1, **kw: Any) -> list[FakeClient]:
    """``n`` clients; their welcome lines are consumed."""
    clients = []
    for i in range(n):
        client = FakeClient(factory, peer=("127.0.0.1", 46810 + i), **kw)
        assert client.lines() == [WELCOME]
        clients.append(client)
    return clients
