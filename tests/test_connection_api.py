"""The connection API in memory: ``connection.raw`` on every transport,
``connection.session``, refusal by connection middleware (HTTP 403, websocket
403 before any frame, socket error line), a ``create`` that waits, and
ActionHero's ``webSocket`` type name."""

import json

import pytest
from twisted.internet.defer import Deferred

from ahtwist import Action, ActionError, ConnectionMiddleware, ConnectionRaw
from ahtwist.connection import Connection
from ahtwist.servers.peer import parse_cookies
from ahtwist.socket import SocketFactory
from tests.helpers import HTTPClient, make_node
from tests.socket_helpers import FakeClient
from tests.wshelpers import WSHarness

WELCOME = {"welcome": "Hello! Welcome to the actionhero api", "context": "api"}
seen: list = []


class Look(Action):
    """Reports what an action sees of its connection."""

    name = "look"
    description = "raw and session"

    def run(self, data):
        raw = data.connection.raw
        data.response["raw"] = {
            "headers": {k: v for k, v in raw.headers.items() if k in ("authorization", "x-test", "cookie")},
            "cookies": raw.cookies,
            "query": raw.query,
            "secure": raw.secure,
            "cert": raw.peer_certificate,
        }
        data.response["type"] = data.connection.type
        data.response["session"] = dict(data.connection.session)
        data.connection.session["visits"] = data.connection.session.get("visits", 0) + 1


class Gate(ConnectionMiddleware):
    name = "gate"

    def create(self, connection):
        seen.append(connection.type)
        if connection.raw.headers.get("x-test") == "deny" or connection.raw.query.get("deny"):
            raise ActionError("go away")
        if connection.type == "socket" and seen.count("socket") > 1:
            raise ActionError({"code": 7})


@pytest.fixture(autouse=True)
def _clear():
    seen.clear()


def test_session_is_per_connection_and_attributes_stay_fixed():
    connection = Connection("socket", "127.0.0.1", 1, 0)
    with pytest.raises(AttributeError):
        connection.user = "bob"  # fixed attributes (__slots__): memory per connection
    connection.session["user"] = "bob"
    assert connection.session == {"user": "bob"}
    assert Connection("socket", "127.0.0.1", 1, 0).session == {}


class WebOnly(ConnectionMiddleware):
    """Records what connection middleware sees of the web-only attributes."""

    name = "webOnly"

    def create(self, connection):
        seen.append((connection.type, connection.extension, connection.matched_route))


class WebOnlyAction(Action):
    name = "webOnly"
    description = "the web-only attributes an action sees"

    def run(self, data):
        route = data.connection.matched_route
        data.response["seen"] = [data.connection.extension, None if route is None else route.path]


def test_extension_and_matched_route_are_web_slots_none_on_other_transports():
    """Only a web request's connection has the two slots (memory per idle
    socket or websocket client); the others read None, as they did."""
    assert "extension" not in Connection.__slots__ and "matched_route" not in Connection.__slots__
    node = make_node('[[routes.get]]\npath = "/seen/:x"\naction = "webOnly"\n', plugins=[WebOnly, WebOnlyAction])
    http = HTTPClient(node)
    assert http.get("/api/seen/a.json").json()["seen"] == ["json", "/seen/:x"]
    assert http.get("/api/webOnly").json()["seen"] == [None, None]
    socket_client = FakeClient(SocketFactory(node))
    assert socket_client.messages() == [WELCOME]
    [reply] = socket_client.ask(b"webOnly\n")
    assert json.loads(reply)["seen"] == [None, None]
    ws = WSHarness(node).client()
    ws.messages()  # the welcome
    [message] = ws.request({"event": "action", "params": {"action": "webOnly"}})
    assert message["seen"] == [None, None]
    assert seen == [("web", None, None), ("web", None, None), ("socket", None, None), ("websocket", None, None)]
    with pytest.raises(AttributeError):
        Connection("socket", "127.0.0.1", 1, 0).extension = "json"  # no slot for it


def test_websocket_raw_has_the_upgrade_request_and_session_lasts():
    h = WSHarness(make_node(plugins=[Look]))
    c = h.client(path="/ws?token=abc&a[b]=1", headers={"Authorization": "Bearer t", "Cookie": 'x="1"; x=2; y=3', "X-Test": "ok"})
    [first] = c.request({"event": "action", "params": {"action": "look"}, "messageId": 1})
    assert first == {
        "raw": {
            "headers": {"authorization": "Bearer t", "cookie": 'x="1"; x=2; y=3', "x-test": "ok"},
            "cookies": {"x": "1", "y": "3"},
            "query": {"token": "abc", "a": {"b": "1"}},
            "secure": False,
            "cert": None,
        },
        "type": "websocket",
        "session": {},
        "context": "response",
        "messageCount": 1,
        "messageId": 1,
    }
    [second] = c.request({"event": "action", "params": {"action": "look"}, "messageId": 2})
    assert second["session"] == {"visits": 1}


def test_socket_raw_is_empty_and_session_lasts():
    client = FakeClient(SocketFactory(make_node(plugins=[Look])))
    assert client.messages() == [WELCOME]
    client.send("look\n")
    client.send("look\n")
    first, second = client.messages()
    assert first["raw"] == {"headers": {}, "cookies": {}, "query": {}, "secure": False, "cert": None}
    assert (first["session"], second["session"]) == ({}, {"visits": 1})
    assert isinstance(client.connection.raw, ConnectionRaw)


def test_web_raw_has_the_request_and_no_session_carries_over():
    http = HTTPClient(make_node("[servers.web]\npadding = 0\n[servers.web.metadataOptions]\nrequesterInformation = false\nserverInformation = false\n", plugins=[Look]))
    r = http.get("/api/look?q=1", headers={"Cookie": "sessionID=abc; sessionID=def", "X-Test": "yes"})
    assert r.json() == {
        "raw": {
            "headers": {"cookie": "sessionID=abc; sessionID=def", "x-test": "yes"},
            "cookies": {"sessionID": "abc"},
            "query": {"q": "1"},
            "secure": False,
            "cert": None,
        },
        "type": "web",
        "session": {},
    }
    # the first sessionID wins (parse_cookies), for the fingerprint too
    assert http.get("/api/look", headers={"Cookie": "sessionID=abc; sessionID=def"}).json()["session"] == {}


def test_parse_cookies_first_value_wins_and_quotes_go():
    assert parse_cookies('a=1; b="two words"; a=3;c; =x; d=e=f') == {"a": "1", "b": "two words", "d": "e=f"}
    assert parse_cookies(None) == {} and parse_cookies("") == {}


def test_http_refusal_is_403_with_the_error_envelope():
    http = HTTPClient(make_node("[servers.web]\npadding = 0\n", plugins=[Gate, Look]))
    r = http.get("/api/look", headers={"X-Test": "deny"})
    assert r.status == 403
    body = r.json()
    assert body["error"] == "go away"
    assert list(body) == ["error", "serverInformation", "requesterInformation"]
    assert http.get("/api/look").status == 200


def test_websocket_refusal_is_403_before_any_frame():
    h = WSHarness(make_node(plugins=[Gate]))
    c = h.client(handshake=False)
    head = c.handshake(headers={"X-Test": "deny"})
    assert head == (
        b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json; charset=utf-8\r\n"
        b"Connection: close\r\nContent-Length: 35\r\n\r\n"
    )
    c.pump()
    assert c._buffer == b'{"error":"go away","context":"api"}'
    assert c.lost and h.websockets.protocols == set() and h.node.connections == {}
    c = h.client(handshake=False)
    assert c.handshake(path="/ws?deny=1").startswith(b"HTTP/1.1 403 Forbidden\r\n")


def test_socket_refusal_is_one_error_line_then_close():
    factory = SocketFactory(make_node(plugins=[Gate]))
    first = FakeClient(factory)
    assert first.messages() == [WELCOME]
    second = FakeClient(factory, peer=("127.0.0.1", 46811))
    assert second.lines() == [b'{"error":{"code":7},"context":"api"}']
    factory.clock.advance(0)
    assert second.closed and not first.closed
    assert list(factory.node.connections) == [first.connection.id]


class Slow(ConnectionMiddleware):
    """A create hook that waits for something (a database, say)."""

    name = "slow"
    pending: list[Deferred] = []

    def create(self, connection):
        d = Deferred()
        Slow.pending.append(d)
        return d


def test_a_waiting_create_is_awaited_before_the_socket_welcome():
    Slow.pending.clear()
    client = FakeClient(SocketFactory(make_node(plugins=[Slow])))
    client.send("detailsView\n")
    assert client.lines() == []  # nothing before the hook is done, the line waits
    Slow.pending.pop().callback(None)
    lines = client.lines()
    assert json.loads(lines[0]) == WELCOME
    assert json.loads(lines[1])["data"]["id"] == client.connection.id


def test_a_waiting_create_is_awaited_before_the_101():
    Slow.pending.clear()
    h = WSHarness(make_node(plugins=[Slow]))
    c = h.client(handshake=False)
    assert c.handshake() == b""  # no 101 yet
    Slow.pending.pop().callback(None)
    c.pump()
    head = c.transport.value()
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    c.transport.clear()
    c._buffer = head.partition(b"\r\n\r\n")[2]
    assert c.messages() == [WELCOME]


def test_a_waiting_create_that_refuses_answers_403():
    class SlowNo(ConnectionMiddleware):
        name = "slowNo"

        def create(self, connection):
            d = Deferred()
            connection.node.reactor.callLater(1, d.errback, ActionError("later no"))
            return d

    h = WSHarness(make_node(plugins=[SlowNo]))
    c = h.client(handshake=False)
    assert c.handshake() == b""
    h.node.reactor.advance(1)
    assert c.transport.value().endswith(b'\r\n\r\n{"error":"later no","context":"api"}')


def test_websocket_is_also_called_webSocket():
    class NoWs(Action):
        name = "noWs"
        description = "not for websockets"
        blocked_connection_types = ["webSocket"]

        def run(self, data):
            data.response["ok"] = True

    h = WSHarness(make_node(plugins=[NoWs]))
    c = h.client()
    [reply] = c.request({"event": "action", "params": {"action": "noWs"}, "messageId": 1})
    assert reply["error"] == "this action does not support the websocket connection type"
    assert Connection("webSocket", "127.0.0.1", 1, 0).type == "websocket"
    client = FakeClient(SocketFactory(h.node))
    client.lines()
    assert client.ask("noWs\n")[0].startswith(b'{"ok":true,')


def test_ids_come_from_a_random_pool_a_forked_child_does_not_share():
    import os

    from ahtwist.ids import new_id, random_bytes

    random_bytes(1)  # the pool holds a page now
    new_id()  # and the ids a batch
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child (a --workers process): its next bytes and ids are its own
        os.write(write, random_bytes(16) + new_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100)
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 16 + 36
    assert child[:16] != random_bytes(16)
    assert child[16:].decode() != new_id()
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 36 and i[14] == "4" and i[19] in "89ab" for i in ids)
    # each is what str(uuid.UUID(...)) prints for a version 4, RFC 4122 uuid
    import uuid

    parsed = [uuid.UUID(i) for i in ids]
    assert [str(u) for u in parsed] == list(ids)
    assert {(u.version, u.variant) for u in parsed} == {(4, uuid.RFC_4122)}
