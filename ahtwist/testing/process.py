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
from collections.abc import Callable
from pathlib import Path
from typing import Any

TWISTD = str(Path(sys.executable).parent / "twistd")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a server that must be told
    its port in advance; prefer ``tcp:0`` and reading the port from the log)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(
    predicate: Callable[[], Any],
    timeout: float,
    what: str | Callable[[], str] = "condition",
    step: float = 0.05,
) -> float:
    """Poll ``predicate()`` (it may raise to give up) until it is true; the
    seconds waited.  After ``timeout`` seconds: ``AssertionError(what)``
    (``what`` may be a callable, for a message showing the last state).

    For tests that wait on other processes; a test running inside the
    reactor must not block it (sleep with ``deferLater`` instead).
    """
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what() if callable(what) else what} (after {timeout} s)")
        time.sleep(step)
    return time.monotonic() - started


def wait_port(port: int, timeout: float = 20.0, proc: "subprocess.Popen[Any] | None" = None) -> None:
    """Wait until something accepts on ``127.0.0.1:port``; RuntimeError when
    ``proc`` exits first (with its output, if piped) or nothing listens in time."""

    def accepting() -> bool:
        if proc is not None and proc.poll() is not None:
            output = proc.stdout.read() if proc.stdout else ""
            raise RuntimeError(f"twistd exited early with {proc.returncode}: {output}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    try:
        wait_for(accepting, timeout)
    except AssertionError:
        raise RuntimeError(f"nothing listens on 127.0.0.1:{port}") from None


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

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def run_twistd(*args: str, timeout: float = 30, cwd: Path | str | None = None) -> subprocess.CompletedProcess:
    """Run twistd to completion (for start-up failures); output captured."""
    return subprocess.run(
        [TWISTD, "-n", "--pidfile=", "ahtwist", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )
