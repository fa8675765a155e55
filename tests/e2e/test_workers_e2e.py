"""``--workers N`` end to end: a real ``twistd ahtwist --workers 2 --redis``
parent, its two worker processes and a real ``redis-server`` (README.md,
'Workers').

Which worker answers a connection is the kernel's choice, so tests open
connections until each worker has been seen (bounded, never timed).
"""

import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.servers import LineClient, make_certificate, server_environment
from tests.e2e.twistd import TWISTD, TwistdProcess, run_twistd
from tests.e2e.ws_blocking import BlockingWebSocket
from tests.helpers import wait_for
from tests.redis_server import RedisServer, require_redis_server
from tests.socket_helpers import GOODBYE

LOCAL = "tcp:0:interface=127.0.0.1"
_SHARED = re.compile(r"\[ahtwist\.workers#info\] (\w+) listener 127\.0\.0\.1:(\d+) \((.*)\) shared by 2 workers")
_STARTED = re.compile(r"\[ahtwist\.workers#info\] worker (\d) started \(pid (\d+)\)")
_READY = re.compile(r"\[ahtwist\.workers#info\] worker (\d) ready \(pid (\d+)\)")
TOO_MANY = 5000  # connections tried before concluding a worker never accepts


class Workers(TwistdProcess):
    """``twistd -n ahtwist --workers 2 --redis URL`` with web and socket listeners."""

    def __init__(self, redis_url: str, web: str = LOCAL, config: str = "") -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="ahtwist-workers-"))
        config_path = self.workdir / "ahtwist.toml"
        config_path.write_text(config, "utf-8")
        super().__init__(
            ["--config", str(config_path), "--workers", "2", "--redis", redis_url, "--web", web,
             "--socket", LOCAL],
            cwd=self.workdir, env=server_environment(), log_path=self.workdir / "parent.log",
        )
        self.start()
        wait_for(lambda: len(self.ready()) == 2 or self.process.poll() is not None, 60, "workers not ready")
        assert self.process.poll() is None, self.log()
        ports = {kind: int(port) for kind, port, _ in _SHARED.findall(self.log())}
        self.web_port, self.socket_port = ports["web"], ports["socket"]

    def ready(self) -> dict[int, int]:
        """worker number -> pid of its latest ready process."""
        return {int(n): int(pid) for n, pid in _READY.findall(self.log())}

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=10) as r:
            return json.loads(r.read())

    def socket_client(self) -> LineClient:
        return LineClient(socket.create_connection(("127.0.0.1", self.socket_port), timeout=10))

    def websocket(self) -> BlockingWebSocket:
        ws = BlockingWebSocket(f"ws://127.0.0.1:{self.web_port}/ws")
        assert ws.recv() == {"welcome": "Hello! Welcome to the actionhero api", "context": "api"}
        return ws


def pid_of(node_id: str) -> int:
    """The node id of a worker is '<hostname>-<pid>' (general.id unset)."""
    return int(node_id.rsplit("-", 1)[1])


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def redis():
    require_redis_server()
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def workers(redis):
    server = Workers(redis.url)
    yield server
    server.stop()


def answering_pids(ask, wanted: set[int]) -> set[int]:
    """Ask (one new connection each time) until every wanted pid answered."""
    seen: set[int] = set()
    for _ in range(TOO_MANY):
        seen.add(ask())
        if wanted <= seen:
            break
    return seen


def test_both_workers_answer_http_requests(workers):
    """Each worker is its own node (its own id and pid) serving the one port."""
    pids = set(workers.ready().values())
    assert len(pids) == 2
    seen = answering_pids(lambda: pid_of(workers.get("/api/status")["id"]), pids)
    assert seen == pids
    # both are nodes of one cluster
    wait_for(lambda: len(workers.get("/api/status")["stats"]["peers"]) == 2, 15, "peers")
    assert {pid_of(p) for p in workers.get("/api/status")["stats"]["peers"]} == pids


def test_websocket_on_one_worker_and_socket_on_the_other_chat(workers):
    browser = workers.websocket()
    browser_pid = pid_of(browser.request({"event": "action", "params": {"action": "status"}})["id"])
    telnets = []
    try:
        for _ in range(TOO_MANY):
            telnet = workers.socket_client()
            telnets.append(telnet)
            telnet.send('{"action":"status"}\n')
            telnet_pid = pid_of(telnet.json()["id"])
            if telnet_pid != browser_pid:
                break
            telnet.close()
        assert {browser_pid, telnet_pid} == set(workers.ready().values())
        telnet.send("detailsView\n")
        tid = telnet.json()["data"]["id"]
        wid = browser.request({"event": "detailsView"})["data"]["id"]
        telnet.send("roomAdd defaultRoom\n")
        assert telnet.json()["data"] is True
        assert browser.request({"event": "roomAdd", "room": "defaultRoom"})["data"] is True
        telnet.send("say defaultRoom hello from the socket\n")
        assert telnet.json()["status"] == "OK"
        for received in (json.loads(telnet.line()), browser.recv()):
            assert {k: received[k] for k in ("message", "room", "from", "context")} == {
                "message": "hello from the socket", "room": "defaultRoom", "from": tid, "context": "user"}
        assert browser.request({"event": "say", "room": "defaultRoom", "message": "hi back"})["status"] == "OK"
        for received in (browser.recv(), json.loads(telnet.line())):
            assert {k: received[k] for k in ("message", "room", "from", "context")} == {
                "message": "hi back", "room": "defaultRoom", "from": wid, "context": "user"}
    finally:
        for telnet in telnets:
            telnet.close()
        browser.close()


def test_a_killed_worker_is_restarted_and_logged(workers):
    before = workers.ready()
    victim = before[1]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: workers.ready().get(1, victim) != victim, 30, "worker 1 not restarted")
    log = workers.log()
    assert f"[ahtwist.workers#error] worker 1 (pid {victim}) died (SIGKILL); restarting it in 1 s" in log
    replacement = workers.ready()[1]
    assert f"[ahtwist.workers#info] worker 1 started (pid {replacement})" in log
    assert workers.ready()[2] == before[2]  # the other worker was left alone
    pids = {replacement, before[2]}
    assert answering_pids(lambda: pid_of(workers.get("/api/status")["id"]), pids) == pids


def test_sigterm_drains_every_worker_and_the_parent_exits_last(redis):
    """An in-flight sleepTest on a worker is answered before anything exits."""
    server = Workers(redis.url, config="[servers.socket]\npendingShutdownWaitLimit = 4000\n")
    pids = set(server.ready().values())
    busy = server.socket_client()
    busy.send('{"action":"sleepTest","params":{"sleepDuration":1500}}\n')
    idle = server.socket_client()
    time.sleep(0.3)  # the action is in flight on its worker
    server.process.send_signal(signal.SIGTERM)
    reply = busy.json()
    assert (reply["sleepDuration"], reply["messageCount"]) == (1500, 1)
    assert busy.line() == GOODBYE
    assert busy.closed_by_server()
    assert idle.line() == GOODBYE
    assert server.process.wait(timeout=20) == -signal.SIGTERM
    server.stop()
    assert not any(alive(pid) for pid in pids)
    log = server.log()
    for number, pid in server.ready().items():
        assert f"[ahtwist.workers#info] worker {number} (pid {pid}) stopped (SIGTERM)" in log
        assert log.index(f"worker {number} (pid {pid}) stopped") < log.index("[ahtwist.workers#info] stopped")
    assert "restarting" not in log
    assert log.rstrip().endswith("Server Shut Down.")


def test_workers_stop_when_the_parent_is_killed(redis):
    server = Workers(redis.url)
    pids = set(server.ready().values())
    server.stop(signal.SIGKILL)
    wait_for(lambda: not any(alive(pid) for pid in pids), 30, "workers outlived their parent")


def test_workers_without_redis_refuse_to_start():
    result = run_twistd("--workers", "2", "--web", LOCAL, "--socket", "none")
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "ahtwist: general.workers: 2 workers need the Redis backend (--redis URL or redis.url): "
        "the in-memory backend cannot share rooms and cache between processes"
    )
    assert result.stdout == ""


def test_a_tls_endpoint_is_served_by_both_workers(redis, tmp_path):
    key, cert = make_certificate(tmp_path)
    server = Workers(redis.url, web=f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}")
    try:
        pids = set(server.ready().values())
        context = ssl.create_default_context(cafile=str(cert))

        def ask() -> int:
            url = f"https://localhost:{server.web_port}/api/status"
            with urllib.request.urlopen(url, timeout=10, context=context) as r:
                return pid_of(json.loads(r.read())["id"])

        assert answering_pids(ask, pids) == pids
        with pytest.raises(http.client.RemoteDisconnected):  # plain HTTP is not spoken there
            urllib.request.urlopen(f"http://127.0.0.1:{server.web_port}/api/status", timeout=10)
    finally:
        server.stop()


def test_general_workers_in_the_config_file(redis, tmp_path):
    """The config key does what --workers does."""
    config = tmp_path / "workers.toml"
    config.write_text("[general]\nworkers = 2\n", "utf-8")
    result = run_twistd("--config", str(config), "--web", LOCAL, "--socket", "none")
    assert result.returncode != 0
    assert result.stderr.strip().startswith("ahtwist: general.workers: 2 workers need the Redis backend")
    process = subprocess.Popen(
        [TWISTD, "-n", "--pidfile=", "ahtwist", "--config", str(config), "--redis", redis.url,
         "--web", LOCAL, "--socket", "none"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if len([x for x in lines if _READY.search(x)]) == 2:
                break
        assert len({m.group(1) for x in lines if (m := _STARTED.search(x))}) == 2
    finally:
        process.send_signal(signal.SIGTERM)
        out = process.communicate(timeout=30)[0]
    assert process.returncode == -signal.SIGTERM, out


def test_a_systemd_socket_is_shared_by_the_workers(redis):
    """Socket activation: the parent adopts the socket systemd passed (fd 3,
    LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES) and the workers accept on it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]

    def as_fd_3() -> None:
        os.dup2(listener.fileno(), 3)

    workdir = Path(tempfile.mkdtemp(prefix="ahtwist-workers-"))
    log_path = workdir / "parent.log"
    command = (
        f"LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web exec {TWISTD} -n --pidfile= ahtwist --workers 2 "
        f"--redis {redis.url} --web systemd:domain=INET:name=web --socket none"
    )
    with open(log_path, "wb") as log:
        process = subprocess.Popen(["/bin/sh", "-c", command], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, preexec_fn=as_fd_3, pass_fds=(3,))
    listener.close()  # the server holds it now
    try:
        wait_for(lambda: len(_READY.findall(log_path.read_text())) == 2 or process.poll() is not None,
                 60, "workers not ready")
        text = log_path.read_text()
        assert f"web listener 127.0.0.1:{port} (systemd:domain=INET:name=web) shared by 2 workers" in text
        pids = {int(pid) for _, pid in _READY.findall(text)}

        def ask() -> int:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=10) as r:
                return pid_of(json.loads(r.read())["id"])

        assert answering_pids(ask, pids) == pids
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == -signal.SIGTERM


def test_a_custom_servers_unix_socket_is_shared_by_the_workers(redis, tmp_path):
    """A user's server (examples/jsonlines_server on a unix socket) listens
    through the parent's socket in every worker too."""
    from tests.e2e.test_custom_server_e2e import WELCOME, JsonLinesClient
    from tests.helpers import REPO

    path = tmp_path / "jl.sock"
    config = (f'[general.paths]\nservers = ["{REPO / "examples" / "jsonlines_server"}"]\n'
              f'[servers.jsonLines]\nendpoints = ["unix:{path}"]\n')
    server = Workers(redis.url, config=config)
    try:
        assert f"jsonLines listener {path} (unix:{path}) shared by 2 workers (UNIX)" in server.log()
        pids = set(server.ready().values())

        def ask() -> int:
            client = JsonLinesClient(str(path))
            try:
                assert client.recv() == WELCOME
                reply = client.request({"event": "action", "params": {"action": "status"}, "messageId": 1})
                return pid_of(reply["id"])
            finally:
                client.sock.close()

        assert answering_pids(ask, pids) == pids
    finally:
        server.stop()
