"""A small blocking websocket client on a real socket (for end-to-end tests).

It reuses the frame codec of ``tests/wshelpers.py``; TLS works by passing an
``ssl.SSLContext``.  Every read has a timeout so a broken server fails the
test instead of hanging it.
"""

import base64
import json
import os
import socket
import ssl
import struct
import time
from typing import Any
from urllib.parse import urlsplit

from tests.wshelpers import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, decode_frame, encode_frame


class BlockingWebSocket:
    def __init__(self, url: str, headers: dict[str, str] | None = None,
                 context: ssl.SSLContext | None = None, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "wss" else 80)
        sock = socket.create_connection((parts.hostname, port), timeout=timeout)
        if parts.scheme == "wss":
            sock = (context or ssl.create_default_context()).wrap_socket(
                sock, server_hostname=parts.hostname
            )
        self.sock = sock
        self.timeout = timeout
        self.close_code: int | None = None
        self._buffer = b""
        key = base64.b64encode(os.urandom(16)).decode()
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed during the handshake: {head!r}")
            head += chunk
        self.response_head, _, self._buffer = head.partition(b"\r\n\r\n")
        self.status = int(self.response_head.split(b" ", 2)[1])

    def send(self, value: Any) -> None:
        self.send_frame(OP_TEXT, json.dumps(value, separators=(",", ":")).encode())

    def send_frame(self, opcode: int, payload: bytes) -> None:
        self.sock.sendall(encode_frame(opcode, payload))

    def recv_frame(self, timeout: float | None = None) -> tuple[int, bytes]:
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            frame, self._buffer = decode_frame(self._buffer)
            if frame is not None:
                opcode, payload = frame
                if opcode == OP_PING:
                    self.send_frame(OP_PONG, payload)
                    continue
                if opcode == OP_CLOSE and len(payload) >= 2:
                    self.close_code = struct.unpack("!H", payload[:2])[0]
                return opcode, payload
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame from the server")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the server")
            self._buffer += chunk

    def recv(self, timeout: float | None = None) -> Any:
        """The next text frame, JSON-decoded (a close frame raises)."""
        opcode, payload = self.recv_frame(timeout)
        if opcode != OP_TEXT:
            raise ConnectionError(f"expected a text frame, got opcode {opcode} {payload!r}")
        return json.loads(payload)

    def request(self, value: Any, timeout: float | None = None) -> Any:
        self.send(value)
        return self.recv(timeout)

    def wait_closed(self, timeout: float = 10.0) -> int | None:
        """Read until the server's close frame; answer it; return its code."""
        deadline = time.monotonic() + timeout
        while self.close_code is None:
            opcode, _ = self.recv_frame(max(deadline - time.monotonic(), 0.01))
        self.send_frame(OP_CLOSE, struct.pack("!H", self.close_code))
        return self.close_code

    def close(self) -> None:
        try:
            self.send_frame(OP_CLOSE, struct.pack("!H", 1000))
        except OSError:
            pass
        self.sock.close()
