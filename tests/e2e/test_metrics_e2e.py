"""End to end: the Prometheus metrics of a real ``twistd ahtwist`` (docs/metrics.md).

A scrape after real HTTP, websocket and socket actions; the path answers 404
when metrics are off (the default); metrics on an endpoint of their own; and
in cluster mode the Redis link gauge and reconnect counter across a Redis
restart (killed by PID).
"""

import json
import signal
import socket
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.cluster import ClusterNode
from tests.e2e.servers import LineClient, server_environment
from tests.e2e.twistd import TwistdProcess
from tests.e2e.ws_blocking import BlockingWebSocket
from tests.helpers import wait_for

LOCAL = "tcp:0:interface=127.0.0.1"


def get(port: int, path: str) -> tuple[int, str, bytes]:
    """GET ``path``: status, content type, body (error replies too)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def samples(body: bytes) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def ahtwist(config: str, *args: str) -> TwistdProcess:
    """A started ``twistd ahtwist`` with ``config``, its listeners on port 0."""
    workdir = Path(tempfile.mkdtemp(prefix="ahtwist-metrics-"))
    (workdir / "ahtwist.toml").write_text(config, "utf-8")
    process = TwistdProcess(["--config", str(workdir / "ahtwist.toml"), *args], cwd=workdir,
                            env=server_environment(), log_path=workdir / "twistd.log")
    return process.start()


def ports(process: TwistdProcess, count: int) -> dict[str, int]:
    return {kind: port for kind, port, _ in process.wait_listening(count)}


def test_a_scrape_after_http_websocket_and_socket_actions():
    process = ahtwist("[metrics]\nenabled = true\n", "--web", LOCAL, "--socket", LOCAL)
    try:
        found = ports(process, 2)
        web, sock_port = found["web"], found["socket"]
        for _ in range(2):
            status, _, body = get(web, "/api/randomNumber")
            assert status == 200 and 0 <= json.loads(body)["randomNumber"] < 1
        assert get(web, "/api/noSuchAction")[0] == 404
        ws = BlockingWebSocket(f"ws://127.0.0.1:{web}/ws")
        assert ws.recv()["welcome"] == "Hello! Welcome to the actionhero api"
        assert "randomNumber" in ws.request({"event": "action", "params": {"action": "randomNumber"}})
        line = LineClient(socket.create_connection(("127.0.0.1", sock_port), timeout=10))
        line.send("randomNumber\r\n")
        assert "randomNumber" in line.json()
        try:
            status, content_type, body = get(web, "/metrics")
        finally:
            ws.close()
            line.sock.close()
        assert (status, content_type) == (200, "text/plain; version=0.0.4; charset=utf-8")
        text = body.decode()
        assert "# TYPE ahtwist_action_duration_seconds histogram\n" in text
        assert "# TYPE ahtwist_actions_total counter\n" in text
        got = samples(body)
        assert got["ahtwist_actions_total"] == {
            (("action", "(unknown)"), ("outcome", "unknown_action")): 1,
            (("action", "randomNumber"), ("outcome", "success")): 4,
        }
        assert got["ahtwist_action_duration_seconds_count"] == {
            (("action", "(unknown)"),): 1, (("action", "randomNumber"),): 4,
        }
        assert got["ahtwist_requests_total"] == {
            (("transport", "web"),): 3, (("transport", "websocket"),): 1, (("transport", "socket"),): 1,
        }
        connections = got["ahtwist_connections"]
        assert connections[(("transport", "websocket"),)] == 1
        assert connections[(("transport", "socket"),)] == 1
        opened = got["ahtwist_connections_opened_total"]
        # 3 action GETs, the websocket's upgrade and this scrape, each on its own connection
        assert opened == {(("transport", "http"),): 5, (("transport", "socket"),): 1,
                          (("transport", "websocket"),): 1}
        assert got["ahtwist_chat_messages_delivered_total"] == {(): 0}
        assert "ahtwist_redis_up" not in got  # no Redis: no cluster families
    finally:
        process.stop()


def test_the_path_is_404_when_metrics_are_off():
    process = ahtwist("", "--web", LOCAL, "--socket", "none")
    try:
        web = ports(process, 1)["web"]
        status, _, body = get(web, "/metrics")
        assert status == 404
        assert get(web, "/api/randomNumber")[0] == 200
    finally:
        process.stop()


def test_metrics_on_an_endpoint_of_their_own():
    process = ahtwist(f'[metrics]\nenabled = true\nendpoint = "{LOCAL}"\n', "--web", LOCAL, "--socket", "none")
    try:
        found = ports(process, 2)
        assert get(found["web"], "/api/randomNumber")[0] == 200
        assert get(found["web"], "/metrics")[0] == 404  # not on the public port
        status, content_type, body = get(found["metrics"], "/metrics")
        assert (status, content_type) == (200, "text/plain; version=0.0.4; charset=utf-8")
        assert samples(body)["ahtwist_actions_total"] == {(("action", "randomNumber"), ("outcome", "success")): 1}
        assert get(found["metrics"], "/api/randomNumber")[0] == 404  # nothing else is served there
    finally:
        process.stop()


CLUSTER_METRICS = """
[general]
serverToken = "cluster-test-token"
[general.paths]
actions = [{actions}]
[metrics]
enabled = true
"""


def test_redis_link_state_and_reconnects_across_a_redis_restart(redis_server):
    node = ClusterNode(redis_server.url, CLUSTER_METRICS).wait_started()
    try:

        def scrape() -> dict:
            status, _, body = get(node.web_port, "/metrics")
            assert status == 200
            return samples(body)

        wait_for(lambda: scrape()["ahtwist_redis_up"] == {(): 1}, 15, "the link did not come up")
        got = scrape()
        assert got["ahtwist_redis_reconnects_total"] == {(): 0}
        assert got["ahtwist_bus_gaps_filled_total"] == {(): 0}
        redis_server.stop(signal.SIGKILL)
        wait_for(lambda: scrape()["ahtwist_redis_up"] == {(): 0}, 15, "the link did not go down")
        assert scrape()["ahtwist_redis_reconnects_total"] == {(): 0}
        redis_server.start()
        wait_for(lambda: scrape()["ahtwist_redis_up"] == {(): 1}, 15, "the link did not come back")
        got = scrape()
        assert got["ahtwist_redis_reconnects_total"] == {(): 1}
        assert got["ahtwist_redis_subscription_gaps_total"] == {(): 1}
        assert got["ahtwist_bus_rpc_timeouts_total"] == {(): 0}
    finally:
        node.stop()
