"""Websocket origin policy and fingerprint cookie (issue 12, items 1 and 2).

A page of another site must not open a websocket with the victim's cookie;
the cookie itself is HttpOnly, SameSite=Lax and Secure on TLS; the
``sessionID`` query parameter names the fingerprint only where configured;
``allowedRequestHosts`` applies to the websocket path too.
"""

import re

import pytest

from ahtwist.origins import OriginPolicy, normalize_origin
from tests.helpers import HTTPClient, make_node
from tests.wshelpers import WSHarness

FORBIDDEN = b"HTTP/1.1 403 origin not allowed\r\n\r\n"


@pytest.mark.parametrize(
    "origin, expected",
    [
        ("HTTP://Example.COM:80/", "http://example.com"),
        ("https://example.com:443", "https://example.com"),
        ("https://example.com:8443", "https://example.com:8443"),
        ("http://[::1]:80", "http://[::1]"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("null", "null"),
    ],
)
def test_normalize_origin(origin, expected):
    assert normalize_origin(origin) == expected


def test_default_policy_same_origin_and_allowed_hosts():
    policy = OriginPolicy((), ("https://www.site.com",))
    assert policy.allows(None, "http", "127.0.0.1:8080")  # not a browser
    assert policy.allows("http://127.0.0.1:8080", "http", "127.0.0.1:8080")
    assert not policy.allows("https://127.0.0.1:8080", "http", "127.0.0.1:8080")  # another scheme
    assert not policy.allows("http://evil.example", "http", "127.0.0.1:8080")
    assert not policy.allows("null", "http", "127.0.0.1:8080")
    assert policy.allows("https://www.site.com", "http", "127.0.0.1:8080")
    assert policy.allows("https://www.site.com:443", "https", "internal:9000")


def test_configured_policies():
    assert OriginPolicy(("*",), ()).allows("null", "http", "h")
    listed = OriginPolicy(("https://app.example", "null"), ())
    assert listed.allows("https://app.example", "http", "h")
    assert listed.allows("null", "http", "h")
    assert not listed.allows("http://h", "http", "h")  # a list replaces same-origin
    assert listed.allows(None, "http", "h")


# --- through the real upgrade ------------------------------------------------------


def test_cross_site_upgrade_with_the_victims_cookie_is_refused_with_403_and_logged(log_lines):
    h = WSHarness(make_node())
    c = h.client(handshake=False)
    head = c.handshake(headers={"Origin": "http://evil.example", "Cookie": "sessionID=victim"})
    assert head == FORBIDDEN
    assert c.lost and c.frames() == []
    assert h.node.connections == {}
    assert (
        "refused websocket upgrade from 127.0.0.1: origin 'http://evil.example' not allowed"
        in log_lines()
    )


def test_null_origin_is_refused_unless_listed():
    h = WSHarness(make_node())
    c = h.client(handshake=False)
    assert c.handshake(headers={"Origin": "null"}) == FORBIDDEN
    h = WSHarness(make_node('[servers.websocket]\nallowedOrigins = ["null"]\n'))
    c = h.client(handshake=False)
    assert c.handshake(headers={"Origin": "null"}).startswith(b"HTTP/1.1 101 ")


def test_same_origin_page_and_star_are_allowed():
    h = WSHarness(make_node())
    c = h.client(headers={"Origin": "http://127.0.0.1:8080", "Cookie": "sessionID=mine"})
    assert c.status == 101
    assert c.request({"event": "detailsView"})[0]["data"]["fingerprint"] == "mine"
    h = WSHarness(make_node('[servers.websocket]\nallowedOrigins = ["*"]\n'))
    assert h.client(headers={"Origin": "http://evil.example"}).status == 101


def test_session_id_query_parameter_only_where_configured():
    h = WSHarness(make_node())
    c = h.client(path="/ws?sessionID=victim")
    fingerprint = c.request({"event": "detailsView"})[0]["data"]["fingerprint"]
    assert fingerprint != "victim" and re.fullmatch(r"[0-9a-f-]{36}", fingerprint)
    h = WSHarness(make_node("[servers.websocket]\nfingerprintFromQuery = true\n"))
    c = h.client(path="/ws?sessionID=fromQuery")
    assert c.request({"event": "detailsView"})[0]["data"]["fingerprint"] == "fromQuery"


def test_allowed_request_hosts_apply_to_the_websocket_path():
    h = WSHarness(make_node('[servers.web]\nallowedRequestHosts = ["http://www.site.com"]\n'))
    c = h.client(handshake=False)
    head = c.handshake(headers={"Host": "evil.example"})
    assert head.startswith(b"HTTP/1.1 302 ")
    assert c.response_headers()["location"] == "http://www.site.com/ws"
    assert h.node.connections == {}
    c = h.client(headers={"Host": "www.site.com"})
    assert c.status == 101


# --- the cookie ---------------------------------------------------------------------


def test_fingerprint_cookie_is_http_only_and_same_site_lax_by_default():
    r = HTTPClient(make_node()).get("/api/randomNumber")
    assert re.fullmatch(
        r"sessionID=[0-9a-f]{40};path=/;expires=[^;]+ GMT;HttpOnly;SameSite=Lax;", r.header("Set-Cookie")
    )


def test_fingerprint_cookie_is_secure_behind_a_tls_proxy():
    r = HTTPClient(make_node()).get("/api/randomNumber", headers={"X-Forwarded-Proto": "https"})
    assert r.header("Set-Cookie").endswith(";HttpOnly;Secure;SameSite=Lax;")


def test_the_old_cookie_is_one_setting_away():
    node = make_node(
        "[servers.web.fingerprintOptions]\n"
        'settings = { path = "/", expires = 3600000, httpOnly = false, sameSite = "", secure = false }\n'
    )
    r = HTTPClient(node).get("/api/randomNumber", headers={"X-Forwarded-Proto": "https"})
    assert re.fullmatch(r"sessionID=[0-9a-f]{40};path=/;expires=[^;]+ GMT;", r.header("Set-Cookie"))
