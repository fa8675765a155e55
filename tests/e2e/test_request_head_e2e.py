"""Request heads over real sockets to a real ``twistd ahtwist``: heads parsed in one
go (``ahtwist/web/request_head.py``) and the ones left to Twisted's line parser.

Raw bytes on a TCP connection, written in the pieces each case needs (one
head per write, several heads in one write, a head split across writes),
and the exact responses read back in order.
"""

import json
import socket
import time

import pytest

from tests.helpers import parse_response

HEADER_NAMES = [
    "X-Powered-By",
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Methods",
    "Access-Control-Allow-Headers",
    "Set-Cookie",
    "Content-Type",
    "Content-Length",
    "Date",
]


def head(target: str = "/api/randomNumber", *headers: str, method: str = "GET", version: str = "HTTP/1.1") -> bytes:
    return ("\r\n".join([f"{method} {target} {version}", "Host: 127.0.0.1", *headers]) + "\r\n\r\n").encode("latin-1")


class Connection:
    def __init__(self, server) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        self.buffer = b""

    def send(self, *writes: bytes) -> None:
        for i, data in enumerate(writes):
            if i:
                time.sleep(0.05)  # separate reads on the server
            self.sock.sendall(data)

    def responses(self, count: int, head_request: bool = False) -> list:
        found = []
        while len(found) < count:
            response, self.buffer = parse_response(self.buffer, head_request)
            if response is not None:
                found.append(response)
                continue
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed after {len(found)} responses")
            self.buffer += chunk
        return found

    def closed(self) -> bool:
        """The server closed the connection (after anything still unread)."""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return True
            self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def connection(server):
    c = Connection(server)
    yield c
    c.close()


def assert_random_number(response) -> None:
    assert (response.status, response.reason) == (200, "OK")
    assert [name for name, _ in response.headers] == HEADER_NAMES
    assert response.header("Content-Length") == str(len(response.body))
    assert list(response.json())[:2] == ["randomNumber", "stringRandomNumber"]


def test_one_head_per_write_on_a_kept_connection(connection):
    for _ in range(3):
        connection.send(head())
        [response] = connection.responses(1)
        assert_random_number(response)


def test_several_heads_in_one_write_answer_in_order(connection):
    connection.send(head("/api/randomNumber?messageId=a") + head("/api/nothing") + head())
    first, missing, last = connection.responses(3)
    assert_random_number(first)
    assert_random_number(last)
    assert (missing.status, missing.json()["error"]) == (404, "unknown action or invalid apiVersion")


def test_a_head_split_across_writes(connection):
    data = head("/api/randomNumber", "Cookie: sessionID=split")
    connection.send(data[:10], data[10:-2], data[-2:])
    [response] = connection.responses(1)
    assert response.status == 200
    assert response.json()["requesterInformation"]["fingerprint"] == "split"
    assert response.header("Set-Cookie") is None


def test_the_request_headers_reach_the_action(connection):
    connection.send(head("/api/randomNumber", "Cookie: a=1; sessionID=fromCookie", "X-Forwarded-For: 10.0.0.1"))
    [response] = connection.responses(1)
    info = response.json()["requesterInformation"]
    assert (info["fingerprint"], info["remoteIP"]) == ("fromCookie", "10.0.0.1")  # loopback is a trusted proxy


def test_head_answers_without_a_body(connection):
    connection.send(head(method="HEAD"), head())
    first, second = connection.responses(1, head_request=True) + connection.responses(1)
    assert (first.status, first.body, first.header("Content-Length")) == (200, b"", "0")
    assert_random_number(second)


@pytest.mark.parametrize(
    ("data", "version"),
    [
        (head(version="HTTP/1.0"), "HTTP/1.0"),
        (head("/api/randomNumber", "Connection: close"), "HTTP/1.1"),
    ],
)
def test_a_connection_that_is_not_kept_is_closed_after_the_answer(connection, data, version):
    connection.send(data)
    [response] = connection.responses(1)
    assert response.raw.startswith(version.encode() + b" 200 OK\r\n")
    assert connection.closed()


@pytest.mark.parametrize(
    "data",
    [
        head(method="G@T"),
        head(version="HTTP/2.0"),
        head("/api/randomNumber", "X-A 1"),
        head("/api/randomNumber", "X-A : 1"),
        head("/api/randomNumber", "X-A: 1", " folded"),
        head("/api/randomNumber", "X-A: a\0b"),
        head("/api/randomNumber", "X-A: a\nb"),
        head("/api/random Number"),
    ],
)
def test_heads_twisted_refuses_are_400_and_closed(connection, data):
    connection.send(data)
    [response] = connection.responses(1)
    assert response.raw.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert connection.closed()


def test_a_body_is_read_by_twisted_then_a_simple_head(connection):
    body = json.dumps({"action": "randomNumber"}).encode()
    post = head("/api", "Content-Type: application/json", f"Content-Length: {len(body)}", method="POST")
    connection.send(post + body, head())
    first, second = connection.responses(2)
    assert_random_number(first)
    assert_random_number(second)
