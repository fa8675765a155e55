"""A real ``twistd -n ahtwist`` process for end-to-end tests.

:class:`Twistd` starts ``twistd -n --pidfile= ahtwist ARGS`` (on a free
127.0.0.1 port unless told otherwise), waits until it listens, collects its
output and stops it -- by its PID, with SIGTERM -- on exit.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

TWISTD = str(Path(sys.executable).parent / "twistd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"twistd exited early with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class Twistd:
    """``twistd -n --pidfile= ahtwist ARGS``; stopped (by PID) on exit."""

    def __init__(self, *args: str, web: bool = True, cwd: Path | str | None = None, env: dict | None = None):
        self.port = free_port() if web else None
        cmd = [TWISTD, "-n", "--pidfile=", "ahtwist", *args]
        if web:
            cmd += ["--web", f"tcp:{self.port}:interface=127.0.0.1"]
        self.cmd = cmd
        self.cwd = cwd
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.output = ""

    def start(self) -> "Twistd":
        self.proc = subprocess.Popen(
            self.cmd, cwd=self.cwd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        if self.port is not None:
            try:
                wait_port(self.port, proc=self.proc)
            except BaseException:
                self.stop()  # never leave a half-started server behind
                raise
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        self.output += out or ""
        return self.proc.returncode

    def __enter__(self) -> "Twistd":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def run_twistd(*args: str, timeout: float = 30, cwd: Path | str | None = None) -> subprocess.CompletedProcess:
    """Run twistd to completion (for start-up failures); output captured."""
    return subprocess.run(
        [TWISTD, "-n", "--pidfile=", "ahtwist", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )
