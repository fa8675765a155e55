"""Issue 12, item 8: the smaller input findings, each with its exact answer."""

import re

from ahtwist import Action, Input
from ahtwist.socket import SocketFactory
from tests.helpers import REPO, HTTPClient, make_node
from tests.socket_helpers import assert_lines, connect
from tests.wshelpers import WSHarness


class Echo(Action):
    name = "echo"
    description = "echo"
    inputs = {"x": Input(), "n": Input(formatter=int), "v": Input(validator=lambda value: value == "ok")}

    def run(self, data):
        data.response["params"] = {k: v for k, v in data.params.items() if k != "apiVersion"}


def http() -> HTTPClient:
    return HTTPClient(make_node(plugins=[Echo]))


def error(text: str, count: int) -> str:
    return '{"status":"%s","error":"%s","context":"response","messageCount":%d,"messageId":"<uuid>"}' % (
        text,
        text,
        count,
    )


def test_obs_fold_is_refused_with_400():
    for header in (b"Content-Length: 5\r\n 0\r\n", b"Content-Length: 5\r\nX-Other: a\r\n\tb\r\n"):
        data = http().send_raw(b"POST /api/echo HTTP/1.1\r\nHost: x\r\n" + header + b"\r\nhello")
        assert data == b"HTTP/1.1 400 Bad Request\r\n\r\n", header


def test_file_action_refuses_an_absolute_path_like_the_other_transports():
    c = http()
    absolute = REPO / "public" / "simple.html"
    r = c.get(f"/api?action=file&fileName={absolute}")
    assert (r.status, r.body) == (404, b"That file is not found")
    r = c.get("/api?action=file&fileName=simple.html")
    assert r.status == 200 and r.body == (REPO / "public" / "simple.html").read_bytes()


def test_invalid_utf8_in_the_query_is_decoded_with_replacement_characters():
    r = http().get("/api/echo?x=%FF%FE")
    assert (r.status, r.json()["params"]) == (200, {"x": "\ufffd\ufffd", "action": "echo"})
    r = http().get("/api/echo?x=%zz")  # a malformed escape is still refused
    assert (r.status, r.json()["error"]) == (400, "There was an error processing this form.")


def test_json_nested_too_deep_is_a_clear_error_on_the_websocket():
    h = WSHarness(make_node())
    c = h.client()
    c.send_text("[" * 10000 + "]" * 10000)
    [reply] = c.messages()
    assert re.fullmatch(r"[0-9a-f-]{36}", reply.pop("messageId"))
    text = "request is nested too deeply (1024 levels max)"
    assert reply == {"status": text, "error": text, "context": "response", "messageCount": 1}
    assert not c.lost


def test_json_nested_too_deep_is_a_clear_error_on_the_socket():
    (client,) = connect(SocketFactory(make_node()))
    line = b'{"action":"randomNumber","params":' + b"[" * 10000 + b"]" * 10000 + b"}\n"
    assert_lines(client.ask(line), [error("request is nested too deeply (1024 levels max)", 1)])


def test_a_bad_int_names_the_parameter_and_leaks_no_python_text():
    r = http().get("/api/echo?n=x")
    assert (r.status, r.json()["error"]) == (400, 'Input for parameter "n" failed validation!')
    assert "invalid literal" not in r.body.decode()
    r = http().get("/api/echo?n=12")
    assert r.json()["params"] == {"n": 12, "action": "echo"}


def test_a_failing_validator_names_the_parameter():
    r = http().get("/api/echo?v=bad")
    assert (r.status, r.json()["error"]) == (400, 'Input for parameter "v" failed validation!')


def test_param_add_of_an_unknown_param_is_an_error():
    (client,) = connect(SocketFactory(make_node()))
    assert_lines(client.ask(b"paramAdd nonsense=1\n"), [error("param not allowed (nonsense)", 1)])
    assert_lines(
        client.ask(b"paramsView\n"),
        ['{"status":"OK","context":"response","data":{},"messageCount":2,"messageId":"<uuid>"}'],
    )


def test_a_100_kb_junk_line_is_logged_truncated(log_lines):
    (client,) = connect(SocketFactory(make_node()))
    client.ask(b"x" * 100000 + b"\n")
    [line] = [text for text in log_lines() if text.startswith("[ action @ socket ]")]
    assert len(line) < 2100
    assert line.startswith('[ action @ socket ] to=127.0.0.1 action=xxxxxxxx')
    assert re.search(r"\.\.\. \(\d{6} characters\)$", line)
