"""End to end: the real ``twistd ahtwist`` process over real sockets."""

import http.client
import json
import re
import signal
import subprocess
import tempfile
import textwrap
import threading
import time
from pathlib import Path

from tests.e2e.twistd import TWISTD, AhtwistProcess, run_twistd
from tests.helpers import free_port, wait_for

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def get(server, path, method="GET", headers=None, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response, data


def test_twistd_help_lists_plugin():
    out = subprocess.run([TWISTD, "--help"], capture_output=True, text=True, check=True).stdout
    assert re.search(r"^\s+ahtwist\s+ActionHero-compatible API server", out, re.M), out


def test_default_run_serves_builtin_and_sample_actions():
    with AhtwistProcess() as server:
        response, body = get(server, "/api/randomNumber")
        assert response.status == 200
        assert response.getheader("Content-Type") == "application/json; charset=utf-8"
        assert re.fullmatch(r"sessionID=[0-9a-f]{40};path=/;expires=\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT;"
                            r"HttpOnly;SameSite=Lax;",
                            response.getheader("Set-Cookie"))
        assert response.getheader("Server") is None
        data = json.loads(body)
        assert list(data) == ["randomNumber", "stringRandomNumber", "serverInformation", "requesterInformation"]
        assert data["requesterInformation"]["receivedParams"] == {"action": "randomNumber", "apiVersion": 1}
        assert re.fullmatch(rf"[0-9a-f]{{40}}-{UUID}", data["requesterInformation"]["id"])

        response, body = get(server, "/api/cacheTest?key=k&value=value")
        assert response.status == 400
        assert json.loads(body)["error"] == "inputs should be at least 3 letters long"
        response, body = get(server, "/api/cacheTest?key=key&value=value")
        results = json.loads(body)["cacheTestResults"]
        assert results["saveResp"] is True and results["deleteResp"] is True and results["sizeResp"] == 1
        assert results["loadResp"]["expireTimestamp"] - results["loadResp"]["createdAt"] == 5000
        assert results["loadResp"]["value"] == "value" and results["loadResp"]["readAt"] is None

        response, body = get(server, "/api/status")
        status = json.loads(body)
        assert status["nodeStatus"] == "Node Healthy"
        assert status["stats"]["webServer"]["numberOfLocalWebRequests"] == 4

        response, body = get(server, "/api/greet?name=world")
        assert json.loads(body)["greeting"] == "Hello, world!"
    # twistd re-raises the stopping signal after a clean shutdown (systemd sees SIGTERM)
    assert server.process.returncode == -signal.SIGTERM
    assert "Server Shut Down." in server.log()
    assert "[ action @ web ] to=127.0.0.1 action=randomNumber" in server.log()


def test_user_action_folder_dropin():
    directory = Path(tempfile.mkdtemp())
    (directory / "actions").mkdir()
    (directory / "ahtwist.toml").write_text('[general.paths]\nactions = ["actions"]\n[general]\nserverName = "mine"\n')
    (directory / "actions" / "double.py").write_text(textwrap.dedent("""
        from ahtwist import Action, Input

        class Double(Action):
            name = "double"
            description = "doubles a number"
            inputs = {"n": Input(required=True, formatter=int)}

            def run(self, data):
                data.response["result"] = data.params["n"] * 2
    """))
    with AhtwistProcess(config=str(directory / "ahtwist.toml")) as server:
        response, body = get(server, "/api/double?n=21")
        assert json.loads(body)["result"] == 42
        assert response.getheader("X-Powered-By") == "mine"
        assert get(server, "/api/greet?name=x")[0].status == 404  # the repo's sample folder is not loaded


def test_bad_config_exits_with_one_line():
    path = Path(tempfile.mkdtemp(), "bad.toml")
    path.write_text("[servers.web]\nport = \"eighty\"\n")
    result = run_twistd("--config", str(path))
    assert result.returncode != 0
    assert result.stderr.strip() == f"ahtwist: {path}: servers.web.port: expected an integer, got 'eighty'"
    assert "Traceback" not in result.stdout + result.stderr


def test_port_in_use_exits_with_the_cause():
    import socket

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        result = run_twistd("--web", f"tcp:{port}:interface=127.0.0.1", "--socket", "none")
    finally:
        blocker.close()
    assert result.returncode != 0
    assert f"ahtwist: cannot listen on tcp:{port}:interface=127.0.0.1: Couldn't listen on 127.0.0.1:{port}" in result.stdout
    assert "Traceback" not in result.stdout


def test_sigterm_drains_in_flight_requests():
    server = AhtwistProcess().start()
    try:
        result = {}

        def slow():
            result["response"] = get(server, "/api/sleepTest?sleepDuration=1500")

        thread = threading.Thread(target=slow)
        thread.start()
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        thread.join(10)
        code = server.process.wait(10)
    finally:
        server.stop()
    response, body = result["response"]
    assert response.status == 200 and json.loads(body)["sleepDuration"] == 1500
    assert code == -signal.SIGTERM
    assert "stopping: draining connections" in server.log()
    assert "Server Shut Down." in server.log()


def test_bad_input_over_real_socket_keeps_serving():
    with AhtwistProcess() as server:
        import socket

        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"POST /api/randomNumber HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 999999999999\r\n\r\n")
        reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 413 Payload Too Large\r\n")
        sock.close()
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", server.port))
            s.sendall(b"GET /api/randomNumber HTTP/1.1\r\nHost: x\r\n")
            s.close()
        response, body = get(server, "/api/randomNumber")
        assert response.status == 200


def test_free_port_helper_is_loopback():
    assert 0 < free_port() < 65536


def test_systemd_socket_activation():
    """The .socket unit's hand-over: systemd owns the port, twistd adopts it."""
    import shutil

    from tests.helpers import require

    activate = shutil.which("systemd-socket-activate")
    require(activate is not None, "systemd-socket-activate (Debian package 'systemd')")
    port = free_port()
    proc = subprocess.Popen(
        [activate, "-l", f"127.0.0.1:{port}", "--fdname=web", TWISTD, "-n", "--pidfile=", "ahtwist",
         "--web", "systemd:domain=INET:name=web", "--socket", "none"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        answer = {}

        def answered() -> bool:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/api/randomNumber")
                response = conn.getresponse()
                answer.update(response=response, body=json.loads(response.read()))
                return True
            except (ConnectionError, http.client.HTTPException, OSError):
                return False

        wait_for(answered, 20, "the socket-activated server did not answer", step=0.2)
        response, body = answer["response"], answer["body"]
        assert response.status == 200 and "randomNumber" in body
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert "Server Shut Down." in out
