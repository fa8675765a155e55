"""Raw request bodies: text/plain and octet-stream kept, saveRawBody for every type, the README examples."""

import hashlib
import hmac
import json
import re

from ahtwist import Action, Input
from ahtwist.socket import SocketFactory
from tests.helpers import REPO, HTTPClient, make_node
from tests.socket_helpers import connect


class Echo(Action):
    name = "echo"
    description = "answers what it received"
    inputs = {"a": Input()}

    def run(self, data):
        raw = data.connection.raw
        data.response["raw"] = raw.raw_body.decode("latin-1")
        data.response["params"] = sorted(data.params)
        data.response["body"] = raw.body


def post(client, content_type, body, path="/api/echo"):
    headers = {"Content-Type": content_type} if content_type else {}
    return client.request("POST", path, headers=headers, body=body)


def test_text_and_binary_bodies_no_longer_vanish():
    client = HTTPClient(make_node(plugins=[Echo]))
    text = post(client, "text/plain; charset=utf-8", "hello\r\nworld").json()
    assert (text["raw"], text["params"], text["body"]) == ("hello\r\nworld", ["action", "apiVersion"], {})
    binary = post(client, "application/octet-stream", b"\x00\xff\x10").json()
    assert binary["raw"] == "\x00\xff\x10"
    untyped = post(client, None, b"no type").json()
    assert untyped["raw"] == "no type"


def test_form_bodies_keep_their_raw_bytes_only_with_save_raw_body():
    plain = HTTPClient(make_node(plugins=[Echo]))
    kept = HTTPClient(make_node("[servers.web]\nsaveRawBody = true\n", plugins=[Echo]))
    body = '{"a": 1,  "b": [2]}'
    assert post(plain, "application/json", body).json()["raw"] == ""
    reply = post(kept, "application/json", body).json()
    assert (reply["raw"], reply["body"]) == (body, {"a": 1, "b": [2]})
    assert post(kept, "application/x-www-form-urlencoded", "a=1&b=%20").json()["raw"] == "a=1&b=%20"
    multipart = (
        b"--XX\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue\r\n--XX--\r\n"
    )
    reply = post(kept, "multipart/form-data; boundary=XX", multipart).json()
    assert (reply["raw"], reply["body"]) == (multipart.decode(), {"a": "value"})
    get = kept.request("GET", "/api/echo", body="ignored?").json()
    assert get["raw"] == "ignored?"
    assert plain.request("GET", "/api/echo", body="ignored").json()["raw"] == ""


def test_raw_bodies_are_bounded_by_max_fields_size():
    client = HTTPClient(make_node("[servers.web.formOptions]\nmaxFieldsSize = 8\n", plugins=[Echo]))
    assert post(client, "text/plain", "12345678").json()["raw"] == "12345678"
    response = post(client, "text/plain", "123456789")
    assert (response.status, response.json()["error"]) == (413, "request body is too large")


def readme_blocks(start: str, end: str) -> list[str]:
    text = (REPO / "README.md").read_text("utf-8")
    section = text[text.index(start) : text.index(end)]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_action_webhook_checks_the_hmac_over_the_raw_body():
    [block] = readme_blocks("### Raw bodies (webhooks)", "## Routes, static files and uploads")
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    client = HTTPClient(make_node("[servers.web]\nsaveRawBody = true\n", plugins=[namespace["PaymentWebhook"]]))
    event = b'{"type": "payment.succeeded",\n "amount": 1200}'
    signature = hmac.new(b"change-me", event, hashlib.sha256).hexdigest()
    good = client.request(
        "POST", "/api/paymentWebhook",
        headers={"Content-Type": "application/json", "X-Signature": signature}, body=event,
    )
    assert (good.status, good.json()["received"]) == (200, len(event))
    tampered = client.request(
        "POST", "/api/paymentWebhook",
        headers={"Content-Type": "application/json", "X-Signature": signature}, body=event.replace(b"1200", b"1"),
    )
    assert (tampered.status, tampered.json()["error"]) == (400, "bad signature")


def test_readme_klein_webhook_runs_as_documented(tmp_path):
    [block] = readme_blocks("## HTTP endpoints with Klein", "**Health checks.**")
    (tmp_path / "webhooks.py").write_text(block)
    node = make_node('[servers.web]\nmounts = [{ path = "/hooks", app = "webhooks.py:app" }]\n', directory=str(tmp_path))
    client = HTTPClient(node)
    [member] = connect(SocketFactory(node), 1)
    member.ask(b"roomAdd defaultRoom\n")
    event = json.dumps({"repository": {"full_name": "octo/hello"}}).encode()
    signature = "sha256=" + hmac.new(b"change-me", event, hashlib.sha256).hexdigest()
    good = client.request(
        "POST", "/hooks/github",
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature}, body=event,
    )
    assert (good.status, good.header("Content-Type"), good.body) == (200, "application/json", b'{"ok": true}')
    [said] = [json.loads(line) for line in member.lines()]
    assert (said["message"], said["from"], said["room"]) == ("push to octo/hello", 0, "defaultRoom")
    bad = client.request(
        "POST", "/hooks/github", headers={"X-Hub-Signature-256": "sha256=00"}, body=event,
    )
    assert (bad.status, bad.body) == (401, b"bad signature")
