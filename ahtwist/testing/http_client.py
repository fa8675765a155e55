"""An in-memory HTTP client for the real :class:`~ahtwist.web.site.WebSite` (no sockets).

:class:`HTTPClient` sends raw HTTP/1.1 bytes through the real channel, request
parsing and dispatch over a ``StringTransport`` and parses the raw response,
so tests assert exact status lines, headers and bodies.  Its :attr:`treq` is
treq's ``StubTreq`` bound to the same site, for tests written against treq's
API (``await client.treq.get(...)``, ``treq.json_content``).
"""

import json
from typing import Any

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from ahtwist.node import Node
from ahtwist.web.api import WebServer
from ahtwist.web.site import WebSite


@attrs.define
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes

    def header(self, name: str) -> str | None:
        """The last value of a header (case-insensitive), or None."""
        values = self.header_list(name)
        return values[-1] if values else None

    def header_list(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def header_names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}


def parse_response(data: bytes, head: bool = False) -> tuple[Response | None, bytes]:
    """One complete response from the front of ``data`` and the remainder
    (``head``: the answer to a HEAD request, which has no body)."""
    block, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return None, data
    lines = block.decode("latin-1").split("\r\n")
    _, status, reason = (lines[0].split(" ", 2) + [""])[:3]
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    length = next((int(v) for k, v in headers if k.lower() == "content-length"), None)
    chunked = any(k.lower() == "transfer-encoding" and "chunked" in v for k, v in headers)
    if head or int(status) in (204, 304):
        body = b""
    elif chunked:
        body = b""
        while True:
            size_line, crlf, rest = rest.partition(b"\r\n")
            if not crlf:
                return None, data
            size = int(size_line, 16)
            if len(rest) < size + 2:
                return None, data
            body += rest[:size]
            rest = rest[size + 2 :]
            if size == 0:
                break
    elif length is not None:
        if len(rest) < length:
            return None, data
        body, rest = rest[:length], rest[length:]
    else:
        body, rest = rest, b""
    response = Response(int(status), reason, headers, body, data[: len(data) - len(rest)])
    return response, rest


class HTTPClient:
    """Sends raw HTTP to a WebSite over an in-memory transport."""

    def __init__(self, node: Node, web_server: WebServer | None = None) -> None:
        self.node = node
        self.server = web_server or WebServer(node)
        self.site = WebSite(self.server, reactor=node.reactor)
        self.transports: list[StringTransport] = []
        #: the node's clock (a Clock in tests)
        self.clock: Any = node.reactor
        self._treq: Any = None

    def connect(self, peer: tuple[str, int] = ("127.0.0.1", 40000)) -> tuple[Any, StringTransport]:
        address = IPv4Address("TCP", *peer)
        protocol = self.site.buildProtocol(address)
        transport = StringTransport(peerAddress=address, hostAddress=IPv4Address("TCP", "127.0.0.1", 8080))
        protocol.makeConnection(transport)
        self.transports.append(transport)
        return protocol, transport

    def send_raw(self, data: bytes, advance: float | None = 0) -> bytes:
        """Send bytes on a new connection; returns everything written back."""
        protocol, transport = self.connect()
        protocol.dataReceived(data)
        if advance is not None:
            self.clock.advance(advance)
            self.pump()
        return transport.value()

    def pump(self, limit: int = 100000) -> None:
        """Run zero-delay calls (streaming producers) until none are left."""
        clock = self.clock
        for _ in range(limit):
            if not any(call.getTime() <= clock.seconds() for call in clock.getDelayedCalls()):
                return
            clock.advance(0)

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | list[tuple[str, str]] | None = None,
        body: bytes | str | None = None,
        advance: float | None = 0,
        version: str = "HTTP/1.1",
    ) -> Response:
        items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        names = {k.lower() for k, _ in items}
        if "host" not in names and version == "HTTP/1.1":
            items.append(("Host", "127.0.0.1:8080"))
        if isinstance(body, str):
            body = body.encode("utf-8")
        if body is not None and "content-length" not in names and "transfer-encoding" not in names:
            items.append(("Content-Length", str(len(body))))
        raw = f"{method} {path} {version}\r\n".encode("latin-1")
        raw += b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in items) + b"\r\n"
        raw += body or b""
        data = self.send_raw(raw, advance)
        response, _ = parse_response(data, head=method == "HEAD")
        assert response is not None, f"no complete response in {data!r}"
        return response

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post_json(self, path: str, value: Any, **kw: Any) -> Response:
        headers = dict(kw.pop("headers", {}) or {})
        headers.setdefault("Content-Type", "application/json")
        return self.request("POST", path, headers=headers, body=json.dumps(value), **kw)

    @property
    def treq(self) -> Any:
        """treq's ``StubTreq`` speaking HTTP to this client's site in memory
        (responses of actions that wait on the node's clock need
        :meth:`settle`)."""
        if self._treq is None:
            from treq.testing import StubTreq

            stub = StubTreq(None)
            # StubTreq serves a resource through a plain Site; serve ours instead
            agent = stub._agent
            agent._serverFactory = WebSite(self.server, reactor=agent._memoryReactor)
            self._treq = stub
        return self._treq

    def settle(self, deferred: Any, turns: int = 1000, step: float = 0.0) -> Any:
        """The result of a treq Deferred: flush the in-memory connection and
        run the node's clock (``step`` seconds a turn) until it fires."""
        from twisted.python.failure import Failure

        box: list[Any] = []
        deferred.addBoth(box.append)
        for _ in range(turns):
            self._treq.flush() if self._treq is not None else None
            if box:
                break
            self.clock.advance(step)
            self.pump()
        if not box:
            raise AssertionError(f"no response after {turns} turns")
        if isinstance(box[0], Failure):
            box[0].raiseException()
        return box[0]
