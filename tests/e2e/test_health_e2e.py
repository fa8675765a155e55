"""End to end: readiness follows a configured Redis that cannot be reached."""

import http.client
import json

from tests.e2e.twistd import AhtwistProcess
from tests.helpers import free_port


def get(server, path):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_readiness_is_503_while_the_configured_redis_is_unreachable():
    nothing_there = free_port()  # nothing listens: every connection attempt is refused
    with AhtwistProcess(extra=("--redis", f"redis://127.0.0.1:{nothing_there}/0")) as server:
        status, body = get(server, "/readyz")
        assert (status, json.loads(body)) == (503, {"ready": False, "problems": ["Redis unavailable"]})
        status, body = get(server, "/healthz")
        assert (status, body) == (200, b'{"status":"ok"}')
