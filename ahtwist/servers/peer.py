"""Who is on the other end: client address, cookies, TLS facts (one copy for every server).

The web request, the websocket upgrade request and any custom server read
the client's address (with ``X-Forwarded-For``/``X-Forwarded-Port``), its
cookies and its TLS state through these functions, so the rules live once.

Cookies follow RFC 6265 as browsers send them: ``name=value`` pairs split on
``;``, names and values trimmed, a value wrapped in double quotes loses the
quotes, and when a name repeats the **first** value wins (the browser sends
the most specific cookie first).
"""

import ipaddress
from collections.abc import Callable
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


def client_address(peer: Any, header: Callable[[str], str | None]) -> tuple[str, int]:
    """The client's ``(ip, port)``: the peer's, unless a valid
    ``X-Forwarded-For`` names another (``X-Forwarded-Port`` then gives the
    port).  ``header(name)`` returns a request header (lower-case name) or None."""
    ip, port = peer_address(peer)
    forwarded = header("x-forwarded-for")
    if forwarded:
        parsed = parse_forwarded_for(forwarded)
        if parsed is not None:
            ip, forwarded_port = parsed
            if forwarded_port is not None:
                port = forwarded_port
            fport = header("x-forwarded-port")
            if fport and fport.strip().isdigit():
                port = int(fport)
    return ip, port


def parse_forwarded_for(value: str) -> tuple[str, int | None] | None:
    """The first X-Forwarded-For item as ``(ip, port or None)``; None when
    it is not a valid address (the header is then ignored)."""
    item = value.split(",")[0].strip()
    if not item:
        return None
    port: int | None = None
    if "." in item or ":" not in item:
        if item.startswith("::ffff:"):
            item = item[7:]
        host, sep, port_text = item.partition(":")
        if sep:
            if not port_text.isdigit():
                return None
            port = int(port_text)
        item = host
    elif item.startswith("["):
        host, sep, rest = item[1:].partition("]")
        if not sep:
            return None
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                return None
            port = int(rest[1:])
        item = host
    try:
        ipaddress.ip_address(item)
    except ValueError:
        return None
    if port is not None and not 0 <= port <= 65535:
        return None
    return item, port


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
