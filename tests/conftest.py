"""Fixtures shared by the test modules.

Plain helpers (nodes on a Clock, the in-memory HTTP client, ``free_port``,
``wait_for``) live in :mod:`tests.helpers`; the socket and websocket test
clients in :mod:`tests.socket_helpers` and :mod:`tests.wshelpers`; the real
``twistd`` process in :mod:`tests.e2e.twistd`.
"""

import pytest

from tests.e2e.twistd import AhtwistProcess
from tests.redis_server import RedisServer, require_redis_server


@pytest.fixture(scope="module")
def redis_server():
    """One real ``redis-server`` for the module, on a free port; stopped by PID.

    Fails when the binary is missing (unless ``AHTWIST_ALLOW_SKIP=1``).
    """
    require_redis_server()
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server():
    """A real ``twistd ahtwist`` with the default config: web (HTTP and
    websocket) on a free loopback port, no socket server; one per module.

    Modules that need another kind of server (the socket end-to-end tests)
    define their own ``server`` fixture, which takes precedence.
    """
    process = AhtwistProcess().start()
    yield process
    process.cleanup()


@pytest.fixture
def own_server():
    """Like ``server``, but for one test only: it may stop and restart it."""
    process = AhtwistProcess().start()
    yield process
    process.cleanup()
