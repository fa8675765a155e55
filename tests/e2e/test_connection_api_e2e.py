"""The connection API on a real ``twistd ahtwist``: connection middleware that
reads the websocket upgrade request (header or query token) and refuses with
403, a refused socket client, and ``connection.session`` across actions."""

import json
import re
import socket
from pathlib import Path

import pytest

from tests.e2e.twistd import AhtwistProcess
from tests.e2e.ws_blocking import BlockingWebSocket
from tests.helpers import free_port

ACTIONS = Path(__file__).resolve().parent / "connection_actions"
WELCOME = {"welcome": "Hello! Welcome to the actionhero api", "context": "api"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = tmp_path_factory.mktemp("connection-api") / "ahtwist.toml"
    config.write_text(f'[general.paths]\nactions = ["{ACTIONS}"]\n')
    socket_port = free_port()
    process = AhtwistProcess(
        config=str(config), extra=("--socket", f"tcp:{socket_port}:interface=127.0.0.1")
    ).start()
    process.wait_port(socket_port)
    process.socket_port = socket_port
    yield process
    process.cleanup()


def refusal(url: str, headers: dict[str, str] | None = None) -> tuple[bytes, bytes]:
    """Open an upgrade that is refused: the response head and body."""
    ws = BlockingWebSocket(url, headers=headers)
    assert ws.status == 403, ws.response_head
    body = ws._buffer
    ws.sock.settimeout(10)
    while True:  # the server closes after the body
        chunk = ws.sock.recv(4096)
        if not chunk:
            break
        body += chunk
    ws.sock.close()
    return ws.response_head, body


def test_websocket_upgrade_without_a_good_token_is_refused_with_403(server):
    for headers, query in (({}, ""), ({"Authorization": "Bearer wrong"}, ""), ({}, "?token=wrong")):
        head, body = refusal(server.ws_url + query, headers)
        assert head.split(b"\r\n") == [
            b"HTTP/1.1 403 Forbidden",
            b"Content-Type: application/json; charset=utf-8",
            b"Connection: close",
            b"Content-Length: 37",
        ]
        assert json.loads(body) == {"error": "bad token", "context": "api"}
    # (socket refusals are logged too: the start-up probe of the socket port is one)
    lines = [line for line in server.log().splitlines() if "connection refused by tokenGate: websocket" in line]
    assert len(lines) == 3
    assert all(re.search(r"\[ahtwist\.node#info\] connection refused by tokenGate: websocket from 127\.0\.0\.1: bad token$", line) for line in lines), lines


@pytest.mark.parametrize("headers,query", [({"Authorization": "Bearer good"}, ""), ({}, "?token=good")])
def test_a_good_token_opens_the_websocket_and_the_session_lasts(server, headers, query):
    ws = BlockingWebSocket(server.ws_url + query, headers={**headers, "Cookie": 'sessionID="fp-1"; other=2'})
    assert ws.status == 101
    assert ws.recv() == WELCOME
    assert ws.request({"event": "action", "params": {"action": "remember", "value": "v1"}, "messageId": 1}) == {
        "context": "response", "messageCount": 1, "messageId": 1,
    }
    assert ws.request({"event": "action", "params": {"action": "recall"}, "messageId": 2}) == {
        "session": {"user": "alice", "value": "v1"},
        "secure": False,
        "cookies": {"sessionID": "fp-1", "other": "2"},
        "context": "response",
        "messageCount": 2,
        "messageId": 2,
    }
    [details] = [ws.request({"event": "detailsView", "messageId": 3})["data"]]
    assert details["fingerprint"] == "fp-1"
    ws.close()


def test_a_refused_socket_client_gets_one_error_line_then_the_close(server):
    with socket.create_connection(("127.0.0.1", server.socket_port), timeout=10) as sock:
        data = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data == b'{"error":"socket clients need a token","context":"api"}\r\n'
    assert "connection refused by tokenGate: socket from 127.0.0.1: socket clients need a token" in server.log()


def test_web_requests_pass_the_gate_and_have_no_session_carry_over(server):
    import urllib.request

    with urllib.request.urlopen(server.http_url + "/api/recall") as response:
        body = json.loads(response.read())
    assert (body["session"], body["secure"], body["cookies"]) == ({}, False, {})
