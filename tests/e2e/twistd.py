"""One real ``twistd -n --pidfile= ahtwist ...`` process for end-to-end tests.

Every end-to-end wrapper (the web, websocket, socket and cluster ones) is
this class with its own arguments: the process writes its output to a log
file the test can read, its listeners are found from its own ``<kind> server
listening on <host>:<port> (<endpoint>)`` lines (so ``tcp:0`` never races
other processes for a port) or by connecting to a port chosen beforehand, and
it is stopped by PID (SIGTERM, then SIGKILL if it hangs).
"""

import os
import re
import signal
import subprocess
import tempfile
from pathlib import Path

from ahtwist.testing import process as testing_process
from tests.helpers import REPO, free_port, wait_for, wait_port

TWISTD = testing_process.TWISTD
_LISTENING = re.compile(r"(\w+) server listening on \S+:(\d+) \((.*)\)")


class TwistdProcess:
    """``twistd -n --pidfile= [twistd_options] ahtwist ARGS`` with its output in ``log_path``."""

    process: subprocess.Popen
    #: a process that must be killed after SIGTERM fails the test (stop raises)
    hang_is_error = False

    def __init__(
        self,
        args: list[str],
        cwd: Path = REPO,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        twistd_options: tuple[str, ...] = (),
    ) -> None:
        self.command = [TWISTD, "-n", "--pidfile=", *twistd_options, "ahtwist", *args]
        self.cwd = cwd
        self.env = env
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="ahtwist-e2e-", suffix=".log")[1])

    def start(self) -> "TwistdProcess":
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                self.command, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    def _check_running(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"twistd exited early with {self.process.returncode}:\n{self.log()}")

    def listening(self) -> list[tuple[str, int, str]]:
        """``(kind, port, endpoint)`` of every listener the log reports, in order."""
        return [(m.group(1), int(m.group(2)), m.group(3)) for m in _LISTENING.finditer(self.log())]

    def wait_listening(
        self, count: int, timeout: float = 30.0, kind: str | None = None
    ) -> list[tuple[str, int, str]]:
        """Wait for ``count`` listeners (of ``kind``, if given); a process that
        exits or does not get there is stopped and reported with its log."""

        def enough() -> bool:
            self._check_running()
            return len([item for item in self.listening() if kind in (None, item[0])]) >= count

        try:
            wait_for(enough, timeout, "twistd did not start its listeners")
        except BaseException:
            self.stop()  # never leave a half-started server behind
            raise
        return self.listening()

    def wait_port(self, port: int, timeout: float = 20.0) -> None:
        """Wait until something accepts on ``127.0.0.1:port`` (a port chosen
        before the start)."""

        try:
            wait_port(port, timeout, proc=self.process)
        except RuntimeError as e:
            self.stop()
            raise RuntimeError(f"{e}:\n{self.log()}") from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Signal the process (by PID) and wait; SIGKILL if it does not exit
        in ``timeout`` seconds.  The exit status."""
        process = self.process
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                if self.hang_is_error:
                    raise
        return process.returncode

    def __enter__(self) -> "TwistdProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class AhtwistProcess(TwistdProcess):
    """``ahtwist --web tcp:<port>:interface=127.0.0.1 --socket none [--config FILE] EXTRA``.

    The port is chosen before the start (or given, so a restart keeps the
    address); the socket server is off unless ``extra`` asks for one.
    """

    hang_is_error = True

    def __init__(
        self,
        port: int | None = None,
        config: str | None = None,
        web: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.port = port or free_port()
        args = ["--web", web or f"tcp:{self.port}:interface=127.0.0.1", "--socket", "none"]
        if config:
            args += ["--config", config]
        super().__init__([*args, *extra])

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def url(self, path: str) -> str:
        return self.http_url + path

    def start(self) -> "AhtwistProcess":
        super().start()
        self.wait_port(self.port)
        webs = sum(1 for i, arg in enumerate(self.command) if arg == "--web" and self.command[i + 1] != "none")
        if webs > 1:  # more web listeners in ``extra``: all of them, not only the first
            self.wait_listening(webs, kind="web")
        return self

    def restart(self) -> "AhtwistProcess":
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        """Stop it and delete its log (kept with ``AHTWIST_KEEP_LOGS=1``)."""
        try:
            self.stop()
        finally:
            if os.environ.get("AHTWIST_KEEP_LOGS") != "1":
                self.log_path.unlink(missing_ok=True)


def run_twistd(*args: str, timeout: float = 30, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """:func:`ahtwist.testing.process.run_twistd` run from the checkout."""
    return testing_process.run_twistd(*args, timeout=timeout, cwd=cwd)


def environment(**changes: str | None) -> dict[str, str]:
    """This environment with ``changes`` (None removes a variable)."""
    env = dict(os.environ)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env
