"""End to end: ``ahtwist new`` app on a wheel of this checkout installed into a fresh venv.

The wheel and its dependencies are built into a wheelhouse (from pip's cache
or the configured index), then installed with ``--no-index``: nothing from
the checkout is on the path of the app's processes.  The app runs under the
venv's ``twistd`` from an unrelated directory and is checked over real
sockets: no warnings at start, the bundled client JS and demo pages, a Klein
webhook verifying an HMAC over the raw body, an action reading a
``text/plain`` body, ``/healthz``, readiness 503 while draining, and the
initializer's resource closed only after an in-flight ``sleepTest`` finished.
The app's own tests (written with ``ahtwist.testing``) pass under plain
``pytest`` in that venv.
"""

import hashlib
import hmac
import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import venv

import pytest

from ahtwist._version import __version__
from tests.helpers import REPO, free_port, wait_port


def run(cmd, **kw):
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with a wheel of this checkout (not editable) and pytest."""
    base = tmp_path_factory.mktemp("installed")
    wheels = base / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheels), str(REPO), "pytest"])
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    run([str(bin_dir / "pip"), "install", "-q", "--no-index", "--find-links", str(wheels), "ahtwist", "pytest"])
    return bin_dir


def call(port, method, path, headers=None, body=None) -> tuple[int, dict[str, str], bytes]:
    """One request on its own connection: status, headers (lower-case names), body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    return data


def split(response: bytes) -> tuple[int, bytes]:
    """Status and body of a complete Content-Length response."""
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def test_version_of_the_installed_plugin(installed):
    result = run([str(installed / "twistd"), "ahtwist", "--version"], cwd="/")
    assert result.stdout == f"ahtwist {__version__}\n"
    assert run([str(installed / "ahtwist"), "--version"]).stdout == f"ahtwist {__version__}\n"


def test_generated_app_runs_from_anywhere_and_drains_before_closing(installed, tmp_path):
    app = tmp_path / "myapp"
    created = run([str(installed / "ahtwist"), "new", str(app)], cwd=tmp_path)
    assert created.stdout.startswith(f"created {app}\n")
    for name in ("ahtwist.toml", "actions", "initializers", "public", "tests/test_app.py", "systemd/myapp.service"):
        assert (app / name).exists(), name
    unit = (app / "systemd" / "myapp.service").read_text()
    assert f"ExecStart={installed / 'twistd'} -n --pidfile= ahtwist --config {app / 'ahtwist.toml'}\n" in unit
    assert "ProtectHome=read-only\n" in unit and "ProtectHome=yes" not in unit

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    notes = tmp_path / "notes.txt"
    port = free_port()
    env = {**os.environ, "NOTES_FILE": str(notes), "WEBHOOK_SECRET": "s3cret"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.Popen(
        [str(installed / "twistd"), "-n", "--pidfile=", "ahtwist", "--config", str(app / "ahtwist.toml"),
         "--web", f"tcp:{port}:interface=127.0.0.1", "--socket", "none"],
        cwd=elsewhere, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: queue.Queue = queue.Queue()
    output: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            output.append(line)
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_port(port, proc=proc)
        assert call(port, "GET", "/healthz")[::2] == (200, b'{"status":"ok"}')
        assert call(port, "GET", "/readyz")[::2] == (200, b'{"ready":true}')

        # the app's page, then ahtwist's client and demo pages from the installed package
        status, _, body = call(port, "GET", "/")
        assert status == 200 and b"<h1>myapp</h1>" in body
        status, headers, body = call(port, "GET", "/javascript/actionheroClient.js")
        assert status == 200 and headers["content-type"].startswith("application/javascript")
        assert body == (REPO / "public" / "javascript" / "actionheroClient.js").read_bytes()
        status, headers, body = call(port, "GET", "/javascript/ActionheroWebsocketClient.js")
        assert status == 200 and headers["content-type"].startswith("application/javascript")
        assert body == (REPO / "public" / "javascript" / "ActionheroWebsocketClient.js").read_bytes()
        assert call(port, "GET", "/chat.html")[0] == 200

        # an action reading a text/plain raw body, its resource opened by the initializer
        status, _, body = call(
            port, "POST", "/api/addNote", {"Content-Type": "text/plain; charset=utf-8"}, b"buy milk\nand eggs"
        )
        assert (status, json.loads(body)["saved"]) == (200, 17)

        # the Klein webhook verifies the HMAC over the exact bytes
        event = b'{"action":  "opened",\n"number": 1}'
        good = "sha256=" + hmac.new(b"s3cret", event, hashlib.sha256).hexdigest()
        status, _, body = call(
            port, "POST", "/hooks/github", {"Content-Type": "application/json", "X-Hub-Signature-256": good}, event
        )
        assert (status, json.loads(body)) == (200, {"ok": True, "event": "opened"})
        tampered = event.replace(b"1", b"2")
        assert call(port, "POST", "/hooks/github", {"X-Hub-Signature-256": good}, tampered)[::2] == (
            401, b"bad signature",
        )

        # in flight at SIGTERM: a sleepTest, and a readiness probe whose request line arrived
        sleeper = socket.create_connection(("127.0.0.1", port), timeout=20)
        sleeper.sendall(b"GET /api/sleepTest?sleepDuration=1500 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        probe = socket.create_connection(("127.0.0.1", port), timeout=20)
        probe.sendall(b"GET /readyz HTTP/1.1\r\n")
        # a full round trip after both were sent: the reactor has read them before it sees SIGTERM
        assert call(port, "GET", "/healthz")[0] == 200
        proc.send_signal(signal.SIGTERM)
        while "stopping: draining connections" not in lines.get(timeout=20):
            pass
        probe.sendall(b"Host: 127.0.0.1\r\n\r\n")
        status, body = split(read_all(probe))
        assert (status, json.loads(body)) == (503, {"ready": False, "problems": ["stopping"]})
        status, body = split(read_all(sleeper))
        assert status == 200 and json.loads(body)["sleepDuration"] == 1500
        assert proc.wait(timeout=30) == -signal.SIGTERM  # twistd ends by the signal it got
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
    log = "".join(output)
    assert "#warn]" not in log and "does not exist" not in log, log
    assert notes.read_text() == "buy milk\nand eggs\n"

    def at(text: str) -> int:
        found = [i for i, line in enumerate(output) if text in line]
        assert len(found) == 1, (text, log)
        return found[0]

    assert at("loaded 1 initializers: notes") < at("notes: opened") < at("ready: initializers started")
    assert at("stopping: draining connections") < at("action=sleepTest") < at("notes: closed") < at("] stopped")
    assert (
        "loaded 5 mounts: /healthz (health /healthz), /readyz (health /readyz), "
        "/api/openapi.json (openapi), /docs (docs), /hooks (webhooks.py:app)"
    ) in log

    # the app's own tests, written with ahtwist.testing, under plain pytest in that venv
    tests = subprocess.run(
        [str(installed / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=app, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True, text=True, timeout=300,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "5 passed" in tests.stdout
