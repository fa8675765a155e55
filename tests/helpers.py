"""Test helpers: configs from TOML text, nodes on a Clock, the in-memory HTTP client.

They are :mod:`ahtwist.testing`'s -- the helpers users get for their apps --
re-exported under the names the project's tests use.
"""

import os
from pathlib import Path

from ahtwist.testing import ManualClock, config_from, make_node
from ahtwist.testing.http_client import HTTPClient, Response, parse_response

__all__ = [
    "REPO",
    "HTTPClient",
    "ManualClock",
    "Response",
    "config_from",
    "make_node",
    "parse_response",
    "require",
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
