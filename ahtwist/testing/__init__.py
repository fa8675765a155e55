"""Helpers for testing ahtwist apps and ahtwist itself (ActionHero's ``specHelper``).

Everything runs in memory, on a :class:`ManualClock`, through the real code:

* :class:`AppTester` -- an app's node built from its config file (its
  actions, middleware and initializers); :meth:`AppTester.run_action` runs an
  action as a ``web``, ``socket`` or ``websocket`` connection and returns the
  response;
* :meth:`AppTester.http` -- :class:`HTTPClient`, raw HTTP through the real
  site, with treq's ``StubTreq`` as :attr:`HTTPClient.treq`;
* :meth:`AppTester.socket` -- :class:`SocketClient`, the line protocol;
* :meth:`AppTester.websocket` -- :class:`WebSocketClient`, RFC 6455 frames
  through the real upgrade;
* :class:`Twistd` -- a real ``twistd ahtwist`` process for end-to-end tests
  (``ahtwist new`` writes a pytest fixture around it in the app's
  ``tests/conftest.py``).
"""

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from ahtwist.actions.loader import Plugins
from ahtwist.config import Config, Overrides, load_config
from ahtwist.connection import Connection
from ahtwist.node import Node
from ahtwist.testing.http_client import HTTPClient, Response, parse_response
from ahtwist.testing.process import Twistd, free_port, run_twistd, wait_port
from ahtwist.testing.socket_client import FakeClient, assert_lines, connect, match_line

if TYPE_CHECKING:
    from ahtwist.testing.websocket_client import WSClient

#: an in-memory socket client (the line protocol)
SocketClient = FakeClient

__all__ = [
    "AppTester",
    "HTTPClient",
    "ManualClock",
    "Response",
    "SocketClient",
    "Twistd",
    "assert_lines",
    "config_from",
    "connect",
    "free_port",
    "make_node",
    "match_line",
    "parse_response",
    "run_twistd",
    "settle",
    "wait_port",
]


class ManualClock(Clock):
    """A Clock that starts at a realistic epoch time (so ms timestamps look real)."""

    def __init__(self, start: float = 1795627006.0) -> None:
        super().__init__()
        self.rightNow = start


def config_from(text: str = "", directory: str | None = None, **overrides: Any) -> Config:
    """A Config from TOML text, isolated from the environment.

    The file is written in ``directory`` (default: a fresh temp dir), so
    relative paths in ``text`` resolve there."""
    directory = directory or tempfile.mkdtemp(prefix="ahtwist-test-")
    path = Path(directory, "ahtwist.toml")
    path.write_text(text, "utf-8")
    return load_config(str(path), environ={}, overrides=Overrides(**overrides))


def make_node(
    text: str = "", clock: Clock | None = None, plugins: Iterable[Any] = (), **kw: Any
) -> Node:
    """A started Node on a ManualClock with the built-in actions plus
    ``plugins`` (Action / middleware classes); ``text`` is TOML config."""
    from ahtwist.tap import build_node

    node = build_node(config_from(text, **kw), clock or ManualClock())
    found = Plugins()
    for obj in plugins:
        found.add(obj)
    node.register(found)
    node.start()
    return node


def settle(deferred: Deferred[Any], clock: Any, turns: int = 10000) -> Any:
    """The result of ``deferred``, running ``clock``'s timers (jumping to the
    next one each turn) until it fires; a failure is raised."""
    box: list[Any] = []
    deferred.addBoth(box.append)
    for _ in range(turns):
        if box:
            break
        calls = clock.getDelayedCalls()
        if not calls:
            break
        clock.advance(max(0.0, min(c.getTime() for c in calls) - clock.seconds()))
    if not box:
        raise AssertionError("the Deferred did not fire (nothing left on the clock)")
    if isinstance(box[0], Failure):
        box[0].raiseException()
    return box[0]


class AppTester:
    """An app's node in memory, built from its config file like ``twistd
    ahtwist --config FILE`` builds it (actions, middleware, initializers
    started), on a :class:`ManualClock`; the environment is ignored."""

    def __init__(self, config: str | os.PathLike[str] | None = None, *, start: bool = True) -> None:
        from ahtwist.initializers import Initializers, load_initializers
        from ahtwist.tap import build_node

        self.clock = ManualClock()
        self.config = load_config(config, environ={})
        self.node = build_node(self.config, self.clock)
        self.node.load_plugins()
        self.initializers = Initializers(
            self.node, load_initializers(self.config.general.paths.initializers).initializers
        )
        self._port = 40000
        settle(self.node.start(), self.clock)
        if start:
            settle(self.initializers.start(), self.clock)
            self.node.ready = True

    def __enter__(self) -> "AppTester":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        """Drain-free stop: the initializers' ``stop`` hooks run."""
        self.node.stopping = True
        settle(self.initializers.stop(), self.clock)

    def run_action(
        self, name: str, params: dict[str, Any] | None = None, *, connection_type: str = "web"
    ) -> dict[str, Any]:
        """Run action ``name`` with ``params`` as a ``connection_type``
        client; the response dict, with ``error`` when the action failed.
        Timers (``sleepTest``) are run to completion on the clock."""
        self._port += 1
        connection = Connection(connection_type, "127.0.0.1", self._port, self.node.now_ms())
        self.node.add_connection(connection)
        try:
            data = settle(
                self.node.processor.process(connection, {**(params or {}), "action": name}), self.clock
            )
        finally:
            self.node.destroy_connection(connection)
        response = dict(data.response) if isinstance(data.response, dict) else {"response": data.response}
        if data.error is not None:
            response["error"] = data.error
        return response

    def http(self) -> HTTPClient:
        """An in-memory HTTP client of this node's web server (and treq)."""
        return HTTPClient(self.node)

    def socket(self) -> FakeClient:
        """A connected in-memory socket client, past its welcome line."""
        from ahtwist.socket import SocketFactory

        if not hasattr(self, "_socket_factory"):
            self._socket_factory = SocketFactory(self.node, self.clock)
        self._port += 1
        return connect(self._socket_factory, 1)[0]

    def websocket(self, **handshake: Any) -> "WSClient":
        """An open in-memory websocket client, past its welcome message."""
        from ahtwist.testing.websocket_client import WSHarness

        if not hasattr(self, "_ws"):
            self._ws = WSHarness(self.node)
        return self._ws.client(**handshake)
