"""Socket-server test helpers: :mod:`ahtwist.testing.socket_client` (the
in-memory client and exact line matching), re-exported, plus reply templates."""

from typing import Any

from ahtwist.socket import SocketFactory
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
from tests.helpers import make_node

__all__ = [
    "GOODBYE",
    "NOT_FOUND",
    "UUID_RE",
    "WELCOME",
    "FakeClient",
    "FlowControlTransport",
    "assert_lines",
    "connect",
    "error",
    "factory_for",
    "match_line",
    "ok_data",
    "template_regex",
]


def ok_data(data: str, count: int) -> str:
    """The template of a verb's OK reply with ``data``."""
    return '{"status":"OK","context":"response","data":%s,"messageCount":%d,"messageId":"<uuid>"}' % (
        data,
        count,
    )


def error(text: str, count: int, data: str | None = None) -> str:
    """The template of a verb's error reply (with ``data`` when given)."""
    extra = f',"data":{data}' if data is not None else ""
    return '{"status":"%s","error":"%s","context":"response"%s,"messageCount":%d,"messageId":"<uuid>"}' % (
        text,
        text,
        extra,
        count,
    )


def factory_for(toml: str = "", plugins: Any = (), **kw: Any) -> SocketFactory:
    """A socket factory on a fresh node (``make_node``) from TOML text and plugins."""
    return SocketFactory(make_node(toml, plugins=plugins, **kw))

