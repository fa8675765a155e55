"""The Prometheus metrics endpoint, a Klein route (``[metrics]``, docs/metrics.md).

Mounted on the web server at ``metrics.path`` or, with ``metrics.endpoint``,
served by a site of its own on that endpoint (so the numbers can stay off the
public port).  Each GET renders the node's registry
(:func:`ahtwist.metrics.registry_for`): the cost is paid by the scrape, not by
requests.
"""

from typing import Any

from klein import Klein
from twisted.web.server import Site

from ahtwist.metrics import CONTENT_TYPE, registry_for, render


class MetricsApp:
    """``GET``/``HEAD`` of the metrics path for one node."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.registry = registry_for(node)
        self.app = Klein()
        self.app.route(node.config.metrics.path, methods=["GET", "HEAD"])(self.metrics)

    def metrics(self, request: Any) -> bytes:
        body = render(self.registry)
        request.setHeader(b"content-type", CONTENT_TYPE.encode())
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"content-length", b"%d" % len(body))
        return body


def metrics_site(node: Any, reactor: Any) -> Site:
    """A site serving only the metrics path (``metrics.endpoint``); any other
    path answers 404."""
    site = Site(MetricsApp(node).app.resource(), reactor=reactor)
    site.noisy = False
    site.displayTracebacks = False
    return site
