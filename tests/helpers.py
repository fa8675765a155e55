"""Test helpers: configs from TOML text, nodes on a Clock, the in-memory HTTP
client (:mod:`ahtwist.testing`'s -- the helpers users get for their apps --
re-exported under the names the project's tests use), and for tests with real
processes ``free_port``, ``wait_port`` and ``wait_for`` (the one polling loop), also
:mod:`ahtwist.testing`'s.
"""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ahtwist.testing import ManualClock, config_from, make_node
from ahtwist.testing.http_client import HTTPClient, Response, parse_response
from ahtwist.testing.process import free_port, wait_for, wait_port

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
