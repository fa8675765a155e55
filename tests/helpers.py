"""Test helpers: configs from TOML text, nodes on a Clock, the in-memory HTTP
client (:mod:`ahtwist.testing`'s -- the helpers users get for their apps --
re-exported under the names the project's tests use), and for tests with real
processes ``free_port`` and ``wait_for`` (the one polling loop).
"""

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ahtwist.testing import ManualClock, config_from, make_node
from ahtwist.testing.http_client import HTTPClient, Response, parse_response

__all__ = [
    "REPO",
    "HTTPClient",
    "ManualClock",
    "Response",
    "config_from",
    "free_port",
    "make_node",
    "parse_response",
    "require",
    "wait_for",
    "wait_for_in_reactor",
    "wait_port",
]

REPO = Path(__file__).resolve().parent.parent


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
