"""Test helpers: configs from TOML text, nodes on a Clock, an in-memory HTTP
client, and for tests with real processes ``free_port`` and ``wait_for`` (the
one polling loop).

The HTTP client drives the real :class:`~ahtwist.web.site.WebSite` (real
channel, real request parsing) over a ``StringTransport`` -- no sockets --
and parses the raw response bytes, so tests can assert exact status lines,
headers and bodies.
"""

import json
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from ahtwist.actions.loader import Plugins
from ahtwist.config import Config, Overrides, load_config
from ahtwist.node import Node
from ahtwist.tap import build_node
from ahtwist.web.api import WebServer
from ahtwist.web.site import WebSite

REPO = Path(__file__).resolve().parent.parent


def config_from(text: str = "", directory: str | None = None, **overrides: Any) -> Config:
    """Load a Config from TOML text (isolated from the environment).

    The file is written in ``directory`` (default: a fresh temp dir), so
    relative paths in ``text`` resolve there.
    """
    directory = directory or tempfile.mkdtemp(prefix="ahtwist-test-")
    path = Path(directory, "ahtwist.toml")
    path.write_text(text, "utf-8")
    return load_config(str(path), environ={}, overrides=Overrides(**overrides))


class ManualClock(Clock):
    """A Clock that starts at a realistic epoch time (so ms timestamps look real)."""

    def __init__(self, start: float = 1795627006.0) -> None:
        super().__init__()
        self.rightNow = start


def make_node(text: str = "", clock: Clock | None = None, plugins: Iterable[Any] = (), **kw: Any) -> Node:
    """A Node on a ManualClock with the built-in actions plus ``plugins``
    (Action / middleware classes)."""
    node = build_node(config_from(text, **kw), clock or ManualClock())
    found = Plugins()
    for obj in plugins:
        found.add(obj)
    node.register(found)
    node.start()
    return node


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
    headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]]
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
            self.node.reactor.advance(advance)
            self.pump()
        return transport.value()

    def pump(self, limit: int = 100000) -> None:
        """Run zero-delay calls (streaming producers) until none are left."""
        clock = self.node.reactor
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


def require(found: bool, what: str) -> None:
    """A test needing ``what`` (a binary, a package) fails loudly when it is
    missing -- CI must run it -- unless AHTWIST_ALLOW_SKIP=1, which CI never sets."""
    if found:
        return
    import pytest

    if os.environ.get("AHTWIST_ALLOW_SKIP") == "1": pytest.skip(f"{what} is missing (AHTWIST_ALLOW_SKIP=1)")  # noqa: E701
    pytest.fail(f"{what} is missing; .ci/run installs it (set AHTWIST_ALLOW_SKIP=1 to skip)")


# --- real sockets and processes ------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a server that must be told
    its port in advance; prefer ``tcp:0`` and reading the port from the log)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(
    predicate: Callable[[], Any],
    timeout: float,
    what: str | Callable[[], str] = "condition",
    step: float = 0.05,
) -> float:
    """Poll ``predicate()`` (it may raise to give up) until it is true; the
    seconds waited.  After ``timeout`` seconds: ``AssertionError(what)``
    (``what`` may be a callable, for a message showing the last state).

    For tests that wait on other processes (twistd, redis-server); a test
    running inside the reactor uses :func:`wait_for_in_reactor` instead.
    """
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what() if callable(what) else what} (after {timeout} s)")
        time.sleep(step)
    return time.monotonic() - started


def wait_port(port: int, process: Any = None, timeout: float = 20.0) -> None:
    """Wait until something accepts on ``127.0.0.1:port``; RuntimeError when
    ``process`` (a Popen) exits first or nothing listens in time."""

    def accepting() -> bool:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process exited early with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    try:
        wait_for(accepting, timeout)
    except AssertionError:
        raise RuntimeError(f"nothing listens on 127.0.0.1:{port}") from None


async def wait_for_in_reactor(
    predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition", step: float = 0.02
) -> None:
    """:func:`wait_for` for a test running in the global reactor: it sleeps
    with ``deferLater``, so the reactor keeps working while it waits."""
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    waited = 0.0
    while not predicate():
        if waited >= timeout:
            raise AssertionError(f"{what} not met within {timeout} s")
        await deferLater(reactor, step, lambda: None)
        waited += step
