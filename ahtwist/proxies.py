"""Who the client is behind reverse proxies (``servers.web.trustedProxies``).

``X-Forwarded-For``, ``-Proto`` and ``-Port`` are written by whoever sent the
request, so they are believed only when the peer is one of the trusted
proxies.  Proxies *append* the address they received from
(``$proxy_add_x_forwarded_for`` in nginx, ``option forwardfor`` in HAProxy),
so the client is the right-most hop that is not itself a trusted proxy:
anything left of it was written by the client and is ignored.  The web
server and the websocket upgrade both call :meth:`TrustedProxies.client`.
"""

import ipaddress
from collections.abc import Iterable

import attrs

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: the default: a proxy on the same host only
LOOPBACK = ("127.0.0.0/8", "::1/128")


def parse_network(text: str) -> Network:
    """``10.0.0.0/8``, ``192.0.2.7`` or ``::1`` as a network (ValueError if not)."""
    return ipaddress.ip_network(text.strip(), strict=False)


def parse_hop(item: str) -> tuple[str, int | None] | None:
    """One X-Forwarded-For item as ``(ip, port or None)``; None when it is
    not an address (``1.2.3.4``, ``1.2.3.4:99``, ``::ffff:1.2.3.4``,
    ``[2001:db8::1]:443``, ``2001:db8::1``)."""
    item = item.strip()
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


def parse_forwarded_for(value: str) -> tuple[str, int | None] | None:
    """The first X-Forwarded-For item (see :func:`parse_hop`)."""
    return parse_hop(value.split(",")[0])


@attrs.frozen
class TrustedProxies:
    """The proxies whose forwarding headers are believed."""

    networks: tuple[Network, ...]

    @classmethod
    def from_strings(cls, texts: Iterable[str]) -> "TrustedProxies":
        return cls(tuple(parse_network(t) for t in texts))

    def trusts(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def client(
        self,
        peer_ip: str,
        peer_port: int,
        forwarded_for: str | None,
        forwarded_port: str | None,
    ) -> tuple[str, int]:
        """The client's ``(ip, port)``: the peer itself, unless it is a
        trusted proxy; then the right-most X-Forwarded-For hop that is not a
        trusted proxy (all trusted: the left-most), its port from the hop or
        ``X-Forwarded-Port``.  An unreadable hop ends the walk: the last
        trusted hop before it is the answer."""
        if not forwarded_for or not self.trusts(peer_ip):
            return peer_ip, peer_port
        ip, port = peer_ip, peer_port
        found = None
        for item in reversed(forwarded_for.split(",")):
            hop = parse_hop(item)
            if hop is None:
                break
            found = hop
            if not self.trusts(hop[0]):
                break
        if found is None:
            return ip, port
        ip, hop_port = found
        if hop_port is not None:
            port = hop_port
        if forwarded_port:
            text = forwarded_port.strip()
            if text.isdigit() and int(text) <= 65535:
                port = int(text)
        return ip, port

    def scheme(self, peer_ip: str, forwarded_proto: str | None, secure: bool) -> str:
        """``https``/``http`` as the client used it: ``X-Forwarded-Proto``
        from a trusted proxy, else whether this connection is TLS."""
        if forwarded_proto and self.trusts(peer_ip):
            return forwarded_proto.split(",")[0].strip().lower()
        return "https" if secure else "http"
