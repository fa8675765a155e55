"""Trusted proxies (issue 12, item 3): forwarding headers are believed only
from ``servers.web.trustedProxies``, and the client is the right-most hop that
is not a trusted proxy -- on the web server and the websocket upgrade alike."""

import pytest

from ahtwist.errors import ConfigError
from ahtwist.proxies import TrustedProxies
from tests.helpers import HTTPClient, config_from, make_node
from tests.wshelpers import WSHarness

LOOPBACK = TrustedProxies.from_strings(["127.0.0.0/8", "::1/128"])


def test_headers_from_an_untrusted_peer_are_ignored():
    assert LOOPBACK.client("203.0.113.9", 5555, "1.2.3.4", "80") == ("203.0.113.9", 5555)


def test_right_most_untrusted_hop_wins():
    # nginx appended the address it saw (198.51.100.7) after the client's lie
    assert LOOPBACK.client("127.0.0.1", 40000, "1.2.3.4, 198.51.100.7", None) == ("198.51.100.7", 40000)
    # two trusted proxies in a row, then the client
    proxies = TrustedProxies.from_strings(["10.0.0.0/8", "127.0.0.1"])
    assert proxies.client("127.0.0.1", 1, "6.6.6.6, 198.51.100.7, 10.0.0.2", "8443") == ("198.51.100.7", 8443)
    # every hop trusted: the left-most
    assert proxies.client("127.0.0.1", 1, "10.1.1.1, 10.0.0.2", None) == ("10.1.1.1", 1)


def test_an_unreadable_hop_stops_the_walk_at_the_last_good_one():
    proxies = TrustedProxies.from_strings(["10.0.0.0/8", "127.0.0.1"])
    assert proxies.client("127.0.0.1", 1, "198.51.100.7, garbage, 10.0.0.2", None) == ("10.0.0.2", 1)
    assert proxies.client("127.0.0.1", 1, "garbage", None) == ("127.0.0.1", 1)


def test_ipv6_and_mapped_peers():
    assert LOOPBACK.trusts("::1") and LOOPBACK.trusts("::ffff:127.0.0.1")
    assert not LOOPBACK.trusts("2001:db8::1") and not LOOPBACK.trusts("unix")
    assert LOOPBACK.client("::1", 1, "[2001:db8::5]:4430", None) == ("2001:db8::5", 4430)


def test_forwarded_proto_only_from_a_trusted_proxy():
    assert LOOPBACK.scheme("127.0.0.1", "https", False) == "https"
    assert LOOPBACK.scheme("203.0.113.9", "https", False) == "http"
    assert LOOPBACK.scheme("203.0.113.9", None, True) == "https"


def test_bad_trusted_proxies_setting_names_the_key():
    with pytest.raises(ConfigError, match=r"servers\.web\.trustedProxies: not an IP address or CIDR network: 'nope'"):
        config_from('[servers.web]\ntrustedProxies = ["10.0.0.0/8", "nope"]\n')


def _remote_ip(response) -> str:
    return response.json()["requesterInformation"]["remoteIP"]


def test_web_client_cannot_pick_its_address_directly():
    """Straight to the server from a non-proxy address: the header is ignored."""
    http = HTTPClient(make_node())
    protocol, transport = http.connect(peer=("203.0.113.9", 40000))
    protocol.dataReceived(b"GET /api/randomNumber HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n")
    assert b'"remoteIP": "203.0.113.9"' in transport.value()


def test_web_client_behind_the_proxy_cannot_prepend_an_address():
    http = HTTPClient(make_node())
    r = http.get("/api/randomNumber", headers={"X-Forwarded-For": "1.2.3.4, 198.51.100.7"})
    assert _remote_ip(r) == "198.51.100.7"


def test_allowed_hosts_ignore_a_forwarded_proto_from_a_non_proxy():
    node = make_node('[servers.web]\nallowedRequestHosts = ["https://www.site.com"]\ntrustedProxies = []\n')
    r = HTTPClient(node).get("/api/randomNumber", headers={"Host": "www.site.com", "X-Forwarded-Proto": "https"})
    assert (r.status, r.header("Location")) == (302, "https://www.site.com/api/randomNumber")


def test_websocket_upgrade_uses_the_same_rule():
    h = WSHarness(make_node())
    c = h.client(headers={"X-Forwarded-For": "1.2.3.4, 198.51.100.7"})
    assert c.request({"event": "detailsView"})[0]["data"]["remoteIP"] == "198.51.100.7"
    h = WSHarness(make_node("[servers.web]\ntrustedProxies = []\n"))
    c = h.client(headers={"X-Forwarded-For": "1.2.3.4"})
    assert c.request({"event": "detailsView"})[0]["data"]["remoteIP"] == "127.0.0.1"
