"""Request heads parsed in one go (``ahtwist/web/request_head.py``) against Twisted's line parser.

Every input below is sent, read by read, on one connection to two web
sites of the same node build: one with the one-go parser, one with it
switched off (every read through Twisted's ``LineReceiver``/``lineReceived``/
``headerReceived``).  Everything observable must be identical: the bytes
written back after each read (random ids, fingerprints and the Date header
masked), whether the connection is kept or closed, what the action saw
(method, headers in order, params) and the timers left on the clock.  The
real-socket versions are in ``tests/e2e/test_request_head_e2e.py``.
"""

import json
import re

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred

import ahtwist.web.site
from ahtwist import Action, Input
from ahtwist.web.api import WebServer
from ahtwist.web.request_head import MAX_HEAD, canonical_name, parse_head
from ahtwist.websocket import websocket_resource
from tests.helpers import HTTPClient, make_node
from tests.wshelpers import SwappableTransport


class Seen(Action):
    """Answers with what it saw of the request."""

    name = "seen"
    description = "the request as the action sees it"
    inputs = {"a": Input(), "b": Input()}

    def run(self, data):
        raw = data.connection.raw
        data.response["method"] = raw.method
        data.response["headers"] = list(raw.headers.items())
        data.response["query"] = raw.query
        data.response["params"] = dict(data.params)


#: the Deferreds of "later" actions not answered yet (a None step in a case answers them)
PENDING: list[Deferred] = []


class Later(Action):
    """Answers when the test says so."""

    name = "later"
    description = "answers later"

    def run(self, data):
        waiting = Deferred()
        PENDING.append(waiting)
        return waiting


def get(target: str = "/api/seen?a=1", *headers: str, method: str = "GET", version: str = "HTTP/1.1") -> bytes:
    lines = [f"{method} {target} {version}", "Host: 127.0.0.1", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


GET = get()
CASES = {
    "a GET": [GET],
    "an action answered later": [get("/api/later"), None, GET],
    "a request while one is answered later": [get("/api/later"), GET, None],
    "an action answered later, connection close": [get("/api/later", "Connection: close"), None],
    "two GETs on one connection": [GET, get("/api/seen?b=2")],
    "HEAD": [get(method="HEAD")],
    "OPTIONS": [get(method="OPTIONS")],
    "TRACE": [get("/api/seen?a=3", method="TRACE")],
    "DELETE, no such route": [get("/api/nothing", method="DELETE")],
    "an unknown method": [get(method="PROPFIND")],
    "a method that is not a token": [get(method="G@T")],
    "HTTP/1.0": [get(version="HTTP/1.0")],
    "HTTP/1.0 keep-alive": [get("/api/seen", "Connection: keep-alive", version="HTTP/1.0"), GET],
    "HTTP/2.0": [get(version="HTTP/2.0")],
    "Connection: close": [get("/api/seen", "Connection: close"), GET],
    "Connection: Upgrade, close": [get("/api/seen", "Connection: upgrade close"), GET],
    "repeated headers in order": [get("/api/seen", "X-A: 1", "X-B: 2", "x-a: 3", "X-A:4")],
    "spaces and tabs around a value": [get("/api/seen", "X-A: \t one two \t ")],
    "an empty value": [get("/api/seen", "X-Empty:", "X-Space: ")],
    "names in odd case": [get("/api/seen", "HOST: other", "dnt: 1", "www-authenticate: x", "X-xss-PROTECTION: 0")],
    "a cookie with the fingerprint": [get("/api/seen", "Cookie: sessionID=abc; other=1")],
    "the fingerprint header": [get("/api/seen", "X-sessionID: fromheader")],
    "a latin-1 value": [get("/api/seen", "X-Name: caf\xe9")],
    "a byte over 176 in the target": [get("/api/seen?a=\xe9")],
    "a byte 176 in the target": [get("/api/seen?a=\xb0")],
    "an escaped target": [get("/api/seen?a=%20%C3%A9&b=x+y")],
    "a space in the target": [b"GET /api/seen?a=1 2 HTTP/1.1\r\nHost: x\r\n\r\n"],
    "no target": [b"GET  HTTP/1.1\r\nHost: x\r\n\r\n"],
    "a request line of two words": [b"GET /api/seen\r\nHost: x\r\n\r\n"],
    "a header without a colon": [get("/api/seen", "X-A 1")],
    "a header name with a space": [get("/api/seen", "X-A : 1")],
    "a header name that is not a token": [get("/api/seen", "X(A): 1")],
    "an obs-fold line": [get("/api/seen", "X-A: 1", " continued")],
    "an obs-fold tab": [get("/api/seen", "X-A: 1", "\tcontinued")],
    "NUL in a value": [get("/api/seen", "X-A: a\0b")],
    "a bare LF in a value": [get("/api/seen", "X-A: a\nb")],
    "a bare CR in a value": [get("/api/seen", "X-A: a\rb")],
    "a bare-LF line end": [b"GET /api/seen HTTP/1.1\nHost: x\r\n\r\n"],
    "an empty line first": [b"\r\n" + GET],
    "two empty lines first": [b"\r\n\r\n" + GET],
    "Content-Length 0": [get("/api/seen", "Content-Length: 0")],
    "a POST with a JSON body": [get("/api/seen", "Content-Type: application/json", "Content-Length: 7", method="POST") + b'{"a":5}'],
    "a POST head, then its body": [get("/api/seen", "Content-Type: application/json", "Content-Length: 7", method="POST"), b'{"a":5}'],
    "a POST without a body": [get("/api/seen", method="POST")],
    "a PUT with a form type and no body": [get("/api/seen", "Content-Type: application/x-www-form-urlencoded", method="PUT")],
    "chunked": [get("/api/seen", "Transfer-Encoding: chunked", "Content-Type: application/json", method="POST") + b"7\r\n{\"a\":6}\r\n0\r\n\r\n"],
    "Expect 100-continue": [get("/api/seen", "Expect: 100-continue", "Content-Length: 7", "Content-Type: application/json", method="POST"), b'{"a":7}'],
    "a bad Content-Length": [get("/api/seen", "Content-Length: x")],
    "pipelined in one read": [GET + get("/api/seen?b=2") + get("/api/seen?a=3")],
    "a head split in two reads": [GET[:20], GET[20:]],
    "a head split before the blank line": [GET[:-2], GET[-2:]],
    "a head and half of the next": [GET + GET[:10], GET[10:]],
    "500 headers": [get("/api/seen", *[f"X-{i}: {i}" for i in range(499)])],
    "501 headers": [get("/api/seen", *[f"X-{i}: {i}" for i in range(500)])],
    "a head at the one-go limit": [get("/api/seen?a=" + "x" * (MAX_HEAD - 43))],
    "a head over the one-go limit": [get("/api/seen?a=" + "x" * (MAX_HEAD - 42))],
    "an over-long target": [get("/api/seen?a=" + "x" * 8300)],
    "a static file": [get("/index.html")],
    "no such file": [get("/nothing.html")],
    "the websocket path without an upgrade": [get("/ws")],
    "a websocket upgrade": [
        get("/ws", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13")
    ],
}

_MASKS = [
    (re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"), b"<uuid>"),
    (re.compile(rb"[0-9a-f]{40}"), b"<fingerprint>"),
    (re.compile(rb"Date: [^\r]*"), b"Date: <date>"),
    (re.compile(rb"expires=[^;]*"), b"expires=<date>"),
]


def masked(data: bytes) -> bytes:
    for pattern, replacement in _MASKS:
        data = pattern.sub(replacement, data)
    return data


def run(case: list[bytes], one_go: bool, monkeypatch) -> dict:
    node = make_node("", plugins=[Seen, Later])
    web = WebServer(node)
    _, web.websocket_resource = websocket_resource(node, node.reactor)
    client = HTTPClient(node, web)
    with monkeypatch.context() as patch:
        if not one_go:
            patch.setattr(ahtwist.web.site, "parse_head", lambda data, limit: None)
        address = IPv4Address("TCP", "127.0.0.1", 40000)
        channel = client.site.buildProtocol(address)
        transport = SwappableTransport(client.clock, peerAddress=address, hostAddress=IPv4Address("TCP", "127.0.0.1", 8080))
        transport.protocol = channel
        channel.makeConnection(transport)
        outputs = []
        clock = client.clock
        for data in case:
            if data is None:
                while PENDING:
                    PENDING.pop(0).callback(None)
            else:
                channel.dataReceived(data)
            client.pump()
            outputs.append(masked(transport.value()))
            outputs.append(sorted(call.getTime() - clock.seconds() for call in clock.getDelayedCalls()))
            transport.clear()
        state = {
            "outputs": outputs,
            "disconnecting": transport.disconnecting,
            "persistent": channel.persistent,
            "open requests": len(channel.requests),
            "timers": sorted(call.getTime() - clock.seconds() for call in clock.getDelayedCalls()),
            "connections": len(client.node.connections),
        }
        clock.advance(61)  # the idle timeout
        client.pump()
        state["closed after 61 s"] = (transport.disconnecting, transport.lost)
    return state


@pytest.mark.parametrize("name", list(CASES))
def test_one_go_is_indistinguishable_from_twisteds_line_parser(name, monkeypatch):
    case = CASES[name]
    one_go, twisted = run(case, True, monkeypatch), run(case, False, monkeypatch)
    assert one_go == twisted
    assert b"".join(out for out in one_go["outputs"] if isinstance(out, bytes)), "nothing was answered"


def test_the_cases_cover_both_paths_and_the_answers_that_matter(monkeypatch):
    """The comparison is worth something only if the cases reach both parsers and answer differently."""
    taken = [name for name, case in CASES.items() if parse_head(case[0], 500) is not None]
    left = [name for name, case in CASES.items() if parse_head(case[0], 500) is None]
    assert len(taken) >= 20 and len(left) >= 25
    statuses = {
        b"".join(out for out in run(case, True, monkeypatch)["outputs"] if isinstance(out, bytes)).split(b" ", 2)[1]
        for case in CASES.values()
        if case[0].startswith((b"GET", b"HEAD", b"OPTIONS", b"DELETE", b"PROPFIND", b"TRACE", b"POST"))
    }
    assert {b"200", b"400", b"404", b"101", b"426", b"414", b"100"} <= statuses


def test_what_the_action_sees(monkeypatch):
    out = run([get("/api/seen?a=1", "X-A: \t one \t", "x-a: two", "dnt: 1")], True, monkeypatch)["outputs"][0]
    assert isinstance(out, bytes)
    seen = json.loads(out.partition(b"\r\n\r\n")[2])
    assert (seen["method"], seen["query"], seen["params"]) == ("GET", {"a": "1"}, {"a": "1", "action": "seen", "apiVersion": 1})
    assert seen["headers"] == [["host", "127.0.0.1"], ["x-a", "one, two"], ["dnt", "1"]]


def test_parse_head_returns_what_twisted_stores():
    assert parse_head(get("/x?y", "x-a: \t1 2\t", "X-A: 3", "dnt: 1", "Cookie:c=1"), 500) == (
        b"GET",
        b"/x?y",
        b"HTTP/1.1",
        [(b"Host", b"127.0.0.1"), (b"X-A", b"1 2"), (b"X-A", b"3"), (b"DNT", b"1"), (b"Cookie", b"c=1")],
    )
    assert parse_head(b"GET / HTTP/1.0\r\n\r\n", 500) == (b"GET", b"/", b"HTTP/1.0", [])


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody",
        get("/", "Content-Length: 0"),
        get("/", "content-length: 0"),
        get("/", "Transfer-Encoding: identity"),
        get("/", "Expect: 100-continue"),
        get("/", "X-A: 1", "X-B: 2"),  # over max_headers=2 with Host
        get(method="PROPFIND"),
        get(version="HTTP/0.9"),
        get("/a\x20b"),
        get("/a\xffb"),
    ],
)
def test_parse_head_leaves_to_twisted(data):
    assert parse_head(data, 2) is None


def test_canonical_names_are_twisteds_and_the_cache_is_bounded():
    from twisted.web.http_headers import _nameEncoder

    for name in (b"host", b"X-FORWARDED-FOR", b"dnt", b"etag", b"te", b"content-md5", b"x-xss-protection"):
        assert canonical_name(name) == _nameEncoder.encode(name)
    assert canonical_name(b"a b") is None
    assert canonical_name(b"") is None
    for i in range(3000):
        canonical_name(b"X-%d" % i)
    from ahtwist.web import request_head

    assert len(request_head._CANONICAL) <= request_head._MAX_CANONICAL
