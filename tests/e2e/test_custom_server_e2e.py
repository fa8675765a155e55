"""The custom server example (``examples/jsonlines_server``) in a real
``twistd ahtwist``: JSON lines over a unix socket, in the same rooms as a
websocket client, drained with a goodbye on SIGTERM."""

import json
import signal
import socket
from pathlib import Path

from tests.e2e.twistd import AhtwistProcess
from tests.e2e.ws_blocking import BlockingWebSocket
from tests.helpers import REPO, wait_for

WELCOME = {"welcome": "Hello! Welcome to the actionhero api", "context": "api"}


class JsonLinesClient:
    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.buffer = b""

    def recv(self):
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; unread {self.buffer!r}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def request(self, message):
        self.sock.sendall(json.dumps(message).encode() + b"\n")
        return self.recv()

    def at_eof(self) -> bool:
        return self.buffer == b"" and self.sock.recv(1) == b""


def wait_for_unix_socket(path: Path, process: AhtwistProcess) -> None:
    def listening() -> bool:
        assert process.process.poll() is None, process.log()
        return "jsonLines server listening on" in process.log()

    wait_for(listening, 20, lambda: f"the jsonLines server did not start:\n{process.log()}")
    assert path.is_socket()


def test_the_json_lines_example_serves_actions_and_chat_and_drains(tmp_path):
    path = tmp_path / "jl.sock"
    config = tmp_path / "ahtwist.toml"
    config.write_text(
        f'[general.paths]\nservers = ["{REPO / "examples" / "jsonlines_server"}"]\n'
        f'[servers.jsonLines]\nendpoints = ["unix:{path}"]\n'
    )
    process = AhtwistProcess(config=str(config)).start()
    try:
        wait_for_unix_socket(path, process)
        client = JsonLinesClient(str(path))
        assert client.recv() == WELCOME
        reply = client.request({"event": "action", "params": {"action": "randomNumber"}, "messageId": 1})
        assert list(reply) == ["randomNumber", "stringRandomNumber", "context", "messageCount", "messageId"]
        assert (reply["context"], reply["messageCount"], reply["messageId"]) == ("response", 1, 1)
        details = client.request({"event": "detailsView", "messageId": 2})
        me = details["data"]["id"]
        assert details == {"status": "OK", "context": "response", "data": details["data"], "messageCount": 2, "messageId": 2}
        assert (details["data"]["remoteIP"], details["data"]["rooms"]) == ("unix", [])

        ws = BlockingWebSocket(process.ws_url)
        assert ws.recv() == WELCOME
        assert ws.request({"event": "roomAdd", "room": "defaultRoom", "messageId": 1})["status"] == "OK"
        assert client.request({"event": "roomAdd", "room": "defaultRoom", "messageId": 3}) == {
            "status": "OK", "context": "response", "data": True, "messageCount": 3, "messageId": 3,
        }
        view = ws.request({"event": "roomView", "room": "defaultRoom", "messageId": 2})["data"]
        assert view["membersCount"] == 2 and me in view["members"]
        assert client.request({"event": "say", "room": "defaultRoom", "message": "hi from a unix socket", "messageId": 4}) == {
            "status": "OK", "context": "response", "messageCount": 4, "messageId": 4,
        }
        said = client.recv()  # the sender is in the room too
        assert ws.recv() == said
        assert (said["message"], said["room"], said["from"], said["context"]) == (
            "hi from a unix socket", "defaultRoom", me, "user"
        )
        assert client.request({"event": "paramAdd", "messageId": 5})["error"] == "verb not found or not allowed (paramAdd)"
        status = client.request({"event": "action", "params": {"action": "status"}, "messageId": 6})
        assert status["stats"]["customServers"] == {
            "jsonLines": {"numberOfLocalActiveClients": 1, "numberOfLocalRequests": 6, "numberOfGlobalRequests": 6}
        }

        process.process.send_signal(signal.SIGTERM)
        assert client.recv() == {"status": "Bye!", "context": "api"}
        assert client.at_eof()
        assert process.process.wait(15) in (0, -15)  # twistd re-raises the signal after a clean stop
        log = process.log()  # complete once the process has exited
        assert "[ahtwist.service#info] stopped" in log
        assert f"[ahtwist.server#info] jsonLines connection {me} from unix\n" in log
        assert f"[ahtwist.server#info] jsonLines connection {me} closed\n" in log
        ws.close()
    finally:
        process.cleanup()
