"""Klein apps mounted beside the action API, and the built-in health routes."""

import hashlib
import hmac
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ahtwist.errors import ConfigError
from tests.helpers import HTTPClient, config_from, make_node

HOOKS = '''
import hashlib, hmac, json
from klein import Klein

app = Klein()

@app.route("/github", methods=["POST"])
def github(request):
    body = request.content.read()
    sent = request.getHeader(b"x-hub-signature-256") or b""
    good = b"sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest().encode()
    if not hmac.compare_digest(sent, good):
        request.setResponseCode(401)
        return b"bad signature"
    request.setHeader(b"content-type", b"application/json")
    node = request.node
    return json.dumps({"got": json.loads(body), "server": node.config.general.serverName}).encode()

class Counter:
    """An app class: instantiated with the node; its bound Klein app is mounted."""
    app = Klein()

    def __init__(self, node):
        self.node = node
        self.hits = 0

    @app.route("/hit")
    def hit(self, request):
        self.hits += 1
        return f"{self.node.config.general.serverName} {self.hits}".encode()
'''


def hooks_node(tmp_path: Path, extra: str = "", **kw):
    (tmp_path / "hooks.py").write_text(HOOKS)
    return make_node(
        '[general]\nserverName = "hooky"\n[servers.web]\n'
        'mounts = [{ path = "/hooks", app = "hooks.py:app" }, '
        '{ path = "/count/v1", app = "hooks.py:Counter" }]\n' + extra,
        directory=str(tmp_path),
        **kw,
    )


def signed(body: bytes, secret: bytes = b"s3cret") -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def test_liveness_is_200_json():
    response = HTTPClient(make_node()).get("/healthz")
    assert (response.status, response.body) == (200, b'{"status":"ok"}')
    assert response.header("Content-Type") == "application/json; charset=utf-8"
    assert response.header("Cache-Control") == "no-store"
    assert response.header("Content-Length") == "15"


def test_readiness_follows_the_node_lifecycle():
    node = make_node()
    client = HTTPClient(node)
    starting = client.get("/readyz")
    assert (starting.status, starting.json()) == (503, {"ready": False, "problems": ["starting"]})
    node.ready = True
    assert (client.get("/readyz").status, client.get("/readyz").json()) == (200, {"ready": True})
    node.health_checks.append(lambda: ["Redis unavailable"])
    unhealthy = client.get("/readyz")
    assert (unhealthy.status, unhealthy.json()) == (503, {"ready": False, "problems": ["Redis unavailable"]})
    node.health_checks.clear()
    node.stopping = True
    draining = client.get("/readyz")
    assert (draining.status, draining.json()) == (503, {"ready": False, "problems": ["stopping"]})


def test_health_paths_are_configurable_and_can_be_switched_off():
    node = make_node('[servers.web.health]\nlivenessPath = "/live"\nreadinessPath = ""\n')
    client = HTTPClient(node)
    assert client.get("/live").status == 200
    assert client.get("/healthz").status == 404  # now a static file lookup
    assert client.get("/readyz").status == 404
    off = HTTPClient(make_node("[servers.web.health]\nenabled = false\n"))
    assert off.get("/healthz").body == b"That file is not found"


def test_health_routes_refuse_other_methods():
    response = HTTPClient(make_node()).request("POST", "/healthz", body="x")
    assert response.status == 405
    assert sorted(response.header("Allow").split(", ")) == ["GET", "HEAD"]


def test_klein_webhook_gets_the_raw_body_and_the_node(tmp_path):
    client = HTTPClient(hooks_node(tmp_path))
    body = b'{"zen": "Keep it logically awesome.", "n": 1}'
    good = client.request(
        "POST",
        "/hooks/github",
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": signed(body)},
        body=body,
    )
    assert good.status == 200
    assert json.loads(good.body) == {"got": {"zen": "Keep it logically awesome.", "n": 1}, "server": "hooky"}
    bad = client.request(
        "POST",
        "/hooks/github",
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": signed(body, b"nope")},
        body=body,
    )
    assert (bad.status, bad.body) == (401, b"bad signature")


def test_app_class_is_built_with_the_node_and_keeps_state(tmp_path):
    client = HTTPClient(hooks_node(tmp_path))
    assert client.get("/count/v1/hit").body == b"hooky 1"
    assert client.get("/count/v1/hit").body == b"hooky 2"
    assert client.get("/count/hit").body == b"That file is not found"


def test_a_static_file_at_the_root_wins_over_a_mount(tmp_path):
    public = tmp_path / "public"
    (public / "hooks").mkdir(parents=True)
    (public / "hooks" / "github").write_text("static!")
    client = HTTPClient(hooks_node(tmp_path, '[general.paths]\npublic = ["public"]\n'))
    response = client.get("/hooks/github")
    assert (response.status, response.body) == (200, b"static!")


def test_actions_and_prefixes_ahtwist_owns_cannot_be_mounted(tmp_path):
    (tmp_path / "hooks.py").write_text(HOOKS)
    for prefix in ("/api/x", "/public", "/file", "/ws"):
        with pytest.raises(ConfigError, match=f"mount '{prefix}': /{prefix.split('/')[1]} belongs to ahtwist"):
            HTTPClient(
                make_node(
                    f'[servers.web]\nmounts = [{{ path = "{prefix}", app = "hooks.py:app" }}]\n',
                    directory=str(tmp_path),
                )
            )
    response = HTTPClient(hooks_node(tmp_path)).get("/api/randomNumber")
    assert response.status == 200 and "randomNumber" in response.json()


def test_bad_mount_config_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"servers\.web\.mounts\[0\]\.app: must be \"file.py:name\""):
        config_from('[servers.web]\nmounts = [{ path = "/x", app = "nocolon" }]\n')
    with pytest.raises(ConfigError, match=r"mount app .*missing\.py does not exist"):
        HTTPClient(make_node('[servers.web]\nmounts = [{ path = "/x", app = "missing.py:app" }]\n', directory=str(tmp_path)))


def test_klein_and_psutil_are_imported_by_the_first_request_that_needs_them():
    # a fresh interpreter: this one imported them long ago
    code = (
        "import sys\n"
        "from ahtwist.testing import make_node\n"
        "from ahtwist.testing.http_client import HTTPClient\n"
        "client = HTTPClient(make_node())\n"
        "print('klein' in sys.modules, 'werkzeug' in sys.modules, 'psutil' in sys.modules)\n"
        "print(client.get('/api/openapi.json').status, 'klein' in sys.modules)\n"
        "print(client.get('/healthz').body.decode(), client.get('/docs').status)\n"
        "print(client.get('/api/status').json()['consumedMemoryMB'] > 0, 'psutil' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == [
        "False False False",
        "200 True",
        '{"status":"ok"} 200',
        "True True",
    ]
