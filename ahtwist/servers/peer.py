"""Who is on the other end: peer address, cookies, TLS facts (one copy for every server).

The web request, the websocket upgrade request and any custom server read
the peer's address, the client's cookies and its TLS state through these
functions, so the rules live once (``X-Forwarded-*`` from trusted proxies:
:mod:`ahtwist.proxies`).

Cookies follow RFC 6265 as browsers send them: ``name=value`` pairs split on
``;``, names and values trimmed, a value wrapped in double quotes loses the
quotes, and when a name repeats the **first** value wins (the browser sends
the most specific cookie first).
"""

from typing import Any

from twisted.internet.interfaces import ISSLTransport


def parse_cookies(header: str | None) -> dict[str, str]:
    """``a=1; b="2"`` -> ``{"a": "1", "b": "2"}`` (see the module docstring)."""
    cookies: dict[str, str] = {}
    if not header:
        return cookies
    for item in header.split(";"):
        name, sep, value = item.partition("=")
        name = name.strip()
        if sep and name and name not in cookies:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            cookies[name] = value
    return cookies


def peer_address(peer: Any) -> tuple[str, int]:
    """``(host, port)`` of a Twisted address; a unix socket is ``("unix", 0)``."""
    return getattr(peer, "host", None) or "unix", getattr(peer, "port", 0) or 0


def is_secure(transport: Any) -> bool:
    """True when the connection is TLS."""
    return transport is not None and ISSLTransport.providedBy(transport)


def peer_certificate(transport: Any) -> Any:
    """The client's TLS certificate (a ``cryptography`` ``x509.Certificate``)
    when it presented one, else None."""
    if not is_secure(transport):
        return None
    try:
        cert = transport.getPeerCertificate()
    except Exception:
        return None
    return cert.to_cryptography() if cert is not None else None
