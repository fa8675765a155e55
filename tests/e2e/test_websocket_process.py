"""The websocket server in a real ``twistd ahtwist`` process, over real sockets.

Covers what in-memory tests cannot: the listener wiring (ws:// and wss:// on
every ``--web`` endpoint), the graceful stop on SIGTERM (close 1001, or 1000
with ``destroyClientsOnShutdown``), and many real clients at once.
"""

import ssl
import struct
import urllib.request

import pytest

from tests.e2e.servers import make_certificate
from tests.e2e.twistd import AhtwistProcess
from tests.e2e.ws_blocking import BlockingWebSocket
from tests.helpers import free_port
from tests.wshelpers import OP_CLOSE

WELCOME = {"welcome": "Hello! Welcome to the actionhero api", "context": "api"}


def connect(url: str, **kw) -> BlockingWebSocket:
    ws = BlockingWebSocket(url, **kw)
    assert ws.status == 101, ws.response_head
    assert ws.recv() == WELCOME
    return ws


def test_action_and_chat_between_two_real_clients(server):
    a, b = connect(server.ws_url), connect(server.ws_url, headers={"Cookie": "sessionID=fromCookie"})
    try:
        reply = a.request({"event": "action", "params": {"action": "randomNumber"}, "messageId": 1})
        assert list(reply) == ["randomNumber", "stringRandomNumber", "context", "messageCount", "messageId"]
        assert (reply["messageCount"], reply["messageId"]) == (1, 1)
        assert b.request({"event": "detailsView"})["data"]["fingerprint"] == "fromCookie"
        assert a.request({"event": "roomAdd", "room": "defaultRoom"})["data"] is True
        assert b.request({"event": "roomAdd", "room": "defaultRoom"})["data"] is True
        assert b.request({"event": "say", "room": "defaultRoom", "message": "hi", "messageId": "s"}) == {
            "status": "OK", "context": "response", "messageCount": 3, "messageId": "s"
        }
        heard_b = b.recv()
        heard_a = a.recv()
        assert heard_a == heard_b
        assert (heard_a["message"], heard_a["room"], heard_a["context"]) == ("hi", "defaultRoom", "user")
    finally:
        a.close()
        b.close()


def test_plain_get_is_426_and_the_http_api_shares_the_port(server):
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(server.http_url + "/ws", timeout=5)
    assert caught.value.code == 426
    assert caught.value.headers["Upgrade"] == "websocket"
    with urllib.request.urlopen(server.http_url + "/api/randomNumber", timeout=5) as response:
        assert response.status == 200


def test_the_101_has_no_server_header(server):
    ws = connect(server.ws_url)
    try:
        assert b"server:" not in ws.response_head.lower()
    finally:
        ws.close()


def test_many_clients_connect_and_close_and_the_server_keeps_serving(server):
    clients = [connect(server.ws_url) for _ in range(50)]
    for i, ws in enumerate(clients):
        ws.send({"event": "action", "params": {"action": "randomNumber"}, "messageId": i})
    for i, ws in enumerate(clients):
        assert ws.recv()["messageId"] == i
        ws.close()
    for _ in range(200):
        connect(server.ws_url).sock.close()  # abrupt: no closing handshake
    ws = connect(server.ws_url)
    try:
        status = ws.request({"event": "action", "params": {"action": "status"}})
        assert status["stats"]["webSocketServer"]["numberOfLocalActiveWebSocketClients"] == 1
    finally:
        ws.close()


def test_wss_on_a_tls_web_listener(tmp_path):
    """Every --web listener serves /ws: here an ssl: endpoint next to a tcp: one."""
    key_path, cert_path = make_certificate(tmp_path)
    tls_port = free_port()
    process = AhtwistProcess(
        extra=("--web", f"ssl:{tls_port}:interface=127.0.0.1:privateKey={key_path}:certKey={cert_path}")
    )
    process.start()
    try:
        context = ssl.create_default_context(cafile=str(cert_path))
        ws = connect(f"wss://localhost:{tls_port}/ws", context=context)
        plain = connect(process.ws_url)
        try:
            assert ws.request({"event": "roomAdd", "room": "defaultRoom"})["data"] is True
            assert plain.request({"event": "roomAdd", "room": "defaultRoom"})["data"] is True
            plain.request({"event": "say", "room": "defaultRoom", "message": "across listeners"})
            assert ws.recv()["message"] == "across listeners"
        finally:
            ws.close()
            plain.close()
    finally:
        process.cleanup()


def assert_graceful_exit(process: AhtwistProcess) -> None:
    """twistd re-raises the stopping signal after a clean shutdown, so -15 is a
    clean exit here; the node's own "stopped" line proves the drain ran."""
    assert process.process.wait(15) in (0, -15)
    assert "[ahtwist.service#info] stopped" in process.log()


def test_sigterm_closes_websockets_with_1001():
    process = AhtwistProcess().start()
    try:
        ws = connect(process.ws_url)
        process.process.send_signal(15)
        assert ws.wait_closed() == 1001
        assert_graceful_exit(process)
    finally:
        process.cleanup()


def test_sigterm_with_destroy_clients_closes_with_1000(tmp_path):
    config = tmp_path / "ahtwist.toml"
    config.write_text("[servers.websocket]\ndestroyClientsOnShutdown = true\n")
    process = AhtwistProcess(config=str(config)).start()
    try:
        ws = connect(process.ws_url)
        assert ws.request({"event": "roomAdd", "room": "defaultRoom"})["data"] is True
        process.process.send_signal(15)
        opcode, payload = ws.recv_frame()
        assert (opcode, payload) == (OP_CLOSE, struct.pack("!H", 1000))
        ws.send_frame(OP_CLOSE, payload)
        assert_graceful_exit(process)
    finally:
        process.cleanup()
