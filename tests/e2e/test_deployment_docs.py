"""docs/deployment.md, run as written against real processes.

Every shell snippet runs (its ports moved to free ones on 127.0.0.1, the
proxy backends pointed at the twistd the test started); the nginx and
HAProxy configurations are checked by ``nginx -t`` / ``haproxy -c`` and then
carry real HTTP, WebSocket and TCP traffic to a real ``twistd ahtwist``.
Missing binaries fail the test unless ``AHTWIST_ALLOW_SKIP=1``.
"""

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ahtwist.config import load_config
from tests.e2e.ws_blocking import BlockingWebSocket
from tests.helpers import REPO, free_port, require, wait_for, wait_port
from tests.redis_server import RedisServer

PAGE = REPO / "docs" / "deployment.md"
TWISTD = ".venv/bin/twistd"  # as the page writes it, relative to the checkout
STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"


def blocks(language: str) -> list[str]:
    """The fenced code blocks of the page in ``language``, in order."""
    text = PAGE.read_text("utf-8")
    found = re.findall(rf"^( *)```{language}\n(.*?)^\1```", text, re.M | re.S)
    return ["\n".join(line[len(indent):] for line in body.split("\n")) for indent, body in found]


def block_starting(language: str, first_line: str) -> str:
    found = [b for b in blocks(language) if b.startswith(first_line)]
    assert len(found) == 1, f"one {language} block starting {first_line!r} in {PAGE}"
    return found[0]


def commands(block: str) -> list[str]:
    """Shell commands of a block (``\\`` continuations joined)."""
    return [c.strip() for c in block.replace("\\\n", " ").splitlines() if c.strip()]


def sh_block_with(text: str) -> list[str]:
    found = [b for b in blocks("sh") if text in b]
    assert len(found) == 1, f"one sh block containing {text!r}"
    return commands(found[0])


class Processes:
    """Processes started by a test, stopped by PID at the end (SIGTERM, then SIGKILL)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[tuple[subprocess.Popen, Path]] = []

    def start(self, args: list[str], name: str, cwd: Path = REPO) -> subprocess.Popen:
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            env = {k: v for k, v in os.environ.items() if k not in ("PORT", "REDIS_URL")}
            process = subprocess.Popen(
                args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        self.started.append((process, log))
        return process

    def wait(self, port: int, process: subprocess.Popen | None = None) -> None:
        """Wait until something listens on ``port``; the logs in the failure if not."""
        try:
            wait_port(port, proc=process)
        except RuntimeError as e:
            raise AssertionError(f"{e}\n{self.logs()}") from None

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text('utf-8', 'replace')}" for _, log in self.started)

    def stop_all(self) -> None:
        for process, _ in reversed(self.started):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture
def processes() -> Iterator[Processes]:
    workdir = Path(tempfile.mkdtemp(prefix="ahtwist-deploy-"))
    running = Processes(workdir)
    try:
        yield running
    finally:
        running.stop_all()


def run(command: str, cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True, timeout=60, **kw)


def twistd_args(command: str) -> list[str]:
    """A ``.venv/bin/twistd ...`` line of the page as arguments (this checkout's twistd)."""
    args = shlex.split(command)
    assert args[0] == TWISTD, command
    return [str(REPO / TWISTD), *args[1:]]


def start_backend(processes: Processes) -> tuple[int, int]:
    """A twistd with web and socket listeners on 127.0.0.1: (web port, socket port)."""
    web, sock = free_port(), free_port()
    process = processes.start(
        [str(REPO / TWISTD), "-n", "--pidfile=", "ahtwist",
         "--web", f"tcp:{web}:interface=127.0.0.1", "--socket", f"tcp:{sock}:interface=127.0.0.1"],
        "backend",
    )
    processes.wait(web, process)
    processes.wait(sock, process)
    return web, sock


def self_signed(directory: Path) -> tuple[Path, Path]:
    """The page's own openssl command, run in ``directory``: (key, cert)."""
    openssl = sh_block_with("openssl req")[0]
    result = run(openssl, directory)
    assert result.returncode == 0, result.stderr
    return directory / "server-key.pem", directory / "server-cert.pem"


# --- systemd ---------------------------------------------------------------------


def test_systemd_units_verify_after_the_path_edit(tmp_path):
    """The install commands' sed makes the shipped units valid for an installation."""
    analyze = shutil.which("systemd-analyze")
    require(analyze is not None, "systemd-analyze (Debian package 'systemd')")
    steps = sh_block_with("systemd-analyze verify")
    sed = next(c for c in steps if c.startswith("sudo sed "))
    unit_dir = tmp_path / "system"
    unit_dir.mkdir()
    for name in ("ahtwist.service", "ahtwist-activated.service", "ahtwist.socket"):
        shutil.copy(REPO / "etc" / "systemd" / name, unit_dir / name)
    # the page's edit, with this checkout as "your installation"
    edit = sed.removeprefix("sudo ").replace("/srv/myapp", str(REPO)).replace(
        "/etc/systemd/system/", f"{unit_dir}/"
    )
    assert run(edit, tmp_path).returncode == 0
    service = (unit_dir / "ahtwist.service").read_text()
    assert "/opt/ahtwist" not in service and f"ExecStart={REPO}/.venv/bin/twistd" in service
    result = run(f"systemd-analyze verify {unit_dir}/ahtwist.service {unit_dir}/ahtwist.socket", tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_socket_activation_snippet(processes, tmp_path):
    activate = shutil.which("systemd-socket-activate")
    require(activate is not None, "systemd-socket-activate (Debian package 'systemd')")
    start, curl = sh_block_with("systemd-socket-activate")
    port = free_port()
    args = shlex.split(start.replace("127.0.0.1:8080", f"127.0.0.1:{port}"))
    args = [str(REPO / a) if a == TWISTD else a for a in args]
    processes.start(args, "activate")
    processes.wait(port)  # systemd-socket-activate listens at once; twistd takes over the socket
    result = run(curl.replace("localhost:8080", f"127.0.0.1:{port}"), tmp_path)
    reply = json.loads(result.stdout)
    assert reply["stringRandomNumber"] == f"Your random number is {json.dumps(reply['randomNumber'])}"


# --- TLS ---------------------------------------------------------------------------


def test_tls_snippet(processes, tmp_path):
    openssl, start, curl = sh_block_with("openssl req")
    self_signed(tmp_path)
    web, tls = free_port(), free_port()
    start = start.replace("tcp:8080", f"tcp:{web}:interface=127.0.0.1").replace(
        "ssl:8443:", f"ssl:{tls}:interface=127.0.0.1:"
    )
    process = processes.start(twistd_args(start) + ["--socket", "none"], "tls", cwd=tmp_path)
    processes.wait(tls, process)
    result = run(curl.replace("localhost:8443", f"localhost:{tls}"), tmp_path)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert (status["name"], status["serverInformation"]["serverName"]) == ("ahtwist", "ahtwist")


# --- reverse proxies -----------------------------------------------------------------


def check_proxied(http_port: int, socket_port: int, curl_line: str, tmp_path: Path) -> None:
    """Through the proxy: HTTP with a forged X-Forwarded-For (the page's curl line), a
    websocket, and the TCP socket server -- each sees the proxy's client address."""
    command = curl_line.replace("http://localhost/", f"http://127.0.0.1:{http_port}/")
    result = run(command, tmp_path)
    assert result.stdout == '    "remoteIP": "127.0.0.1",\n', (result.stdout, result.stderr)

    ws = BlockingWebSocket(
        f"ws://127.0.0.1:{http_port}/ws", headers={"X-Forwarded-For": "203.0.113.9"}
    )
    try:
        assert ws.status == 101
        assert ws.recv()["welcome"] == "Hello! Welcome to the actionhero api"
        details = ws.request({"event": "detailsView", "messageId": 1})
        assert details["data"]["remoteIP"] == "127.0.0.1"
        reply = ws.request({"event": "action", "params": {"action": "status"}, "messageId": 2})
        assert reply["name"] == "ahtwist"
    finally:
        ws.close()

    with socket.create_connection(("127.0.0.1", socket_port), timeout=10) as sock:
        stream = sock.makefile("rwb")
        assert json.loads(stream.readline()) == {
            "welcome": "Hello! Welcome to the actionhero api",
            "context": "api",
        }
        stream.write(b"detailsView\r\n")
        stream.flush()
        assert json.loads(stream.readline())["data"]["remoteIP"] == "127.0.0.1"


def test_nginx_recipe(processes, tmp_path):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    require(os.path.exists(nginx), "nginx (apt-get install nginx-light libnginx-mod-stream)")
    require(os.path.exists(STREAM_MODULE), "nginx's stream module (apt-get install libnginx-mod-stream)")
    web, sock = start_backend(processes)
    key, cert = self_signed(tmp_path)
    http_port, https_port, stream_port = free_port(), free_port(), free_port()

    http_conf = block_starting("nginx", "# /etc/nginx/conf.d/ahtwist.conf")
    http_conf = re.sub(r"server 10\.0\.0\.1\d:8080;", f"server 127.0.0.1:{web};", http_conf)
    http_conf = http_conf.replace("listen 80;", f"listen 127.0.0.1:{http_port};")
    http_conf = http_conf.replace("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
    http_conf = http_conf.replace("/etc/ssl/ahtwist/cert.pem", str(cert))
    http_conf = http_conf.replace("/etc/ssl/ahtwist/key.pem", str(key))
    stream_conf = block_starting("nginx", "# /etc/nginx/ahtwist-stream.conf")
    stream_conf = re.sub(r"server 10\.0\.0\.1\d:5000;", f"server 127.0.0.1:{sock};", stream_conf)
    stream_conf = stream_conf.replace("listen 5000;", f"listen 127.0.0.1:{stream_port};")
    (tmp_path / "ahtwist.conf").write_text(http_conf)
    (tmp_path / "ahtwist-stream.conf").write_text(stream_conf)
    temp = tmp_path / "temp"
    temp.mkdir(mode=0o777)
    temp.chmod(0o777)
    # the parts of Debian's nginx.conf the recipe relies on, with this test's files
    (tmp_path / "nginx.conf").write_text(
        f"load_module {STREAM_MODULE};\n"
        f"pid {tmp_path}/nginx.pid;\n"
        f"error_log {tmp_path}/error.log;\n"
        "events { worker_connections 64; }\n"
        "http {\n"
        f"    access_log off;\n"
        f"    client_body_temp_path {temp}/body;\n"
        f"    proxy_temp_path {temp}/proxy;\n"
        f"    fastcgi_temp_path {temp}/fastcgi;\n"
        f"    uwsgi_temp_path {temp}/uwsgi;\n"
        f"    scgi_temp_path {temp}/scgi;\n"
        f"    include {tmp_path}/ahtwist.conf;\n"
        "}\n"
        f"include {tmp_path}/ahtwist-stream.conf;\n"
    )
    args = [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
    check = subprocess.run(args + ["-t"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert "syntax is ok" in check.stderr
    process = processes.start(args + ["-g", "daemon off;"], "nginx")
    for port in (http_port, https_port, stream_port):
        processes.wait(port, process)

    curl = sh_block_with("X-Forwarded-For: 203.0.113.9")[0]
    check_proxied(http_port, stream_port, curl, tmp_path)
    # TLS terminated by nginx
    result = run(f"curl -s --cacert {cert} https://localhost:{https_port}/api/status", tmp_path)
    assert json.loads(result.stdout)["requesterInformation"]["remoteIP"] == "127.0.0.1"


def test_haproxy_recipe(processes, tmp_path):
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    require(os.path.exists(haproxy), "haproxy (apt-get install haproxy)")
    web, sock = start_backend(processes)
    http_port, stream_port = free_port(), free_port()
    config = block_starting("haproxy", "# /etc/haproxy/haproxy.cfg")
    config = re.sub(r"10\.0\.0\.1\d:8080", f"127.0.0.1:{web}", config)
    config = re.sub(r"10\.0\.0\.1\d:5000", f"127.0.0.1:{sock}", config)
    config = config.replace("bind :80", f"bind 127.0.0.1:{http_port}")
    config = config.replace("bind :5000", f"bind 127.0.0.1:{stream_port}")
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    check = subprocess.run([haproxy, "-c", "-f", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "Configuration file is valid" in check.stdout
    process = processes.start([haproxy, "-db", "-f", str(path)], "haproxy")
    for port in (http_port, stream_port):
        processes.wait(port, process)
    curl = sh_block_with("X-Forwarded-For: 203.0.113.9")[0]
    check_proxied(http_port, stream_port, curl, tmp_path)


# --- cluster -------------------------------------------------------------------------


def test_cluster_snippet(processes, tmp_path):
    """The two nodes of the page find each other through a real redis-server."""
    first, second, status = sh_block_with("--redis redis://127.0.0.1:6379/0")
    with RedisServer() as redis:
        ports = []
        for line in (first, second):
            web_match = re.search(r"--web tcp:(\d+)", line)
            socket_match = re.search(r"--socket tcp:(\d+)", line)
            web, sock = free_port(), free_port()
            line = line.replace("redis://127.0.0.1:6379/0", redis.url)
            line = line.replace(web_match.group(0), f"--web tcp:{web}:interface=127.0.0.1")
            line = line.replace(socket_match.group(0), f"--socket tcp:{sock}:interface=127.0.0.1")
            process = processes.start(twistd_args(line), f"node-{web}")
            processes.wait(web, process)
            ports.append(web)
        command = status.replace("localhost:8081", f"127.0.0.1:{ports[0]}")
        shown: list[str] = []

        def both_listed() -> bool:
            shown[:] = run(command, tmp_path).stdout.splitlines()
            return len(shown) == 4 and shown[0].strip() == '"peers": [' and shown[3].strip() == "],"

        wait_for(both_listed, 30, lambda: f"peers never listed both nodes: {shown!r}", step=0.2)
        lines = shown
        peers = [json.loads(line.strip().rstrip(",")) for line in lines[1:3]]
        assert len(set(peers)) == 2


def test_trusted_proxies_snippet(tmp_path):
    """The page's trustedProxies example is a valid config (no warning, every network read)."""
    (snippet,) = blocks("toml")
    path = tmp_path / "ahtwist.toml"
    path.write_text(snippet)
    config = load_config(str(path), environ={})
    assert config.warnings == ()
    assert list(config.servers.web.trustedProxies) == ["10.0.0.5", "127.0.0.0/8", "::1/128"]
