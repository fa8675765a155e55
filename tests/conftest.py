"""Fixtures shared by the test modules.

Plain helpers (nodes on a Clock, the in-memory HTTP client, ``free_port``,
``wait_for``) live in :mod:`tests.helpers`; the socket and websocket test
clients in :mod:`tests.socket_helpers` and :mod:`tests.wshelpers`; the real
``twistd`` process in :mod:`tests.e2e.twistd`.
"""

import os

import pytest
from twisted.logger import formatEvent, globalLogPublisher

from tests.e2e.twistd import AhtwistProcess
from tests.helpers import require
from tests.redis_server import RedisServer, require_redis_server

CHROMIUM = os.environ.get("AHTWIST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


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


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium through Playwright (never ``playwright
    install``); a missing browser fails the test unless ``AHTWIST_ALLOW_SKIP=1``."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "the playwright package (make install)")
    require(os.path.exists(CHROMIUM), f"{CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def log_lines():
    """A function giving the text of every log event emitted so far in the test."""
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield lambda: [formatEvent(e) for e in events]
    globalLogPublisher.removeObserver(events.append)
