"""Real cluster nodes for end-to-end tests: ``twistd ahtwist --redis URL`` processes.

Each node listens on 127.0.0.1 port 0 for web (HTTP + websocket) and socket;
the ports are read from the node's own log, so tests never race other
processes for a port.  Nodes are stopped by PID (SIGTERM, or SIGKILL for a
crash).
"""

import json
import socket
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from tests.e2e.servers import LineClient, server_environment
from tests.e2e.twistd import TwistdProcess
from tests.e2e.ws_blocking import BlockingWebSocket
from tests.helpers import wait_for

ACTIONS = Path(__file__).resolve().parent / "cluster_actions"
WEB = "tcp:0:interface=127.0.0.1"
SOCKET = "tcp:0:interface=127.0.0.1:backlog=128"

CONFIG = """
[general]
serverToken = "cluster-test-token"
rpcTimeout = 1000
[general.paths]
actions = [{actions}]
"""


class ClusterNode(TwistdProcess):
    """One ``twistd -n ahtwist --redis URL`` process (started at once)."""

    def __init__(self, redis_url: str, config: str = CONFIG) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="ahtwist-cluster-"))
        config_path = self.workdir / "ahtwist.toml"
        config_path.write_text(config.format(actions=json.dumps(str(ACTIONS))), "utf-8")
        super().__init__(
            ["--config", str(config_path), "--redis", redis_url, "--web", WEB, "--socket", SOCKET],
            cwd=self.workdir,
            env=server_environment(),
            log_path=self.workdir / "node.log",
        )
        self.start()
        self.web_port = 0
        self.socket_port = 0

    def wait_started(self, timeout: float = 30) -> "ClusterNode":
        listeners = self.wait_listening(2, timeout)
        self.web_port = next(port for kind, port, _ in listeners if kind == "web")
        self.socket_port = next(port for kind, port, _ in listeners if kind == "socket")
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
