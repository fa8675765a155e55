"""An in-memory websocket client driving the real WebSite (no sockets).

The upgrade request goes through :class:`~ahtwist.web.site.WebSite` and
:class:`~ahtwist.web.api.WebServer` routing exactly as on a real listener,
Autobahn takes the transport over, and the test speaks RFC 6455 frames by
hand (encoded and decoded here), so tests can assert exact frames, close
codes and protocol errors that a polite client library would never send.
Time is the node's clock (e.g. :class:`~ahtwist.testing.ManualClock`): ``pump()`` runs the
calls due now (room fan-out, closes).
"""

import base64
import json
import os
import struct
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from ahtwist.node import Node
from ahtwist.web.api import WebServer
from ahtwist.web.site import WebSite
from ahtwist.websocket import WebSocketServer, websocket_resource

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def mask_bytes(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``mask`` (fast for large payloads)."""
    if mask == b"\0\0\0\0" or not payload:
        return payload
    repeated = (mask * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(payload), "big"
    )


def encode_frame(
    opcode: int, payload: bytes, fin: bool = True, mask: bytes | None = b"\x37\xfa\x21\x3d"
) -> bytes:
    """One client frame (masked unless ``mask`` is None)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    bit = 0x80 if mask is not None else 0
    n = len(payload)
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if mask is None:
        return head + payload
    return head + mask + mask_bytes(payload, mask)


def decode_frame(buffer: bytes) -> tuple[tuple[int, bytes] | None, bytes]:
    """The first complete frame of ``buffer`` (or None) and the rest."""
    if len(buffer) < 2:
        return None, buffer
    opcode = buffer[0] & 0x0F
    masked = buffer[1] & 0x80
    n = buffer[1] & 0x7F
    at = 2
    if n == 126:
        if len(buffer) < 4:
            return None, buffer
        n = struct.unpack("!H", buffer[2:4])[0]
        at = 4
    elif n == 127:
        if len(buffer) < 10:
            return None, buffer
        n = struct.unpack("!Q", buffer[2:10])[0]
        at = 10
    mask = b""
    if masked:
        mask = buffer[at : at + 4]
        at += 4
    if len(buffer) < at + n:
        return None, buffer
    payload = buffer[at : at + n]
    if masked:
        payload = mask_bytes(payload, mask)
    return (opcode, payload), buffer[at + n :]


def decode_frames(buffer: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Complete server frames at the front of ``buffer`` and the remainder."""
    frames: list[tuple[int, bytes]] = []
    while True:
        frame, buffer = decode_frame(buffer)
        if frame is None:
            return frames, buffer
        frames.append(frame)


class SwappableTransport(StringTransport):
    """A server-side StringTransport whose protocol can be replaced (the
    websocket takeover sets ``transport.protocol``) and which tells the
    current protocol when the connection goes away, on the next clock turn
    as a reactor would."""

    def __init__(self, clock: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self.clock = clock
        self.protocol: Any = None
        self.lost = False
        self.aborted = False

    def unregisterProducer(self) -> None:
        """Like Twisted's TCP and TLS transports, not an error when nothing is
        registered (Autobahn unregisters whenever it drops a connection)."""
        self.producer = None
        self.streaming = None

    def loseConnection(self) -> None:
        if not self.disconnecting:
            self.disconnecting = True
            self.clock.callLater(0, self._lose, ConnectionDone())

    def abortConnection(self) -> None:
        self.aborted = True
        if not self.lost:
            self.disconnecting = True
            self.clock.callLater(0, self._lose, ConnectionAborted())

    def _lose(self, reason: Exception) -> None:
        if not self.lost:
            self.lost = True
            self.protocol.connectionLost(Failure(reason))

    def client_gone(self) -> None:
        """The peer closed the TCP connection."""
        self.disconnecting = True
        self.clock.callLater(0, self._lose, ConnectionDone())


class WSClient:
    """One websocket client over a :class:`SwappableTransport`."""

    def __init__(self, harness: "WSHarness", peer: tuple[str, int]) -> None:
        self.harness = harness
        self.clock = harness.node.reactor
        address = IPv4Address("TCP", *peer)
        channel = harness.site.buildProtocol(address)
        self.transport = SwappableTransport(
            self.clock,
            peerAddress=address,
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
        )
        self.transport.protocol = channel
        channel.makeConnection(self.transport)
        self.response_head = b""
        self._buffer = b""
        self.close_code: int | None = None
        self.close_reason = b""

    # --- handshake -----------------------------------------------------------

    def handshake(
        self,
        path: str = "/ws",
        headers: dict[str, str] | None = None,
        key: str | None = None,
        request_line: str | None = None,
    ) -> bytes:
        """Send an upgrade request; returns the raw response head."""
        key = key or base64.b64encode(os.urandom(16)).decode()
        items = {
            "Host": "127.0.0.1:8080",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": key,
            "Sec-WebSocket-Version": "13",
        }
        items.update(headers or {})
        line = request_line or f"GET {path} HTTP/1.1"
        raw = f"{line}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in items.items() if v is not None)
        self.send_raw(raw.encode("latin-1") + b"\r\n")
        data = self.transport.value()
        self.transport.clear()
        head, sep, rest = data.partition(b"\r\n\r\n")
        self.response_head = head + sep
        self._buffer = rest
        return self.response_head

    @property
    def status(self) -> int:
        return int(self.response_head.split(b" ", 2)[1])

    def response_headers(self) -> dict[str, str]:
        lines = self.response_head.decode("latin-1").split("\r\n")[1:]
        pairs = [line.split(":", 1) for line in lines if ":" in line]
        return {k.strip().lower(): v.strip() for k, v in pairs}

    # --- frames ----------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        self.transport.protocol.dataReceived(data)

    def send_frame(self, opcode: int, payload: bytes, **kw: Any) -> None:
        self.send_raw(encode_frame(opcode, payload, **kw))

    def send_text(self, text: str | bytes) -> None:
        self.send_frame(OP_TEXT, text.encode("utf-8") if isinstance(text, str) else text)

    def send(self, value: Any) -> None:
        """One JSON text frame (compact, key order kept)."""
        self.send_text(json.dumps(value, separators=(",", ":")))

    def frames(self) -> list[tuple[int, bytes]]:
        """Every frame received since the last call (pumping the clock first)."""
        self.pump()
        self._buffer += self.transport.value()
        self.transport.clear()
        frames, self._buffer = decode_frames(self._buffer)
        for opcode, payload in frames:
            if opcode == OP_CLOSE and self.close_code is None and len(payload) >= 2:
                self.close_code = struct.unpack("!H", payload[:2])[0]
                self.close_reason = payload[2:]
        return frames

    def texts(self) -> list[bytes]:
        """The raw bytes of every text frame received since the last call."""
        return [payload for opcode, payload in self.frames() if opcode == OP_TEXT]

    def messages(self) -> list[Any]:
        """Every text frame received since the last call, JSON-decoded."""
        return [json.loads(text) for text in self.texts()]

    def request(self, value: Any) -> list[Any]:
        """Send one JSON frame; return the messages it caused (after pumping)."""
        self.send(value)
        return self.messages()

    def close(self, code: int = 1000) -> None:
        """Client-initiated closing handshake, then the TCP close."""
        self.send_frame(OP_CLOSE, struct.pack("!H", code))

    def pump(self) -> None:
        self.harness.pump()

    @property
    def lost(self) -> bool:
        self.pump()
        return self.transport.lost


class WSHarness:
    """A node's web server with the websocket resource mounted, in memory."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.web_server = WebServer(node)
        self.websockets: WebSocketServer
        self.websockets, self.web_server.websocket_resource = websocket_resource(
            node, node.reactor
        )
        self.site = WebSite(self.web_server, reactor=node.reactor)
        self._port = 50000

    def client(self, handshake: bool = True, **kw: Any) -> WSClient:
        """A new client; with ``handshake`` it is open and past the welcome."""
        self._port += 1
        client = WSClient(self, ("127.0.0.1", self._port))
        if handshake:
            client.handshake(**kw)
            assert client.status == 101, client.response_head
            welcome = client.messages()
            assert welcome == [
                {"welcome": "Hello! Welcome to the actionhero api", "context": "api"}
            ], welcome
        return client

    def pump(self) -> None:
        """Run everything due now (several turns: a call may schedule another)."""
        clock: Any = self.node.reactor  # a Clock in tests
        for _ in range(20):
            due = [c for c in clock.getDelayedCalls() if c.getTime() <= clock.seconds()]
            if not due:
                break
            clock.advance(0)
