"""Built-in liveness and readiness endpoints, as Klein routes.

``GET /healthz`` (``servers.web.health.livenessPath``) answers 200 while the
process serves HTTP at all.  ``GET /readyz`` (``readinessPath``) answers 200
only when the node should get traffic: 503 while it is starting (initializers
not started yet), while it drains after SIGTERM, and while a backend reports a
problem (a configured Redis that is unreachable).  Both bodies are JSON.
"""

from typing import Any

from klein import Klein

from ahtwist.encoding import dumps_padded


class HealthApp:
    """The health routes of one node, at the configured paths."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.app = Klein()
        health = node.config.servers.web.health
        if health.livenessPath:
            self.app.route(health.livenessPath, methods=["GET", "HEAD"])(self.liveness)
        if health.readinessPath:
            self.app.route(health.readinessPath, methods=["GET", "HEAD"])(self.readiness)

    def liveness(self, request: Any) -> bytes:
        return _json(request, 200, {"status": "ok"})

    def readiness(self, request: Any) -> bytes:
        node = self.node
        if node.stopping:
            problems = ["stopping"]
        elif not node.ready:
            problems = ["starting"]
        else:
            problems = node.health_problems()
        if problems:
            return _json(request, 503, {"ready": False, "problems": problems})
        return _json(request, 200, {"ready": True})


def _json(request: Any, status: int, body: dict[str, Any]) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    data = dumps_padded(body, 0)
    request.setHeader(b"content-length", b"%d" % len(data))
    return data
