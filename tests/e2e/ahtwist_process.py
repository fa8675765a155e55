"""A real ``twistd ahtwist`` process for end-to-end tests (started and stopped by PID).

It listens on 127.0.0.1 only, on a free port found at start (or a given one,
so a restart keeps the address), with the socket server off unless asked.
Its log goes to a file the test can read when something fails.
"""

import os
import signal
import subprocess
import tempfile
from pathlib import Path

from tests.e2e.process import REPO, TWISTD, free_port, wait_port


def wait_for_port(port: int, timeout: float = 20.0, process: subprocess.Popen | None = None) -> None:
    wait_port(port, timeout, proc=process)


class AhtwistProcess:
    """``twistd -n --pidfile= ahtwist --web tcp:<port>:interface=127.0.0.1 --socket none``."""

    def __init__(self, port: int | None = None, config: str | None = None, web: str | None = None,
                 extra: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.config = config
        self.web = web or f"tcp:{self.port}:interface=127.0.0.1"
        self.extra = extra
        self.process: subprocess.Popen | None = None
        self.log_path = Path(tempfile.mkstemp(prefix="ahtwist-e2e-", suffix=".log")[1])

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> "AhtwistProcess":
        command = [str(TWISTD), "-n", "--pidfile=", "ahtwist", "--web", self.web, "--socket", "none"]
        if self.config:
            command += ["--config", self.config]
        command += list(self.extra)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        try:
            wait_for_port(self.port, process=self.process)
        except BaseException:
            self.stop()  # never leave a half-started server behind
            raise
        return self

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (the graceful stop), then SIGKILL if it hangs; the exit code."""
        process = self.process
        if process is None or process.poll() is not None:
            return process.returncode if process else None
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise

    def restart(self) -> "AhtwistProcess":
        self.stop()
        return self.start()

    def log_text(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            if os.environ.get("AHTWIST_KEEP_LOGS") != "1":
                self.log_path.unlink(missing_ok=True)
