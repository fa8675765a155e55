"""A real ``redis-server`` for cluster tests, started on a free port and stopped by PID.

No fake Redis: the tests talk to the Debian ``redis-server`` binary.  It runs
without persistence (``save ""``, no AOF), so a restart starts empty -- the
worst case for a cluster, which must then re-assert its state.  When the
binary is missing the tests fail, unless ``AHTWIST_ALLOW_SKIP=1``.
"""

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.helpers import free_port, require, wait_for

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def require_redis_server() -> None:
    """Fail (or, with AHTWIST_ALLOW_SKIP=1, skip) when redis-server is missing."""
    require(Path(REDIS_SERVER).is_file(), "redis-server (apt-get install redis-server)")


class RedisServer:
    """One redis-server process on 127.0.0.1 (plain TCP, or TLS only)."""

    def __init__(
        self,
        port: int | None = None,
        password: str | None = None,
        tls: tuple[str, str] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        require_redis_server()
        self.port = port or free_port()
        self.password = password
        self.tls = tls  # (key file, cert file)
        self.extra_args = tuple(extra_args)  # --replicaof host port, --appendonly yes, ...
        self.dir = Path(tempfile.mkdtemp(prefix="ahtwist-redis-"))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}127.0.0.1:{self.port}/0"

    def command_line(self) -> list[str]:
        args = [REDIS_SERVER, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.dir), "--daemonize", "no", "--loglevel", "warning"]
        if self.tls:
            key, cert = self.tls
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-key-file", key,
                     "--tls-cert-file", cert, "--tls-ca-cert-file", cert, "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        if self.password:
            args += ["--requirepass", self.password]
        return args + list(self.extra_args)

    def start(self, timeout: float = 10.0) -> "RedisServer":
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 -- the child keeps it
        self.process = subprocess.Popen(
            self.command_line(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()

        def ready() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.dir / 'redis.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    pass
            except OSError:
                return False
            return bool(self.tls or self.ping())

        wait_for(ready, timeout, f"redis-server did not start on port {self.port}", step=0.02)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it (by PID); SIGKILL is a crash."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    # --- a tiny client for assertions (plain TCP only) ---------------------------

    def call(self, *args: str) -> bytes:
        """Send one command and return the raw reply bytes."""
        payload = f"*{len(args)}\r\n".encode()
        for arg in args:
            data = str(arg).encode()
            payload += b"$%d\r\n%s\r\n" % (len(data), data)
        if self.password:
            payload = b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(self.password), self.password.encode()) + payload
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(payload)
            time.sleep(0.05)
            s.settimeout(1)
            data = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except TimeoutError:
                    break
                if not chunk:
                    break
                data += chunk
                if data.endswith(b"\r\n"):
                    break
        return data[5:] if self.password and data.startswith(b"+OK\r\n") else data

    def ping(self) -> bool:
        try:
            return self.call("PING") == b"+PONG\r\n"
        except OSError:
            return False

    def flush(self) -> None:
        assert self.call("FLUSHALL") == b"+OK\r\n"

    def info(self, section: str) -> str:
        return self.call("INFO", section).decode()

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SentinelServer(RedisServer):
    """A ``redis-server --sentinel`` on 127.0.0.1 watching one master
    (``master_name``), quorum 1, quick to act: the master counts as down after
    1 s without answers."""

    def __init__(self, master_port: int, master_name: str = "mymaster") -> None:
        super().__init__()
        self.master_port = master_port
        self.master_name = master_name

    def command_line(self) -> list[str]:
        conf = self.dir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"sentinel monitor {self.master_name} 127.0.0.1 {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {self.master_name} 1000\n"
            f"sentinel failover-timeout {self.master_name} 10000\n"
            f"sentinel parallel-syncs {self.master_name} 1\n",
            "utf-8",
        )
        return [REDIS_SERVER, str(conf), "--sentinel", "--daemonize", "no", "--loglevel", "notice"]
