"""Issue 12's end-to-end findings against a real ``twistd ahtwist`` on loopback:
cross-site websocket hijacking, a spoofed X-Forwarded-For, a websocket client
that does not read, and replies lost on SIGTERM."""

import json
import re
import signal
import socket
import urllib.request

from tests.e2e.twistd import AhtwistProcess
from tests.e2e.ws_blocking import BlockingWebSocket
from tests.helpers import wait_for
from tests.wshelpers import OP_TEXT, encode_frame

WELCOME = {"welcome": "Hello! Welcome to the actionhero api", "context": "api"}


def test_cross_site_page_cannot_open_a_websocket_with_the_victims_cookie(server):
    """The victim's cookie from an earlier visit, sent by a page of another
    site: 403 before the upgrade, logged; the same page of our own site is
    allowed and takes the fingerprint."""
    with urllib.request.urlopen(server.http_url + "/api/randomNumber", timeout=5) as response:
        cookie = response.headers["Set-Cookie"]
    assert cookie.endswith(";HttpOnly;SameSite=Lax;")
    session = cookie.split(";")[0]
    evil = BlockingWebSocket(server.ws_url, headers={"Origin": "http://evil.example", "Cookie": session})
    try:
        assert evil.response_head == b"HTTP/1.1 403 origin not allowed"
    finally:
        evil.sock.close()
    null = BlockingWebSocket(server.ws_url + "?" + session, headers={"Origin": "null"})
    null.sock.close()
    assert null.status == 403
    own = BlockingWebSocket(
        server.ws_url, headers={"Origin": f"http://127.0.0.1:{server.port}", "Cookie": session}
    )
    try:
        assert own.status == 101 and own.recv() == WELCOME
        assert own.request({"event": "detailsView"})["data"]["fingerprint"] == session.split("=")[1]
    finally:
        own.close()
    assert "refused websocket upgrade from 127.0.0.1: origin 'http://evil.example' not allowed" in server.log()


def _raw_get(port: int, headers: str) -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET /api/randomNumber HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return json.loads(data.partition(b"\r\n\r\n")[2])


def test_spoofed_forwarded_for_does_not_pick_the_remote_ip(tmp_path):
    """Behind the README's nginx recipe the proxy appends the real address:
    the client's own X-Forwarded-For item is ignored.  Without a trusted
    proxy in front (trustedProxies = []) the header is ignored altogether."""
    process = AhtwistProcess().start()
    try:
        # what nginx forwards for a client at 198.51.100.7 that sent "X-Forwarded-For: 1.2.3.4"
        info = _raw_get(process.port, "X-Forwarded-For: 1.2.3.4, 198.51.100.7\r\n")["requesterInformation"]
        assert info["remoteIP"] == "198.51.100.7"
        process.stop()
        log = process.log()
    finally:
        process.cleanup()
    assert "[ action @ web ] to=198.51.100.7 action=randomNumber" in log
    assert "1.2.3.4" not in log
    config = tmp_path / "direct.toml"
    config.write_text("[servers.web]\ntrustedProxies = []\n")
    direct = AhtwistProcess(config=str(config)).start()
    try:
        info = _raw_get(direct.port, "X-Forwarded-For: 1.2.3.4\r\n")["requesterInformation"]
        assert info["remoteIP"] == "127.0.0.1"
        ws = BlockingWebSocket(direct.ws_url, headers={"X-Forwarded-For": "1.2.3.4"})
        try:
            assert ws.recv() == WELCOME
            assert ws.request({"event": "detailsView"})["data"]["remoteIP"] == "127.0.0.1"
        finally:
            ws.close()
    finally:
        direct.cleanup()


def test_websocket_client_that_does_not_read_is_dropped(server):
    """2,000 ``file`` requests (65 bytes each, ~19 KB replies) from a client
    that reads nothing: the server drops it once 4 MiB wait, logs it, and
    keeps serving everyone else."""
    ws = BlockingWebSocket(server.ws_url)
    assert ws.recv() == WELCOME
    frame = json.dumps({"event": "file", "file": "javascript/actionheroClient.js"}).encode()
    ws.sock.sendall(encode_frame(OP_TEXT, frame) * 2000)
    wait_for(lambda: "bytes of output it does not read" in server.log(), 20, "gave up waiting for the drop")
    [line] = [line for line in server.log().splitlines() if "dropping websocket client" in line]
    assert re.search(r"dropping websocket client [0-9a-f-]{36}: \d+ bytes of output it does not read$", line)
    ws.sock.settimeout(20)
    received = b""
    try:
        while chunk := ws.sock.recv(1 << 20):
            received += chunk
    except ConnectionResetError:
        pass  # aborted: the client never answered the close
    ws.sock.close()
    with urllib.request.urlopen(server.http_url + "/api/randomNumber", timeout=5) as response:
        assert response.status == 200


def test_sigterm_sends_in_flight_websocket_replies_before_closing():
    """8 websocket actions in flight at SIGTERM: each client gets its reply,
    then close 1001; the process then ends by the signal (status 143)."""
    process = AhtwistProcess().start()
    try:
        clients = [BlockingWebSocket(process.ws_url) for _ in range(8)]
        for i, ws in enumerate(clients):
            assert ws.recv() == WELCOME
            ws.send({"event": "action", "params": {"action": "sleepTest", "sleepDuration": 1500}, "messageId": i})
        idle = BlockingWebSocket(process.ws_url)
        assert idle.recv() == WELCOME
        # every action has started once the idle client's request is answered
        assert idle.request({"event": "detailsView"})["status"] == "OK"
        process.process.send_signal(signal.SIGTERM)
        assert idle.wait_closed() == 1001
        for i, ws in enumerate(clients):
            reply = ws.recv(timeout=10)
            assert (reply["messageId"], reply["sleepDuration"]) == (i, 1500)
            assert ws.wait_closed() == 1001
            ws.sock.close()
        idle.sock.close()
        assert process.process.wait(15) == -signal.SIGTERM
    finally:
        process.cleanup()


def test_a_bad_multipart_body_logs_one_line_and_nothing_on_stderr(tmp_path):
    process = AhtwistProcess().start()
    try:
        body = b"this is not multipart"
        with socket.create_connection(("127.0.0.1", process.port), timeout=5) as sock:
            sock.sendall(
                b"POST /api/randomNumber HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Content-Type: multipart/form-data; boundary=XX\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body
            )
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        process.stop()
        log = process.log()
    finally:
        process.cleanup()
    assert (
        "bad request body from 127.0.0.1: malformed multipart body: "
        "Expected boundary character 45, got 116 at index 2" in log
    )
    assert "[stderr#error]" not in log
