"""Which web pages may open a websocket (``servers.websocket.allowedOrigins``).

A browser sends the cookies of our site with an upgrade requested by *any*
site, and the websocket takes the fingerprint from that cookie; without an
origin check another site's page could act as the victim (cross-site
websocket hijacking).  Browsers always send ``Origin`` on an upgrade, so:

* no ``Origin`` -- not a browser, nothing to hijack: allowed;
* ``allowedOrigins`` empty (the default) -- the page must come from the host
  the request was sent to (same scheme, host and port), or from one of
  ``servers.web.allowedRequestHosts``;
* ``allowedOrigins = ["*"]`` -- any page (the old behaviour);
* otherwise the listed origins only; ``null`` (sandboxed frames, ``file:``
  pages) is refused unless listed.
"""

from collections.abc import Iterable

_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


def normalize_origin(origin: str) -> str:
    """``HTTPS://Example.com:443/`` -> ``https://example.com`` (scheme and host
    lowercased, default port and trailing slash dropped); ``null`` stays."""
    text = origin.strip().lower().rstrip("/")
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    host, colon, port = rest.rpartition(":")
    plain_host = host.endswith("]") or ":" not in host  # not a bare IPv6 address
    if colon and plain_host and _DEFAULT_PORTS.get(scheme) == port:
        rest = host
    return f"{scheme}://{rest}"


class OriginPolicy:
    """The allowed origins of one node's websocket endpoint."""

    def __init__(self, allowed_origins: Iterable[str], allowed_hosts: Iterable[str]) -> None:
        allowed = tuple(allowed_origins)
        self.any = "*" in allowed
        self.configured = bool(allowed)
        self.allowed = frozenset(normalize_origin(o) for o in allowed if o != "*")
        self.hosts = frozenset(normalize_origin(h) for h in allowed_hosts)

    def allows(self, origin: str | None, scheme: str, host: str | None) -> bool:
        """May a page from ``origin`` open a websocket sent to ``host`` over
        ``scheme`` (``http``/``https`` as the client used it)?"""
        if origin is None or self.any:
            return True
        wanted = normalize_origin(origin)
        if self.configured:
            return wanted in self.allowed
        if wanted == "null":
            return False
        if host and wanted == normalize_origin(f"{scheme}://{host}"):
            return True
        return wanted in self.hosts
