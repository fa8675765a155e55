"""The ``/primus`` endpoint's wire, frame by frame, against a real ``twistd ahtwist``.

Primus (``websockets`` transformer, ``JSON`` parser) frames every message as
JSON; its own protocol frames are JSON strings ``"primus::<kind>::<value>"``.
Everything else is the websocket server's protocol, unchanged.
"""

import re
import tempfile
from pathlib import Path

import pytest

from tests.e2e.twistd import AhtwistProcess
from tests.e2e.ws_blocking import BlockingWebSocket
from tests.wshelpers import OP_CLOSE, OP_TEXT

WELCOME = {"welcome": "Hello! Welcome to the actionhero api", "context": "api"}


@pytest.fixture(scope="module")
def pinging_server():
    """Server pings every second."""
    config = Path(tempfile.mkdtemp(prefix="ahtwist-primus-")) / "ahtwist.toml"
    config.write_text("[servers.websocket]\nprimusPingInterval = 1\n")
    process = AhtwistProcess(config=str(config)).start()
    yield process
    process.cleanup()


def primus(server, query: str = "?_primuscb=Q92J5r-") -> BlockingWebSocket:
    socket = BlockingWebSocket(f"ws://127.0.0.1:{server.port}/primus{query}")
    assert socket.status == 101
    assert socket.recv() == WELCOME
    return socket


def test_messages_are_the_websocket_protocol(server):
    socket, plain = primus(server), BlockingWebSocket(server.ws_url)
    try:
        plain.recv()
        for client in (socket, plain):
            reply = client.request({"event": "action", "params": {"action": "greet", "name": "Ann"}, "messageId": 7})
            assert reply == {"greeting": "Hello, Ann!", "context": "response", "messageCount": 1, "messageId": 7}
        assert socket.request({"event": "nope", "messageId": 9}) == plain.request({"event": "nope", "messageId": 9})
    finally:
        socket.close()
        plain.close()


def test_client_ping_is_answered_with_pong_and_id_with_the_connection_id(server):
    socket = primus(server)
    try:
        assert socket.request("primus::ping::1733333333333") == "primus::pong::1733333333333"
        connection_id = socket.request({"event": "detailsView", "messageId": 1})["data"]["id"]
        assert socket.request("primus::id::") == f"primus::id::{connection_id}"
        # protocol frames are not messages: the next message is the second counted
        assert socket.request({"event": "detailsView", "messageId": 2})["messageCount"] == 2
    finally:
        socket.close()


def test_quit_says_server_close_then_closes_normally(server):
    socket = primus(server)
    try:
        socket.send({"event": "quit", "messageId": 1})
        assert socket.recv_frame() == (OP_TEXT, b'"primus::server::close"')
        opcode, _ = socket.recv_frame()
        assert (opcode, socket.close_code) == (OP_CLOSE, 1000)
    finally:
        socket.close()


def test_server_pings_and_drops_a_client_that_never_answers(pinging_server):
    answering, silent = primus(pinging_server), primus(pinging_server)
    try:
        for _ in range(3):
            ping = answering.recv()
            assert re.fullmatch(r"primus::ping::\d{13}", ping)
            answering.send("primus::pong::" + ping.rsplit("::", 1)[1])
        assert re.fullmatch(r"primus::ping::\d{13}", silent.recv())
        with pytest.raises(ConnectionError):
            silent.recv_frame()  # no pong: dropped at the next ping time
        assert "dropping primus client" in pinging_server.log()
        assert answering.request({"event": "detailsView", "messageId": 1})["status"] == "OK"
    finally:
        answering.close()
        silent.close()

