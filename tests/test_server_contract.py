"""One behaviour suite, three transports: the shared verbs and reply envelopes.

Every built-in server is a :class:`ahtwist.Server` and gets its replies from
the same core (verbs, the action processor, the file dispatch, the envelopes
in :mod:`ahtwist.replies`).  Each test below runs unchanged against the web,
websocket and socket servers through a small driver that only knows how to
put a request on the wire and read the reply back; the expected reply is
written once, wrapped in the transport's documented envelope.  A verb a
transport does not have is asserted to be refused exactly as that transport
refuses it.
"""

import json
import re
from typing import Any

import pytest

from ahtwist import Action, ActionError, Input, Server
from ahtwist.service import WebService
from ahtwist.socket import SocketFactory, SocketServer
from ahtwist.websocket import WebSocketServer
from tests.helpers import HTTPClient, make_node
from tests.socket_helpers import FakeClient
from tests.wshelpers import WSHarness

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
NOW_MS = 1795627006000  # tests.helpers.ManualClock's start
CONFIG = """
[servers.web.metadataOptions]
serverInformation = false
requesterInformation = false
[servers.web]
padding = 0
"""


class Echo(Action):
    name = "echo"
    description = "echoes its input"
    inputs = {"value": Input(required=True)}

    def run(self, data):
        data.response["echo"] = data.params["value"]


class Refuse(Action):
    name = "refuse"
    description = "always refuses"

    def run(self, data):
        raise ActionError("nope")


class SocketDriver:
    """Lines over an in-memory socket client."""

    name = "socket"
    chats = True
    sticky_params = True

    def __init__(self, node: Any) -> None:
        self.client = FakeClient(SocketFactory(node))
        assert self.client.messages() == [{"welcome": "Hello! Welcome to the actionhero api", "context": "api"}]
        self.count = 0

    @property
    def connection(self) -> Any:
        return self.client.connection

    def _ask(self, line: str) -> list[Any]:
        self.count += 1
        return [_uuid_free(m) for m in map(json.loads, self.client.ask(line + "\n"))]

    def action(self, name: str, **params: Any) -> Any:
        [reply] = self._ask(json.dumps({"action": name, "params": params, "messageId": "m"}))
        return reply

    def verb(self, verb: str, *words: str) -> list[Any]:
        return self._ask(" ".join((verb, *words)))

    def envelope(self, body: dict[str, Any], status: int = 200) -> Any:
        return {**body, "context": "response", "messageCount": self.count, "messageId": "m"}

    def verb_envelope(self, body: dict[str, Any]) -> Any:
        return {**body, "messageCount": self.count, "messageId": "<uuid>"}

    def file(self, name: str) -> bytes:
        self.count += 1
        self.client.send(f"file {name}\n")
        return self.client.read_until_quiet()

    def not_found_file(self) -> bytes:
        return b'"That file is not found"\r\n'


class WebSocketDriver:
    """JSON frames over an in-memory websocket (upgraded through the real Site)."""

    name = "websocket"
    chats = True
    sticky_params = False

    def __init__(self, node: Any) -> None:
        self.harness = WSHarness(node)
        self.client = self.harness.client()
        self.count = 0

    @property
    def connection(self) -> Any:
        [protocol] = self.harness.websockets.protocols
        return protocol.connection

    def _request(self, message: dict[str, Any]) -> list[Any]:
        self.count += 1
        return self.client.request({**message, "messageId": self.count})

    def action(self, name: str, **params: Any) -> Any:
        [reply] = self._request({"event": "action", "params": {"action": name, **params}})
        return reply

    def verb(self, verb: str, *words: str) -> list[Any]:
        message: dict[str, Any] = {"event": verb}
        if words:
            message["room"] = words[0]
        if verb == "say":
            message["message"] = " ".join(words[1:])
        return self._request(message)

    def envelope(self, body: dict[str, Any], status: int = 200) -> Any:
        return {**body, "context": "response", "messageCount": self.count, "messageId": self.count}

    def verb_envelope(self, body: dict[str, Any]) -> Any:
        return {**body, "messageCount": self.count, "messageId": self.count}

    def file(self, name: str) -> Any:
        [reply] = self._request({"event": "file", "file": name})
        return reply

    def not_found_file(self) -> Any:
        return self.envelope(
            {"error": "That file is not found", "content": None, "mime": "text/html", "length": 22}
        )


class WebDriver:
    """HTTP requests through the real Site (metadata switched off, compact JSON)."""

    name = "web"
    chats = False
    sticky_params = False

    def __init__(self, node: Any) -> None:
        self.http = HTTPClient(node)

    def action(self, name: str, **params: Any) -> Any:
        response = self.http.post_json(f"/api/{name}", params)
        return response.status, response.json()

    def envelope(self, body: dict[str, Any], status: int = 200) -> Any:
        return status, body

    def file(self, name: str) -> bytes:
        response = self.http.get(f"/public/{name}")
        return response.status, response.body

    def not_found_file(self) -> Any:
        return 404, b"That file is not found"


DRIVERS = {"socket": SocketDriver, "websocket": WebSocketDriver, "web": WebDriver}


def _uuid_free(message: Any) -> Any:
    """A socket verb reply's fresh uuid messageId shown as ``<uuid>``."""
    if isinstance(message, dict) and isinstance(message.get("messageId"), str) and UUID.match(message["messageId"]):
        message["messageId"] = "<uuid>"
    return message


@pytest.fixture(params=sorted(DRIVERS))
def driver(request, tmp_path) -> Any:
    public = tmp_path / "public"
    public.mkdir()
    (public / "hello.txt").write_text("hello, file\n")
    node = make_node(CONFIG + f'[general.paths]\npublic = ["{public}"]\n', plugins=[Echo, Refuse])
    return DRIVERS[request.param](node)


# --- every server is a Server ------------------------------------------------


def test_every_built_in_server_declares_the_contract():
    node = make_node()
    declared = {
        cls.type: (cls.can_chat, cls.sends_welcome, sorted(cls.allowed_verbs))
        for cls in (WebService, WebSocketServer, SocketServer)
    }
    common = ["detailsView", "documentation", "exit", "quit", "roomAdd", "roomLeave", "roomView", "say"]
    params = ["paramAdd", "paramDelete", "paramView", "paramsDelete", "paramsView"]
    assert declared == {
        "web": (False, False, []),
        "websocket": (True, True, common),
        "socket": (True, True, sorted(common + params)),
    }
    assert all(issubclass(cls, Server) for cls in (WebService, WebSocketServer, SocketServer))
    assert isinstance(SocketFactory(node).server, Server)


# --- envelopes -----------------------------------------------------------------


def test_action_response(driver):
    assert driver.action("echo", value="x") == driver.envelope({"echo": "x"})


def test_action_error(driver):
    assert driver.action("refuse") == driver.envelope({"error": "nope"}, 400)


def test_missing_param(driver):
    assert driver.action("echo") == driver.envelope(
        {"error": "value is a required parameter for this action"}, 422
    )


def test_unknown_action(driver):
    assert driver.action("nosuch") == driver.envelope({"error": "unknown action or invalid apiVersion"}, 404)


def test_file_and_not_found(driver):
    if driver.name == "socket":
        assert driver.file("hello.txt") == b"hello, file\n"
    elif driver.name == "web":
        assert driver.file("hello.txt") == (200, b"hello, file\n")
    else:
        reply = driver.file("hello.txt")
        modified = reply.pop("lastModified")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", modified)
        assert reply == driver.envelope(
            {"error": None, "content": "hello, file\n", "mime": "text/plain", "length": 12}
        )
    assert driver.file("../secret") == driver.not_found_file()
    assert driver.file("missing.txt") == driver.not_found_file()


# --- chat verbs (servers that can chat) ------------------------------------------


def test_room_verbs_and_say(driver):
    if not driver.chats:
        # web connections cannot chat: the verbs are not on the wire at all
        assert driver.action("roomAdd") == driver.envelope({"error": "unknown action or invalid apiVersion"}, 404)
        return
    ok = {"status": "OK", "context": "response"}
    assert driver.verb("roomAdd", "defaultRoom") == [driver.verb_envelope({**ok, "data": True})]
    already = "connection already in this room (defaultRoom)"
    assert driver.verb("roomAdd", "defaultRoom") == [
        driver.verb_envelope({"status": already, "error": already, "context": "response", "data": False})
    ]
    connection = driver.connection
    [view] = driver.verb("roomView", "defaultRoom")
    assert view == driver.verb_envelope(
        {
            **ok,
            "data": {
                "room": "defaultRoom",
                "membersCount": 1,
                "members": {connection.id: {"id": connection.id, "joinedAt": NOW_MS}},
            },
        }
    )
    assert driver.verb("say", "defaultRoom", "hello", "all") == [
        driver.verb_envelope(ok),
        {"message": "hello all", "room": "defaultRoom", "from": connection.id, "context": "user", "sentAt": NOW_MS},
    ]
    assert driver.verb("roomLeave", "defaultRoom") == [driver.verb_envelope({**ok, "data": True})]
    missing = "connection not in this room (defaultRoom)"
    assert driver.verb("roomView", "defaultRoom") == [
        driver.verb_envelope({"status": missing, "error": missing, "context": "response"})
    ]
    [details] = driver.verb("detailsView")
    assert details == driver.verb_envelope({**ok, "data": connection.details()})
    assert details["data"]["id"] == connection.id and details["data"]["rooms"] == []


def test_sticky_param_verbs(driver):
    if not driver.chats:
        assert driver.action("paramAdd") == driver.envelope({"error": "unknown action or invalid apiVersion"}, 404)
        return
    ok = {"status": "OK", "context": "response"}
    if not driver.sticky_params:
        for verb in ("paramAdd", "paramView", "paramDelete", "paramsView", "paramsDelete"):
            text = f"verb not found or not allowed ({verb})"
            assert driver.verb(verb, "value=1") == [
                driver.verb_envelope({"status": text, "error": text, "context": "response"})
            ]
        return
    assert driver.verb("paramAdd", "value=abc") == [driver.verb_envelope(ok)]
    assert driver.verb("paramView", "value") == [driver.verb_envelope({**ok, "data": "abc"})]
    assert driver.verb("paramsView") == [driver.verb_envelope({**ok, "data": {"value": "abc"}})]
    [echo] = driver._ask("echo")  # the sticky param feeds the action
    assert echo == {"echo": "abc", "context": "response", "messageCount": driver.count, "messageId": "<uuid>"}
    assert driver.verb("paramDelete", "value") == [driver.verb_envelope(ok)]
    assert driver.verb("paramsView") == [driver.verb_envelope({**ok, "data": {"action": "echo"}})]
    assert driver.verb("paramsDelete") == [driver.verb_envelope(ok)]
    assert driver.verb("paramsView") == [driver.verb_envelope({**ok, "data": {}})]


def test_unknown_verb_is_refused_or_run_as_an_action(driver):
    if not driver.chats:
        return
    if driver.sticky_params:  # the socket runs an unknown word as an action
        assert driver.verb("nosuch") == [
            {"error": "unknown action or invalid apiVersion", "context": "response",
             "messageCount": driver.count, "messageId": "<uuid>"}
        ]
    else:
        text = "verb not found or not allowed (nosuch)"
        assert driver.verb("nosuch") == [driver.verb_envelope({"status": text, "error": text, "context": "response"})]
