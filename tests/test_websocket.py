"""The websocket server in memory, through the real WebSite (docs/protocol-websocket.md).

Every test upgrades through :class:`~ahtwist.web.api.WebServer` routing and
then speaks raw RFC 6455 frames (``tests/wshelpers.py``), asserting the
exact frames, close codes and counters the contract gives.
"""

import base64
import hashlib
import json
import re
import struct

import pytest
from zope.interface.verify import verifyObject

from ahtwist import Action, ActionError, ChatMiddleware, ConnectionMiddleware, Input
from ahtwist.connection import IConnectionTransport
from tests.helpers import make_node
from tests.wshelpers import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, WSHarness

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
WELCOME = {"welcome": "Hello! Welcome to the actionhero api", "context": "api"}


def harness(text: str = "", plugins=()) -> WSHarness:
    return WSHarness(make_node(text, plugins=plugins))


# --- the endpoint ---------------------------------------------------------------


def test_upgrade_reply_has_no_server_header_and_the_rfc_accept_key():
    """101 with exactly Upgrade, Connection and the RFC 6455 accept key."""
    h = harness()
    c = h.client(handshake=False)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    head = c.handshake(key=key)
    assert head == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: WebSocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    )
    accept = base64.b64encode(
        hashlib.sha1(key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
    )
    assert accept == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_welcome_frame_is_the_first_frame_exactly():
    h = harness()
    c = h.client(handshake=False)
    c.handshake()
    assert c.texts() == [b'{"welcome":"Hello! Welcome to the actionhero api","context":"api"}']


def test_plain_get_without_upgrade_is_426_and_the_connection_keeps_serving_http():
    """No status page, no redirect: 426 with an Upgrade header; keep-alive continues."""
    h = harness()
    c = h.client(handshake=False)
    c.send_raw(b"GET /ws?redirect=http%3A%2F%2Fevil.example%2F HTTP/1.1\r\nHost: x\r\n\r\n")
    data = c.transport.value()
    head = data.split(b"\r\n\r\n")[0].decode()
    assert head.startswith("HTTP/1.1 426 Upgrade Required\r\n")
    assert "upgrade: websocket" in head.lower()
    assert "content-length: 0" in head.lower()
    assert "location" not in head.lower()
    assert "server:" not in head.lower()
    c.transport.clear()
    c.send_raw(b"GET /api/randomNumber HTTP/1.1\r\nHost: x\r\n\r\n")
    assert c.transport.value().startswith(b"HTTP/1.1 200 OK\r\n")


def test_upgrade_is_not_counted_as_a_web_request_and_the_client_is_active():
    """status over the websocket: no web request, one websocket request, one client."""
    h = harness()
    c = h.client()
    [reply] = c.request({"event": "action", "params": {"action": "status"}, "messageId": 1})
    stats = reply["stats"]
    assert stats["webServer"] == {"numberOfLocalWebRequests": 0, "numberOfGlobalWebRequests": 0}
    assert stats["webSocketServer"] == {
        "numberOfGlobalWebSocketRequests": 1,
        "numberOfLocalActiveWebSocketClients": 1,
    }
    c.send_text(b"not json")
    c.send_frame(OP_BINARY, b'{"event":"detailsView"}')
    [reply] = c.request({"event": "action", "params": {"action": "status"}, "messageId": 2})
    assert reply["stats"]["webSocketServer"]["numberOfGlobalWebSocketRequests"] == 2
    assert reply["messageCount"] == 2
    c.close()
    assert c.lost
    assert h.node.active_by_type["websocket"] == 0


def test_any_origin_is_accepted_and_no_subprotocol_is_selected():
    """Any origin with ``allowedOrigins = ["*"]`` (the default is same-origin
    since issue 12: tests/test_origins.py)."""
    h = harness('[servers.websocket]\nallowedOrigins = ["*"]\n')
    c = h.client(
        headers={"Origin": "http://evil.example:1234", "Sec-WebSocket-Protocol": "chat, superchat"}
    )
    assert c.status == 101
    assert "sec-websocket-protocol" not in c.response_headers()


def test_only_the_configured_path_upgrades():
    h = harness('[servers.websocket]\npath = "/live"\n')
    c = h.client(handshake=False)
    c.handshake(path="/ws")
    assert c.status == 404
    c = h.client(path="/live")
    assert c.status == 101


def test_the_takeover_leaves_no_http_channel_behind():
    """A channel handed to Autobahn never sees connectionLost: it must not stay
    in the site's open channels (a stop would try to drain it)."""
    h = harness()
    c = h.client()
    assert h.site.channels == set()
    # the HTTP channel let go of the transport; the websocket's output meter
    # (issue 12, item 4) is its producer now
    assert c.transport.producer is c.transport.protocol.meter is not None
    assert len(h.websockets.protocols) == 1
    c.close()
    assert c.lost
    assert h.websockets.protocols == set()


def test_a_bad_handshake_is_refused_and_nothing_is_registered():
    h = harness()
    c = h.client(handshake=False)
    c.handshake(headers={"Sec-WebSocket-Key": "short"})
    assert c.status == 400
    assert c.lost
    assert h.node.connections == {}


# --- connection fields --------------------------------------------------------------


def test_details_view_exact_shape_and_params_are_never_sticky():
    h = harness()
    c = h.client()
    c.request({"event": "action", "params": {"action": "cacheTest", "key": "abc"}})
    [reply] = c.request({"event": "detailsView", "messageId": 1})
    connection = next(iter(h.node.connections.values()))
    assert reply == {
        "status": "OK",
        "context": "response",
        "data": {
            "id": connection.id,
            "fingerprint": connection.id,
            "remoteIP": "127.0.0.1",
            "remotePort": 50001,
            "params": {},
            "connectedAt": 1795627006000,
            "rooms": [],
            "totalActions": 1,
            "pendingActions": 0,
        },
        "messageCount": 2,
        "messageId": 1,
    }
    assert re.fullmatch(UUID, connection.id)
    assert connection.type == "websocket"
    assert list(reply["data"]) == [
        "id", "fingerprint", "remoteIP", "remotePort", "params", "connectedAt", "rooms",
        "totalActions", "pendingActions",
    ]


@pytest.mark.parametrize(
    ("headers", "path", "fingerprint"),
    [
        ({"Cookie": "sessionID=abc123"}, "/ws", "abc123"),
        ({"Cookie": "other=1; sessionID=abc123; x=2"}, "/ws", "abc123"),
        ({}, "/ws?sessionID=myFingerprint123", "myFingerprint123"),
        ({"Cookie": "sessionID=fromCookie"}, "/ws?sessionID=fromQuery", "fromCookie"),
        ({"Cookie": "sessionID="}, "/ws?sessionID=fromQuery", "fromQuery"),
    ],
)
def test_fingerprint_from_the_cookie_then_the_query(headers, path, fingerprint):
    """With ``fingerprintFromQuery`` (off by default since issue 12: see
    tests/test_origins.py) the query names the fingerprint when no cookie does."""
    h = harness("[servers.websocket]\nfingerprintFromQuery = true\n")
    c = h.client(headers=headers, path=path)
    [reply] = c.request({"event": "detailsView"})
    assert reply["data"]["fingerprint"] == fingerprint
    assert reply["data"]["id"] != fingerprint


def test_fingerprint_uses_the_configured_cookie_key():
    h = harness('[servers.web.fingerprintOptions]\ncookieKey = "sid"\n')
    c = h.client(headers={"Cookie": "sessionID=no; sid=yes"})
    assert c.request({"event": "detailsView"})[0]["data"]["fingerprint"] == "yes"


def test_web_cookie_and_websocket_share_the_fingerprint():
    """The sessionID the HTTP API set is the websocket's fingerprint."""
    from tests.helpers import HTTPClient

    h = harness()
    web = HTTPClient(h.node, h.web_server)
    response = web.get("/api/randomNumber")
    cookie = response.header("set-cookie").split(";")[0]
    c = h.client(headers={"Cookie": cookie})
    assert c.request({"event": "detailsView"})[0]["data"]["fingerprint"] == cookie.split("=")[1]


def test_remote_address_follows_x_forwarded_for():
    h = harness()
    c = h.client(headers={"X-Forwarded-For": "10.1.2.3, 127.0.0.1", "X-Forwarded-Port": "4242"})
    data = c.request({"event": "detailsView"})[0]["data"]
    assert (data["remoteIP"], data["remotePort"]) == ("10.1.2.3", 4242)
    c = h.client(headers={"X-Forwarded-For": "not an address"})
    data = c.request({"event": "detailsView"})[0]["data"]
    assert data["remoteIP"] == "127.0.0.1"


def test_the_protocol_provides_the_connection_transport_interface():
    h = harness()
    h.client()
    [protocol] = h.websockets.protocols
    assert verifyObject(IConnectionTransport, protocol)


# --- actions ----------------------------------------------------------------------


def test_action_reply_exact_bytes_and_key_order():
    h = harness()
    c = h.client()
    c.send_text(b'{"event":"action","params":{"action":"randomNumber"},"messageId":2}')
    [text] = c.texts()
    match = re.fullmatch(
        rb'\{"randomNumber":([0-9.e-]+),"stringRandomNumber":"Your random number is ([0-9.e-]+)",'
        rb'"context":"response","messageCount":1,"messageId":2\}',
        text,
    )
    assert match and match.group(1) == match.group(2)


def test_action_errors_come_after_the_action_keys():
    h = harness()
    c = h.client()
    c.send_text(b'{"event":"action","params":{"action":"cacheTest"},"messageId":3}')
    assert c.texts() == [
        b'{"error":"key is a required parameter for this action","context":"response",'
        b'"messageCount":1,"messageId":3}'
    ]
    c.send_text(b'{"event":"action","params":{"action":"unknownAction"}}')
    [reply] = c.messages()
    assert list(reply) == ["error", "context", "messageCount", "messageId"]
    assert reply["error"] == "unknown action or invalid apiVersion"
    assert re.fullmatch(UUID, reply["messageId"])
    [reply] = c.request({"event": "action", "messageId": 9})
    assert reply["error"] == "unknown action or invalid apiVersion"
    [reply] = c.request({"event": "action", "params": "randomNumber", "messageId": 10})
    assert reply["error"] == "unknown action or invalid apiVersion"


def test_cache_test_round_trip():
    h = harness()
    c = h.client()
    [reply] = c.request(
        {"event": "action", "params": {"action": "cacheTest", "key": "abc", "value": "def"}, "messageId": 5}
    )
    assert reply == {
        "cacheTestResults": {
            "saveResp": True,
            "sizeResp": 1,
            "loadResp": {
                "key": "cacheTest_abc",
                "value": "def",
                "expireTimestamp": 1795627011000,
                "createdAt": 1795627006000,
                "readAt": None,
            },
            "deleteResp": True,
        },
        "context": "response",
        "messageCount": 1,
        "messageId": 5,
    }


@pytest.mark.parametrize(
    ("raw_id", "echoed"),
    [
        (b"2", b"2"),
        (b'"my-id"', b'"my-id"'),
        (b"2.5", b"2.5"),
        (b"-7", b"-7"),
        (b"true", b"true"),
        (b"false", b"false"),
        (b"0", b"0"),
        (b'""', b'""'),
        (b'{"a":[1,"x"]}', b'{"a":[1,"x"]}'),
        (b"[1,2]", b"[1,2]"),
        (b'"\xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80"', b'"\xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80"'),
    ],
)
def test_message_id_is_echoed_with_its_json_type(raw_id, echoed):
    h = harness()
    c = h.client()
    c.send_text(b'{"event":"action","params":{"action":"cacheTest"},"messageId":' + raw_id + b"}")
    assert c.texts() == [
        b'{"error":"key is a required parameter for this action","context":"response",'
        b'"messageCount":1,"messageId":' + echoed + b"}"
    ]
    c.send_text(b'{"event":"roomView","room":"nope","messageId":' + raw_id + b"}")
    [text] = c.texts()
    assert text.endswith(b'"messageCount":2,"messageId":' + echoed + b"}")


@pytest.mark.parametrize("frame", [b'{"event":"detailsView","messageId":null}', b'{"event":"detailsView"}'])
def test_a_null_or_absent_message_id_gets_a_fresh_uuid(frame):
    h = harness()
    c = h.client()
    c.send_text(frame)
    c.send_text(frame)
    first, second = c.messages()
    assert re.fullmatch(UUID, first["messageId"]) and re.fullmatch(UUID, second["messageId"])
    assert first["messageId"] != second["messageId"]


def test_params_message_id_is_not_the_reply_id_but_reaches_the_action():
    class Echo(Action):
        name = "echoParams"
        description = "echo"

        def run(self, data):
            data.response["seen"] = data.params.get("messageId")

    h = harness(plugins=[Echo])
    c = h.client()
    [reply] = c.request({"event": "action", "params": {"action": "echoParams", "messageId": "inner"}, "messageId": 8})
    assert (reply["seen"], reply["messageId"]) == ("inner", 8)
    [reply] = c.request({"event": "action", "params": {"action": "echoParams", "messageId": "inner"}})
    assert reply["seen"] == "inner"
    assert re.fullmatch(UUID, reply["messageId"])


def test_too_many_pending_actions_is_answered_first():
    """Six concurrent sleepTests with the default limit of 5."""
    h = harness()
    c = h.client()
    for i in range(6):
        c.send({"event": "action", "params": {"action": "sleepTest", "sleepDuration": 500 + 100 * i}, "messageId": i})
    assert c.messages() == [
        {"error": "you have too many pending requests", "context": "response", "messageCount": 6, "messageId": 5}
    ]
    h.node.reactor.advance(1.0)
    replies = c.messages()
    assert [(r["messageId"], r["messageCount"], r["sleepDuration"]) for r in replies] == [
        (0, 1, 500), (1, 2, 600), (2, 3, 700), (3, 4, 800), (4, 5, 900)
    ]


def test_blocked_connection_type():
    class NoWebsocket(Action):
        name = "noWebsocket"
        description = "not over websockets"
        blocked_connection_types = ["websocket"]

        def run(self, data):
            data.response["ran"] = True

    h = harness(plugins=[NoWebsocket])
    c = h.client()
    assert c.request({"event": "action", "params": {"action": "noWebsocket"}, "messageId": 1}) == [
        {
            "error": "this action does not support the websocket connection type",
            "context": "response",
            "messageCount": 1,
            "messageId": 1,
        }
    ]


def test_an_action_error_object_and_a_crash_keep_the_connection():
    class Broken(Action):
        name = "broken"
        description = "raises"
        inputs = {"how": Input()}

        def run(self, data):
            if data.params.get("how") == "object":
                raise ActionError({"error": "broken", "reason": "stuff"})
            raise RuntimeError("boom")

    h = harness(plugins=[Broken])
    c = h.client()
    assert c.request({"event": "action", "params": {"action": "broken", "how": "object"}, "messageId": 1})[0][
        "error"
    ] == {"error": "broken", "reason": "stuff"}
    assert c.request({"event": "action", "params": {"action": "broken"}, "messageId": 2})[0][
        "error"
    ] == "internal server error"
    assert c.request({"event": "detailsView", "messageId": 3})[0]["status"] == "OK"


def test_to_render_false_sends_nothing_and_a_reply_after_close_is_dropped():
    class Quiet(Action):
        name = "quiet"
        description = "answers itself"

        def run(self, data):
            data.to_render = False

    h = harness(plugins=[Quiet])
    c = h.client()
    assert c.request({"event": "action", "params": {"action": "quiet"}}) == []
    c.send({"event": "action", "params": {"action": "sleepTest", "sleepDuration": 100}})
    c.close()
    assert c.lost
    h.node.reactor.advance(0.2)  # the reply is due after the close: nothing breaks
    assert h.node.connections == {}


def test_server_side_send_message_adds_the_response_context():
    class Push(Action):
        name = "push"
        description = "pushes"

        def run(self, data):
            data.connection.send_message({"pushed": 1})
            data.connection.send_message({"pushed": 2, "context": "custom"})

    h = harness(plugins=[Push])
    c = h.client()
    c.send({"event": "action", "params": {"action": "push"}, "messageId": 1})
    assert c.texts() == [
        b'{"pushed":1,"context":"response"}',
        b'{"pushed":2,"context":"custom"}',
        b'{"context":"response","messageCount":1,"messageId":1}',
    ]


def test_server_side_destroy_closes_with_1000():
    class Kick(Action):
        name = "kick"
        description = "destroys the caller"

        def run(self, data):
            data.connection.destroy()

    h = harness(plugins=[Kick])
    c = h.client()
    c.request({"event": "roomAdd", "room": "defaultRoom"})
    c.send({"event": "action", "params": {"action": "kick"}})
    frames = c.frames()
    assert frames[-1] == (OP_CLOSE, struct.pack("!H", 1000))
    c.close()
    assert c.lost
    assert h.node.connections == {}
    assert h.node.rooms.local_members("defaultRoom") == []


# --- verbs --------------------------------------------------------------------------


def test_room_verbs_exact_replies():
    h = harness()
    c = h.client()
    cid = next(iter(h.node.connections))
    c.send_text(b'{"event":"roomView","room":"defaultRoom","messageId":9}')
    c.send_text(b'{"event":"roomAdd","room":"defaultRoom","messageId":10}')
    c.send_text(b'{"event":"roomAdd","room":"defaultRoom","messageId":11}')
    c.send_text(b'{"event":"roomAdd","room":"noSuchRoom","messageId":12}')
    assert c.texts() == [
        b'{"status":"connection not in this room (defaultRoom)","error":"connection not in this room (defaultRoom)","context":"response","messageCount":1,"messageId":9}',
        b'{"status":"OK","context":"response","data":true,"messageCount":2,"messageId":10}',
        b'{"status":"connection already in this room (defaultRoom)","error":"connection already in this room (defaultRoom)","context":"response","data":false,"messageCount":3,"messageId":11}',
        b'{"status":"room does not exist","error":"room does not exist","context":"response","data":false,"messageCount":4,"messageId":12}',
    ]
    c.send_text(b'{"event":"roomView","room":"defaultRoom","messageId":13}')
    assert c.texts() == [
        b'{"status":"OK","context":"response","data":{"room":"defaultRoom","members":{"%s":{"id":"%s","joinedAt":1795627006000}},"membersCount":1},"messageCount":5,"messageId":13}'
        % (cid.encode(), cid.encode())
    ]
    c.send_text(b'{"event":"roomLeave","room":"defaultRoom","messageId":17}')
    c.send_text(b'{"event":"roomLeave","room":"defaultRoom","messageId":18}')
    assert c.texts() == [
        b'{"status":"OK","context":"response","data":true,"messageCount":6,"messageId":17}',
        b'{"status":"connection not in this room (defaultRoom)","error":"connection not in this room (defaultRoom)","context":"response","data":false,"messageCount":7,"messageId":18}',
    ]


def test_room_argument_is_the_first_value_when_room_is_absent():
    """Verb arguments: room (if present), then the other values in key order."""
    h = harness()
    c = h.client()
    assert c.request({"event": "roomAdd", "name": "otherRoom", "messageId": 1})[0]["data"] is True
    assert h.node.connections[next(iter(h.node.connections))].rooms == ["otherRoom"]
    [reply] = c.request({"event": "roomAdd", "messageId": 2})
    assert (reply["error"], reply["data"]) == ("a room is required", False)  # issue 12, item 8
    [reply] = c.request({"event": "roomAdd", "room": {"a": 1}, "messageId": 3})
    assert (reply["error"], reply["data"]) == ("room does not exist", False)
    [reply] = c.request({"event": "roomLeave", "room": [1], "messageId": 4})
    assert reply["error"] == "connection not in this room ([1])"


def test_say_delivers_to_every_member_after_the_ok_reply():
    h = harness()
    a, b, outsider = h.client(), h.client(), h.client()
    a.request({"event": "roomAdd", "room": "defaultRoom"})
    b.request({"event": "roomAdd", "room": "defaultRoom"})
    a_id = a.request({"event": "detailsView"})[0]["data"]["id"]
    a.send_text(b'{"event":"say","room":"defaultRoom","message":"hello","messageId":14}')
    texts = a.texts()
    assert texts == [
        b'{"status":"OK","context":"response","messageCount":3,"messageId":14}',
        b'{"message":"hello","room":"defaultRoom","from":"%s","context":"user","sentAt":1795627006000}'
        % a_id.encode(),
    ]
    assert b.texts() == texts[1:]
    assert outsider.texts() == []


def test_say_joins_extra_values_and_sends_non_strings_as_json():
    h = harness()
    c = h.client()
    c.request({"event": "roomAdd", "room": "defaultRoom"})
    replies = c.request({"event": "say", "room": "defaultRoom", "message": {"json": "object", "n": 1}})
    assert replies[1]["message"] == '{"json":"object","n":1}'
    replies = c.request({"message": "hello", "event": "say", "more": "world", "n": 5, "room": "defaultRoom"})
    assert replies[1]["message"] == "hello world 5"


def test_say_errors_have_no_data():
    h = harness()
    c = h.client()
    c.send_text(b'{"event":"say","room":"otherRoom","message":"hello","messageId":16}')
    c.send_text(b'{"event":"say","room":"defaultRoom","messageId":17}')
    c.send_text(b'{"event":"say","messageId":18}')
    assert c.texts() == [
        b'{"status":"connection not in this room (otherRoom)","error":"connection not in this room (otherRoom)","context":"response","messageCount":1,"messageId":16}',
        b'{"status":"both room and message are required","error":"both room and message are required","context":"response","messageCount":2,"messageId":17}',
        b'{"status":"both room and message are required","error":"both room and message are required","context":"response","messageCount":3,"messageId":18}',
    ]


def test_chat_middleware_veto_and_server_broadcasts_reach_websockets():
    class Guard(ChatMiddleware):
        name = "guard"

        def join(self, connection, room):
            if room == "otherRoom":
                raise ActionError("no entry")

        def on_say_receive(self, connection, room, payload):
            if payload["message"] == "bad":
                raise ActionError("watch your language")

    h = harness(plugins=[Guard])
    c = h.client()
    [reply] = c.request({"event": "roomAdd", "room": "otherRoom", "messageId": 1})
    assert (reply["error"], reply["data"]) == ("no entry", False)
    c.request({"event": "roomAdd", "room": "defaultRoom"})
    assert c.request({"event": "say", "room": "defaultRoom", "message": "bad", "messageId": 2}) == [
        {"status": "watch your language", "error": "watch your language", "context": "response", "messageCount": 3, "messageId": 2}
    ]
    h.node.rooms.broadcast(None, "defaultRoom", "server says hi")
    assert c.texts() == [
        b'{"message":"server says hi","room":"defaultRoom","from":0,"context":"user","sentAt":1795627006000}'
    ]


def test_documentation_event_matches_show_documentation():
    h = harness()
    c = h.client()
    [doc] = c.request({"event": "documentation", "messageId": 22})
    [action] = c.request({"event": "action", "params": {"action": "showDocumentation"}, "messageId": 23})
    assert doc == {"status": "OK", "context": "response", "data": action["documentation"], "messageCount": 1, "messageId": 22}
    assert list(doc["data"]) == sorted(h.node.registry.documentation())
    assert {"cacheTest", "randomNumber", "sleepTest", "status"} <= set(doc["data"])


# --- files ----------------------------------------------------------------------------


def test_file_event_success_exact(tmp_path):
    public = tmp_path / "public"
    (public / "css").mkdir(parents=True)
    (public / "simple.html").write_bytes(b"<h1>ActionHero</h1>\nI am simple\n")
    (public / "bad.txt").write_bytes(b"ok \xff\xfe end")
    import os

    os.utime(public / "simple.html", (1795627006.123, 1795627006.123))
    os.utime(public / "bad.txt", (1795627007.5, 1795627007.5))
    h = harness(f'[general.paths]\npublic = ["{public}"]\n')
    c = h.client()
    c.send_text(b'{"event":"file","file":"simple.html","messageId":3}')
    c.send_text(b'{"event":"file","file":"css/../bad.txt","messageId":4}')
    assert c.texts() == [
        b'{"error":null,"content":"<h1>ActionHero</h1>\\nI am simple\\n","mime":"text/html","length":32,'
        b'"lastModified":"2026-11-25T17:16:46.123Z","context":"response","messageCount":1,"messageId":3}',
        b'{"error":null,"content":"ok \xef\xbf\xbd\xef\xbf\xbd end","mime":"text/plain","length":9,'
        b'"lastModified":"2026-11-25T17:16:47.500Z","context":"response","messageCount":2,"messageId":4}',
    ]


@pytest.mark.parametrize(
    "name",
    [
        '"nope.html"',
        '"../package.json"',
        '"%2e%2e/package.json"',
        '"/etc/passwd"',
        '"css//index.html"',
        "null",
        "5",
        '""',
    ],
)
def test_file_event_not_found_never_names_the_file(name):
    h = harness()
    c = h.client()
    c.send_text(('{"event":"file","file":' + name + ',"messageId":20}').encode())
    assert c.texts() == [
        b'{"error":"That file is not found","content":null,"mime":"text/html","length":22,'
        b'"context":"response","messageCount":1,"messageId":20}'
    ]


def test_file_event_without_a_name_and_over_max_file_size(tmp_path):
    public = tmp_path / "public"
    public.mkdir()
    (public / "big.txt").write_bytes(b"x" * 101)
    (public / "small.txt").write_bytes(b"x" * 100)
    h = harness(f'[general.paths]\npublic = ["{public}"]\n[servers.websocket]\nmaxFileSize = 100\n')
    c = h.client()
    not_found = {"error": "That file is not found", "content": None, "mime": "text/html", "length": 22}
    [reply] = c.request({"event": "file", "messageId": 26})
    assert {k: reply[k] for k in not_found} == not_found
    [reply] = c.request({"event": "file", "file": "big.txt"})
    assert {k: reply[k] for k in not_found} == not_found
    [reply] = c.request({"event": "file", "file": "small.txt"})
    assert (reply["error"], reply["length"]) == (None, 100)


def test_send_file_from_an_action_uses_the_file_reply(tmp_path):
    class Fetch(Action):
        name = "fetch"
        description = "sends a file itself"

        def run(self, data):
            data.to_render = False
            data.connection.send_file("hello.txt")

    public = tmp_path / "public"
    public.mkdir()
    (public / "hello.txt").write_bytes(b"hi")
    h = harness(f'[general.paths]\npublic = ["{public}"]\n', plugins=[Fetch])
    c = h.client()
    [reply] = c.request({"event": "action", "params": {"action": "fetch"}, "messageId": "f1"})
    assert (reply["content"], reply["mime"], reply["messageCount"], reply["messageId"]) == (
        "hi", "text/plain", 1, "f1"
    )


# --- bad input -----------------------------------------------------------------------


def test_non_json_frames_get_no_reply_and_are_not_counted():
    h = harness()
    c = h.client()
    for text in [b"not json at all", b"{", b"", b"NaN", b'{"a":1e400}', b'"\\ud800"', b"[1,]"]:
        c.send_text(text)
    assert c.frames() == []
    [reply] = c.request({"event": "detailsView", "messageId": 1})
    assert reply["messageCount"] == 1


@pytest.mark.parametrize(
    "frame",
    [b'"a json string"', b"[1,2,3]", b"5", b"null", b"true", b"{}", b'{"event":5}', b'{"event":null}', b'{"event":""}',
     b'{"event":{}}', b'{"event":["action"]}', b'{"event":true}'],
)
def test_json_that_is_not_an_event_object_is_a_verb_error(frame):
    h = harness()
    c = h.client()
    c.send_text(frame)
    [reply] = c.messages()
    assert list(reply) == ["status", "error", "context", "messageCount", "messageId"]
    assert reply["status"] == reply["error"] == "verb not found or not allowed ()"
    assert reply["messageCount"] == 1
    assert re.fullmatch(UUID, reply["messageId"])


@pytest.mark.parametrize("event", ["badEvent", "paramAdd", "paramsView", "paramDelete", "roomStatus", "Action"])
def test_unknown_and_socket_only_events(event):
    h = harness()
    c = h.client()
    c.send_text(b'{"event":"%s","key":"x","messageId":18}' % event.encode())
    text = ("verb not found or not allowed (%s)" % event).encode()
    assert c.texts() == [
        b'{"status":"' + text + b'","error":"' + text + b'","context":"response","messageCount":1,"messageId":18}'
    ]


@pytest.mark.parametrize("event", ["quit", "exit"])
def test_quit_closes_with_1000_and_no_reply(event):
    h = harness()
    c = h.client()
    c.request({"event": "roomAdd", "room": "defaultRoom"})
    c.send({"event": event, "messageId": 23})
    assert c.frames() == [(OP_CLOSE, struct.pack("!H", 1000))]
    c.close()
    assert c.lost
    assert h.node.connections == {}
    assert h.node.rooms.local_members("defaultRoom") == []


def test_binary_frames_are_ignored():
    h = harness()
    c = h.client()
    c.send_frame(OP_BINARY, b'{"event":"detailsView","messageId":1}')
    c.send_frame(OP_BINARY, b"\xff\xfe\x00")
    assert c.frames() == []
    [reply] = c.request({"event": "detailsView", "messageId": 2})
    assert (reply["messageCount"], reply["messageId"]) == (1, 2)


def test_fragmented_text_message_is_one_message():
    h = harness()
    c = h.client()
    c.send_frame(OP_TEXT, b'{"event":"detail', fin=False)
    c.send_frame(OP_PING, b"ping!")
    c.send_frame(OP_CONT, b'sView","messageId":7}')
    frames = c.frames()
    assert frames[0] == (OP_PONG, b"ping!")
    assert json.loads(frames[1][1])["messageId"] == 7


def test_invalid_utf8_closes_with_1007_and_others_keep_working():
    h = harness()
    bad, good = h.client(), h.client()
    bad.send_frame(OP_TEXT, b'{"event":"\xff\xfe"}')
    frames = bad.frames()
    assert frames[0][0] == OP_CLOSE
    assert bad.close_code == 1007
    bad.close()
    assert bad.lost
    assert good.request({"event": "detailsView", "messageId": 1})[0]["status"] == "OK"
    assert len(h.node.connections) == 1


def test_message_over_max_message_size_closes_with_1009():
    h = harness("[servers.websocket]\nmaxMessageSize = 1024\n")
    c, other = h.client(), h.client()
    ok = json.dumps({"event": "say", "room": "x", "message": "y" * 900}).encode()
    assert len(ok) <= 1024
    c.send_text(ok)
    assert c.messages()[0]["error"] == "connection not in this room (x)"
    c.send_frame(OP_TEXT, b"x" * 1025, mask=b"\0\0\0\0")
    c.frames()
    assert c.close_code == 1009
    assert not c.lost
    h.node.reactor.advance(2)  # Autobahn's close handshake timeout drops the TCP
    assert c.lost
    assert other.request({"event": "detailsView"})[0]["status"] == "OK"


def test_fragments_adding_up_over_the_limit_close_with_1009():
    h = harness("[servers.websocket]\nmaxMessageSize = 1024\n")
    c = h.client()
    c.send_frame(OP_TEXT, b"a" * 600, fin=False)
    c.send_frame(OP_CONT, b"a" * 600, fin=True)
    c.frames()
    assert c.close_code == 1009


def test_default_limit_is_one_mebibyte():
    h = harness()
    c = h.client()
    message = b'{"event":"say","room":"x","message":"' + b"y" * (1048576 - 39) + b'"}'
    assert len(message) == 1048576
    c.send_frame(OP_TEXT, message, mask=b"\0\0\0\0")
    assert c.messages()[0]["error"] == "connection not in this room (x)"
    c.send_frame(OP_TEXT, b" " * 1048577, mask=b"\0\0\0\0")
    c.frames()
    assert c.close_code == 1009


def test_unmasked_client_frame_is_a_protocol_error():
    h = harness()
    c = h.client()
    c.send_frame(OP_TEXT, b'{"event":"detailsView"}', mask=None)
    c.frames()
    assert c.close_code == 1002


def test_a_thousand_rapid_connect_close_cycles_leave_nothing_behind():
    """Half close politely, half just drop the TCP connection mid-session."""
    import gc

    from ahtwist.web.site import WebChannel
    from ahtwist.websocket import WebSocketConnectionProtocol

    def count() -> tuple[int, int]:
        gc.collect()
        objects = gc.get_objects()
        return (
            sum(isinstance(o, WebSocketConnectionProtocol) for o in objects),
            sum(isinstance(o, WebChannel) for o in objects),
        )

    before = count()
    h = harness()
    keeper = h.client()
    keeper.request({"event": "roomAdd", "room": "defaultRoom"})
    for i in range(1000):
        c = h.client()
        if i % 3 == 0:
            c.request({"event": "roomAdd", "room": "defaultRoom"})
        if i % 2:
            c.close()
        else:
            c.transport.client_gone()
        assert c.lost
    h.pump()
    assert len(h.node.connections) == 1
    assert h.node.active_by_type["websocket"] == 1
    assert len(h.websockets.protocols) == 1
    assert h.site.channels == set()
    assert [m.id for m in h.node.rooms.local_members("defaultRoom")] == list(h.node.connections)
    del c
    after = count()
    assert after[0] - before[0] <= 1  # the keeper
    assert after[1] - before[1] <= 1  # its channel, held by the request Autobahn replayed
    assert keeper.request({"event": "roomView", "room": "defaultRoom"})[0]["data"]["membersCount"] == 1


def test_a_connection_dropped_mid_handshake_is_forgotten():
    h = harness()
    c = h.client(handshake=False)
    c.send_raw(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
    c.transport.client_gone()
    assert c.lost
    assert h.node.connections == {} and h.site.channels == set()


# --- keep-alive ---------------------------------------------------------------------


def test_server_pings_and_drops_a_peer_that_does_not_pong():
    h = harness("[servers.websocket]\npingInterval = 30\npingTimeout = 10\n")
    alive, dead = h.client(), h.client()
    clock = h.node.reactor
    clock.advance(29)
    assert alive.frames() == []
    clock.advance(2)
    [(op_alive, ping)] = alive.frames()
    [(op_dead, _)] = dead.frames()
    assert op_alive == op_dead == OP_PING
    alive.send_frame(OP_PONG, ping)
    clock.advance(11)
    clock.advance(2)  # the close handshake the dead peer never answers
    assert dead.lost
    assert not alive.lost
    assert len(h.node.connections) == 1


def test_client_pings_are_answered_and_pings_can_be_switched_off():
    h = harness("[servers.websocket]\npingInterval = 0\n")
    c = h.client()
    c.send_frame(OP_PING, b"123")
    assert c.frames() == [(OP_PONG, b"123")]
    h.node.reactor.advance(3600)
    assert c.frames() == []
    assert not c.lost


# --- lifecycle ----------------------------------------------------------------------


def test_close_destroys_the_connection_runs_middleware_and_leaves_rooms():
    events = []

    class Track(ConnectionMiddleware):
        name = "track"

        def create(self, connection):
            events.append(("create", connection.type))

        def destroy(self, connection):
            events.append(("destroy", connection.type))

    h = harness(plugins=[Track])
    a, b = h.client(), h.client()
    a.request({"event": "roomAdd", "room": "defaultRoom"})
    b.request({"event": "roomAdd", "room": "defaultRoom"})
    a.close()
    assert a.frames() == [(OP_CLOSE, struct.pack("!H", 1000))]
    assert a.lost
    [reply] = b.request({"event": "roomView", "room": "defaultRoom"})
    assert reply["data"]["membersCount"] == 1
    assert events == [("create", "websocket"), ("create", "websocket"), ("destroy", "websocket")]


def _stop(h, destroy: bool):
    from ahtwist.service import wait_until

    return h.websockets.stop(destroy, lambda done: wait_until(h.node.reactor, done, 5))


def test_stop_closes_with_1001_and_clients_leave_rooms_when_they_answer():
    h = harness()
    a, b = h.client(), h.client()
    a.request({"event": "roomAdd", "room": "defaultRoom"})
    done = _stop(h, destroy=False)
    assert a.frames() == [(OP_CLOSE, struct.pack("!H", 1001))]
    assert b.frames() == [(OP_CLOSE, struct.pack("!H", 1001))]
    assert len(h.node.rooms.local_members("defaultRoom")) == 1  # until the close completes
    a.close(1001)
    b.close(1001)
    h.node.reactor.advance(0.1)
    assert a.lost and b.lost
    assert done.called
    assert h.node.connections == {} and h.node.rooms.local_members("defaultRoom") == []


def test_stop_with_destroy_clients_destroys_first_and_closes_with_1000():
    h = harness("[servers.websocket]\ndestroyClientsOnShutdown = true\n")
    a = h.client()
    a.request({"event": "roomAdd", "room": "defaultRoom"})
    done = _stop(h, destroy=True)
    assert h.node.rooms.local_members("defaultRoom") == []
    assert h.node.connections == {}
    assert a.frames() == [(OP_CLOSE, struct.pack("!H", 1000))]
    # a client that never answers is dropped when the close handshake times out
    h.node.reactor.advance(2)
    assert a.lost
    h.node.reactor.advance(0.1)
    assert done.called


def test_a_chat_payload_is_framed_once_but_never_sent_stale():
    """The same payload dict to several members reuses one frame; a changed
    dict (even the same object) is encoded again."""
    h = harness()
    a, b = h.client(), h.client()
    pa, pb = sorted(h.websockets.protocols, key=lambda p: p.connection.connected_at or 0)[:2]
    payload = {"message": "one", "room": "r", "from": 0, "context": "user", "sentAt": 1}
    h.websockets.send_message(pa, payload)
    first = h.websockets._shared
    h.websockets.send_message(pb, payload)
    assert h.websockets._shared is first
    payload["message"] = "two"
    h.websockets.send_message(pa, payload)
    texts = sorted(a.texts() + b.texts())
    assert texts == sorted([
        b'{"message":"one","room":"r","from":0,"context":"user","sentAt":1}',
        b'{"message":"one","room":"r","from":0,"context":"user","sentAt":1}',
        b'{"message":"two","room":"r","from":0,"context":"user","sentAt":1}',
    ])


def test_a_bug_while_handling_a_frame_keeps_the_connection(monkeypatch):
    h = harness()
    c = h.client()

    original = h.websockets.verbs.run

    def broken(*args):
        monkeypatch.setattr(h.websockets.verbs, "run", original)  # once
        raise RuntimeError("bug")

    monkeypatch.setattr(h.websockets.verbs, "run", broken)
    assert c.request({"event": "detailsView", "messageId": 1}) == []
    assert not c.lost
    [reply] = c.request({"event": "roomAdd", "room": "defaultRoom", "messageId": 2})
    assert (reply["status"], reply["messageCount"]) == ("OK", 2)
