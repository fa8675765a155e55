"""The socket server over real sockets: a ``twistd ahtwist`` process, real
TCP and TLS clients, ``openssl s_client``, and the bad-input cases that only
real kernels show (abrupt resets, clients that never read, silence)."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import psutil
import pytest

from tests.e2e.servers import LineClient, Reader, TwistdServer, make_certificate, tls_client
from tests.helpers import REPO, require, wait_for
from tests.socket_helpers import GOODBYE, NOT_FOUND, assert_lines, match_line

TCP = "tcp:0:interface=127.0.0.1:backlog=1024"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def server(tls_files):
    key, cert = tls_files
    ssl_endpoint = f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    srv = TwistdServer([TCP, ssl_endpoint])
    srv.ssl_endpoint = ssl_endpoint
    yield srv
    srv.stop()


def session_lines(client: LineClient) -> None:
    """A telnet-style exchange (docs/protocol-socket.md) plus a file, a room and goodbye."""
    assert_lines(
        client.ask("paramAdd key=x\n"),
        ['{"status":"OK","context":"response","messageCount":1,"messageId":"<uuid>"}'],
    )
    assert_lines(
        client.ask("cacheTest\n"),
        [
            '{"error":"value is a required parameter for this action","context":"response",'
            '"messageCount":2,"messageId":"<uuid>"}'
        ],
    )
    reply = client.ask('{"action":"randomNumber","messageId":7}\n')[0]
    number = json.loads(reply)["randomNumber"]
    assert reply == (
        '{"randomNumber":%r,"stringRandomNumber":"Your random number is %r",'
        '"context":"response","messageCount":3,"messageId":7}' % (number, number)
    ).encode()
    simple = (REPO / "public" / "simple.html").read_bytes()
    client.send("file simple.html\nfile ../setup.cfg\n")
    assert client.read_exactly(len(simple)) == simple
    assert client.line() == NOT_FOUND
    assert_lines(
        client.ask("roomAdd defaultRoom\n"),
        ['{"status":"OK","context":"response","data":true,"messageCount":6,"messageId":"<uuid>"}'],
    )
    client.send("quit\n")
    assert client.line() == GOODBYE
    assert client.closed_by_server()
    assert client.buffer == b""


def test_tcp_session(server):
    client = server.connect()
    session_lines(client)


def test_tls_session_with_python_ssl(server, tls_files):
    _, cert = tls_files
    client = tls_client(server.ports[server.ssl_endpoint], cert)
    assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
    session_lines(client)


def test_tls_session_with_openssl_s_client(server, tls_files):
    openssl = shutil.which("openssl")
    require(openssl is not None, "openssl")
    _, cert = tls_files
    port = server.ports[server.ssl_endpoint]
    result = subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(cert), "-verify_return_error",
         "-quiet", "-servername", "localhost"],
        input=b"paramAdd key=abc\nparamView key\nquit\n",
        capture_output=True,
        timeout=30,
    )
    lines = result.stdout.split(b"\r\n")
    assert lines[0] == b'{"welcome":"Hello! Welcome to the actionhero api","context":"api"}', result
    assert_lines(
        lines[1:],
        [
            '{"status":"OK","context":"response","messageCount":1,"messageId":"<uuid>"}',
            '{"status":"OK","context":"response","data":"abc","messageCount":2,"messageId":"<uuid>"}',
            '{"status":"Bye!","context":"api"}',
            "",
        ],
    )


def test_two_clients_chat(server):
    a, b = server.connect(), server.connect()
    a_id = json.loads(a.ask("detailsView\n")[0])["data"]["id"]
    b_id = json.loads(b.ask("detailsView\n")[0])["data"]["id"]
    a.ask("roomAdd defaultRoom\n")
    b.ask("roomAdd defaultRoom\n")
    b.send("say defaultRoom hello from B\n")
    chat_b = '{"message":"hello from B","room":"defaultRoom","from":"%s","context":"user","sentAt":<ms>}' % b_id
    assert_lines(
        [b.line(), b.line()],
        ['{"status":"OK","context":"response","messageCount":3,"messageId":"<uuid>"}', chat_b],
    )
    assert match_line(a.line(), chat_b)
    a.send("say defaultRoom hi B, this is A\n")
    chat_a = '{"message":"hi B, this is A","room":"defaultRoom","from":"%s","context":"user","sentAt":<ms>}' % a_id
    assert_lines([a.line(), a.line()], ['{"status":"OK","context":"response","messageCount":3,"messageId":"<uuid>"}', chat_a])
    assert match_line(b.line(), chat_a)
    view = json.loads(a.ask("roomView defaultRoom\n")[0])["data"]
    assert list(view["members"]) == [a_id, b_id] and view["membersCount"] == 2
    b.ask("roomLeave defaultRoom\n")
    b.send("quit\n")
    assert b.line() == GOODBYE
    a.ask("say defaultRoom anyone?\n")
    assert json.loads(a.line())["message"] == "anyone?"
    assert not b.has_data() or b.closed_by_server(1)
    view = json.loads(a.ask("roomView defaultRoom\n")[0])["data"]
    assert list(view["members"]) == [a_id]
    a.close()


def active_clients(client: LineClient) -> int:
    return json.loads(client.ask("status\n")[0])["stats"]["socketServer"]["numberOfLocalActiveSocketClients"]


def test_a_thousand_connections_opened_and_dropped_abruptly(server):
    checker = server.connect()
    clients = []
    for i in range(1000):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        clients.append(sock)
        if i % 3 == 0:
            sock.sendall(b"roomAdd defaultRoom\nparamAdd key=")  # a room and half a line
    wait_for(lambda: active_clients(checker) == 1001, 20, "not every connection was accepted", step=0.1)
    assert active_clients(checker) == 1001  # all accepted, then...
    for sock in clients:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
    wait_for(lambda: active_clients(checker) == 1, 20, "the dropped connections stayed", step=0.1)
    assert active_clients(checker) == 1
    view = json.loads(checker.ask("roomAdd defaultRoom\nroomView defaultRoom\n", 2)[1])
    assert view["data"]["membersCount"] == 1
    assert "Traceback" not in server.log()


@pytest.fixture
def limits_server():
    srv = TwistdServer(
        [TCP],
        "[servers.socket]\nmaxDataLength = 512\nmaxBufferLength = 65536\nidleTimeout = 3\n",
    )
    yield srv
    srv.stop()


def test_oversize_and_unterminated_lines_over_tcp(limits_server):
    client = limits_server.connect()
    assert_lines(
        client.ask(b"x" * 600 + b"\n"),
        [
            '{"status":"error","error":"data length is too big (600 received/512 max)",'
            '"context":"response","messageCount":0,"messageId":"<uuid>"}'
        ],
    )
    for _ in range(64):  # 4 MiB without a delimiter
        client.send(b"y" * 65536)
    error = client.json()
    received = int(re.search(r"\((\d+) received/512 max\)", error["error"]).group(1))
    assert received > 65536
    assert error["messageCount"] == 0
    assert_lines(
        client.ask(b"yyy\nparamAdd key=ok\n"),
        ['{"status":"OK","context":"response","messageCount":1,"messageId":"<uuid>"}'],
    )
    client.send("quit\n")
    assert client.line() == GOODBYE


def test_half_line_then_silence_is_closed_by_the_idle_timeout_without_holding_up_others(limits_server):
    quiet = limits_server.connect()
    quiet.send("paramAdd key=")
    busy = limits_server.connect()
    for n in range(1, 21):
        reply = json.loads(busy.ask("randomNumber\n")[0])
        assert (reply["context"], reply["messageCount"], type(reply["randomNumber"])) == ("response", n, float)
    assert quiet.line(timeout=10) == GOODBYE
    assert quiet.closed_by_server()
    # the server's own order: every answer to the other client before the quiet one was closed
    wait_for(lambda: "closing idle socket client" in limits_server.log(), 5, "no idle close logged", step=0.1)
    log = limits_server.log()
    before, _, after = log.partition("closing idle socket client")
    assert (before.count("action=randomNumber"), after.count("action=randomNumber")) == (20, 0)
    busy.ask("paramsView\n")  # keeps busy alive past its own idle limit
    busy.close()


@pytest.fixture
def flood_server():
    srv = TwistdServer(
        [TCP],
        "[servers.socket]\nmaxBufferLength = 262144\n",
    )
    yield srv
    srv.stop()


def test_a_client_that_never_reads_is_dropped_and_memory_stays_bounded(flood_server):
    sleeper = socket.create_connection(("127.0.0.1", flood_server.port), timeout=10)
    sleeper.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sleeper.sendall(b"roomAdd defaultRoom\n")  # and never reads again
    talker = flood_server.connect()
    talker.ask("roomAdd defaultRoom\n")
    reader = Reader(talker)
    reader.start()
    rss_before = psutil.Process(flood_server.process.pid).memory_info().rss
    message = b"say defaultRoom " + b"m" * 2000 + b"\n"
    for _ in range(3000):  # 6 MB of chat the sleeper never reads
        talker.send(message)
    checker = flood_server.connect()
    wait_for(lambda: active_clients(checker) == 2, 20, "the sleeper was not dropped", step=0.1)
    assert active_clients(checker) == 2  # the sleeper was dropped
    # info lines are written in batches
    wait_for(lambda: "bytes of output it does not read" in flood_server.log(), 5, "no drop logged", step=0.1)
    assert "bytes of output it does not read" in flood_server.log()
    rss_after = psutil.Process(flood_server.process.pid).memory_info().rss
    assert rss_after - rss_before < 30 * 1024 * 1024
    reader.stopped = True
    view = json.loads(checker.ask("roomAdd defaultRoom\nroomView defaultRoom\n", 2)[1])
    assert view["data"]["membersCount"] == 2
    sleeper.close()


def test_a_client_that_sends_without_reading_is_paused_not_buffered(flood_server):
    pusher = socket.create_connection(("127.0.0.1", flood_server.port), timeout=10)
    pusher.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    pusher.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    pusher.settimeout(5)
    request = b"randomNumber\n" * 10000
    sent = 0
    with pytest.raises(TimeoutError):
        for _ in range(400):  # 52 MB of requests whose replies are never read
            pusher.sendall(request)
            sent += len(request)
    # the server stopped reading: its replies were never more than a few MB
    assert sent < 20 * 1024 * 1024
    checker = flood_server.connect()
    assert_lines(
        checker.ask("paramAdd key=x\n"),
        ['{"status":"OK","context":"response","messageCount":1,"messageId":"<uuid>"}'],
    )
    rss = psutil.Process(flood_server.process.pid).memory_info().rss
    assert rss < 200 * 1024 * 1024
    pusher.close()


def test_sigterm_drains_pending_actions_then_exits(tls_files):
    srv = TwistdServer([TCP], "[servers.socket]\npendingShutdownWaitLimit = 4000\n")
    try:
        idle, busy, late = srv.connect(), srv.connect(), srv.connect()
        busy.send('{"action":"sleepTest","params":{"sleepDuration":1500}}\n')
        late.send('{"action":"sleepTest","params":{"sleepDuration":30000}}\n')
        time.sleep(0.2)
        srv.process.send_signal(signal.SIGTERM)
        assert idle.line() == GOODBYE
        assert idle.closed_by_server()
        reply = busy.json()
        assert reply["sleepDuration"] == 1500 and reply["messageCount"] == 1
        assert busy.line() == GOODBYE
        assert busy.closed_by_server()
        assert late.closed_by_server(timeout=10)  # forced closed, no reply
        assert late.buffer == b""
        # twistd re-raises the signal after a clean shutdown (systemd: clean stop)
        assert srv.process.wait(timeout=10) == -signal.SIGTERM
        assert "Server Shut Down." in srv.log()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", srv.port), timeout=2)
    finally:
        srv.stop()
    assert os.path.exists(srv.log_path)
