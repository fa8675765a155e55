"""Socket-server test helpers: :mod:`ahtwist.testing.socket_client`, re-exported."""

from ahtwist.testing.socket_client import (
    GOODBYE,
    NOT_FOUND,
    UUID_RE,
    WELCOME,
    FakeClient,
    FlowControlTransport,
    assert_lines,
    connect,
    match_line,
    template_regex,
)

__all__ = [
    "GOODBYE",
    "NOT_FOUND",
    "UUID_RE",
    "WELCOME",
    "FakeClient",
    "FlowControlTransport",
    "assert_lines",
    "connect",
    "match_line",
    "template_regex",
]
