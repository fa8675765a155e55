"""Real cluster nodes for end-to-end tests: ``twistd ahtwist --redis URL`` processes.

Each node listens on 127.0.0.1 port 0 for web (HTTP + websocket) and socket;
the ports are read from the node's own log, so tests never race other
processes for a port.  Nodes are stopped by PID (SIGTERM, or SIGKILL for a
crash).
"""

import json
import re
import socket
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.e2e.servers import TWISTD, LineClient, LoggedProcess
from tests.e2e.ws_blocking import BlockingWebSocket

ACTIONS = Path(__file__).resolve().parent / "cluster_actions"
WEB = "tcp:0:interface=127.0.0.1"
SOCKET = "tcp:0:interface=127.0.0.1:backlog=128"
_WEB_PORT = re.compile(r"web server listening on 127\.0\.0\.1:(\d+) \(" + re.escape(WEB) + r"\)")
_SOCKET_PORT = re.compile(r"socket server listening on 127\.0\.0\.1:(\d+) ")

CONFIG = """
[general]
serverToken = "cluster-test-token"
rpcTimeout = 1000
[general.paths]
actions = [{actions}]
"""


class ClusterNode(LoggedProcess):
    """One ``twistd -n ahtwist --redis URL`` process."""

    def __init__(self, redis_url: str, config: str = CONFIG) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="ahtwist-cluster-"))
        config_path = self.workdir / "ahtwist.toml"
        config_path.write_text(config.format(actions=json.dumps(str(ACTIONS))), "utf-8")
        self.start_process(
            [TWISTD, "-n", "--pidfile=", "ahtwist", "--config", str(config_path),
             "--redis", redis_url, "--web", WEB, "--socket", SOCKET],
            self.workdir,
            "node.log",
        )
        self.web_port = 0
        self.socket_port = 0

    def wait_started(self, timeout: float = 30) -> "ClusterNode":
        deadline = time.monotonic() + timeout
        while not (self.web_port and self.socket_port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"twistd did not start:\n{self.log()}")
            text = self.log()
            web, sock = _WEB_PORT.search(text), _SOCKET_PORT.search(text)
            self.web_port = int(web.group(1)) if web else 0
            self.socket_port = int(sock.group(1)) if sock else 0
            time.sleep(0.05)
        return self

    @property
    def id(self) -> str:
        return self.get("/api/status")["id"]

    def get(self, path: str, timeout: float = 10) -> Any:
        """GET a JSON API path; error replies (4xx) are returned too."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read())

    def status(self) -> dict[str, Any]:
        return self.get("/api/status")

    def socket_client(self) -> LineClient:
        return LineClient(socket.create_connection(("127.0.0.1", self.socket_port), timeout=10))

    def websocket(self) -> BlockingWebSocket:
        """A websocket client whose welcome message has been read."""
        ws = BlockingWebSocket(f"ws://127.0.0.1:{self.web_port}/ws")
        assert ws.recv() == {"welcome": "Hello! Welcome to the actionhero api", "context": "api"}
        return ws



def start_nodes(redis_url: str, count: int) -> list[ClusterNode]:
    """Start ``count`` nodes together and wait until all are in ``peers``."""
    nodes = [ClusterNode(redis_url) for _ in range(count)]
    for node in nodes:
        node.wait_started()
    wait_for(lambda: all(len(n.status()["stats"]["peers"]) >= count for n in nodes), 15,
             "nodes did not see each other")
    return nodes


def wait_for(predicate, timeout: float, what: str, step: float = 0.05) -> float:
    """Poll until ``predicate()``; returns the seconds waited."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} (after {timeout} s)")
        time.sleep(step)
    return time.monotonic() - started
