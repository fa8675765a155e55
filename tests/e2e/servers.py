"""Real servers for end-to-end tests: a ``twistd ahtwist`` process, line
clients over real TCP/TLS sockets, and a self-signed certificate.

Servers listen on 127.0.0.1 port 0; the port is read from the server's own
log line ``socket server listening on 127.0.0.1:<port> (<endpoint>)``, so
tests never race other processes for a port.
"""

import datetime
import ipaddress
import json
import os
import select
import socket
import ssl
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.e2e.twistd import TwistdProcess, environment
from tests.helpers import REPO


class TwistdServer(TwistdProcess):
    """``twistd -n ahtwist --web none --socket ...`` in a subprocess (started at once)."""

    def __init__(
        self,
        socket_endpoints: list[str],
        config: str = "",
        workdir: str | None = None,
        twistd_options: tuple[str, ...] = (),
    ) -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="ahtwist-e2e-"))
        config_path = self.workdir / "ahtwist.toml"
        config_path.write_text(config, "utf-8")
        args = ["--config", str(config_path), "--web", "none"]
        for endpoint in socket_endpoints:
            args += ["--socket", endpoint]
        super().__init__(
            args,
            cwd=self.workdir,
            env=server_environment(),
            log_path=self.workdir / "server.log",
            twistd_options=twistd_options,
        )
        self.start()
        listeners = self.wait_listening(len(socket_endpoints))
        self.ports: dict[str, int] = {endpoint: port for kind, port, endpoint in listeners if kind == "socket"}
        self.port = self.ports[socket_endpoints[0]]

    def connect(self, endpoint: str | None = None, **kw: Any) -> "LineClient":
        port = self.ports[endpoint] if endpoint else self.port
        return LineClient(socket.create_connection(("127.0.0.1", port), timeout=10), **kw)


def server_environment() -> dict[str, str]:
    """The test's environment without ``PORT`` (it would move the web server)
    and with this checkout first on ``PYTHONPATH``."""
    return environment(PORT=None, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


class LineClient:
    """A blocking client of the socket protocol (``\\r\\n`` lines)."""

    def __init__(self, sock: socket.socket, welcome: bool = True) -> None:
        self.sock = sock
        self.buffer = b""
        if welcome:
            assert self.line() == b'{"welcome":"Hello! Welcome to the actionhero api","context":"api"}'

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def line(self, timeout: float = 10) -> bytes:
        """The next line (without CRLF); raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no line; buffered {self.buffer[:200]!r}")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"closed; buffered {self.buffer[:200]!r}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def json(self, timeout: float = 10) -> Any:
        return json.loads(self.line(timeout))

    def ask(self, data: bytes | str, n: int = 1) -> list[bytes]:
        self.send(data)
        return [self.line() for _ in range(n)]

    def read_exactly(self, size: int, timeout: float = 10) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.buffer) < size:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def has_data(self) -> bool:
        """True if a line is buffered or bytes are waiting (no blocking)."""
        if self.buffer:
            return True
        ready, _, _ = select.select([self.sock], [], [], 0)
        return bool(ready)

    def closed_by_server(self, timeout: float = 10) -> bool:
        """Reads until EOF (True) or timeout (False); data read is kept."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return False
            except ConnectionResetError:
                return True
            if not chunk:
                return True
            self.buffer += chunk
        return False

    def reset(self) -> None:
        """Close abruptly (RST), as a crashed client would."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


def make_certificate(directory: str | Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost: (key.pem, cert.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    directory = Path(directory)
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def tls_client(port: int, cert_path: Path, welcome: bool = True) -> LineClient:
    """A LineClient over TLS that verifies the server against ``cert_path``."""
    context = ssl.create_default_context(cafile=str(cert_path))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return LineClient(context.wrap_socket(raw, server_hostname="localhost"), welcome=welcome)


class Reader(threading.Thread):
    """Drains a socket in the background, counting lines (a reading client)."""

    def __init__(self, client: LineClient) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.lines = 0
        self.stopped = False

    def run(self) -> None:
        sock = self.client.sock
        sock.settimeout(0.2)
        while not self.stopped:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            self.lines += chunk.count(b"\r\n")
