"""``ahtwist new DIR``: the layout of an application kept outside ahtwist's repository.

The app depends on an installed ahtwist (``pip install ahtwist``) and holds
only its own code and config::

    DIR/ahtwist.toml            the config (its paths are relative to it)
    DIR/actions/                actions and middleware
    DIR/initializers/           start-up / shut-down code
    DIR/webhooks.py             a Klein app mounted at /hooks
    DIR/public/                 the app's static files (ahtwist's client JS after them)
    DIR/tests/                  tests written with ahtwist.testing (plain pytest)
    DIR/systemd/<name>.service  a unit running this app with this Python

Run it from anywhere with ``twistd -n ahtwist --config DIR/ahtwist.toml``.
"""

import argparse
import os
import re
import secrets
import sys
from pathlib import Path

from ahtwist._version import __version__

CONFIG = """\
# {name}: an ahtwist application.  Every key ahtwist knows, with its default,
# is in ahtwist's etc/ahtwist.toml; relative paths resolve against this file.
#
#   twistd -n --pidfile= ahtwist --config {config}

[general]
serverName = "{name}"
# Nodes of one cluster share it.
serverToken = "{token}"

[general.paths]
actions = ["actions"]
initializers = ["initializers"]
# The app's files first, then ahtwist's browser client and demo pages.
public = ["public", "ahtwist:public"]

[servers.web]
port = 8080
# Klein apps: POST /hooks/github is webhooks.py's route "/github".
mounts = [{{ path = "/hooks", app = "webhooks.py:app" }}]

[servers.socket]
port = 5000
"""

HELLO = '''\
"""A sample action: GET /api/hello?name=you."""

from ahtwist import Action, Input


class Hello(Action):
    name = "hello"
    description = "Greets someone by name"
    inputs = {"name": Input(required=True)}
    output_example = {"greeting": "Hello, you!"}

    def run(self, data):
        data.response["greeting"] = f"Hello, {data.params['name']}!"
'''

NOTES_ACTION = '''\
"""A sample action reading a raw text/plain body: POST /api/addNote."""

from ahtwist import Action, ActionError


class AddNote(Action):
    name = "addNote"
    description = "Appends the request body (text/plain) to the notes file"
    inputs = {}

    def run(self, data):
        text = data.connection.raw.raw_body.decode("utf-8") if data.connection.raw else ""
        if not text.strip():
            raise ActionError("send the note as a text/plain body")
        notes = data.node.app.notes
        notes.write(text.rstrip("\\n") + "\\n")
        notes.flush()
        data.response["saved"] = len(text)
'''

NOTES_INITIALIZER = '''\
"""A sample initializer: opens the notes file at start, closes it at stop
(after the last in-flight request finished)."""

import os

from twisted.logger import Logger

from ahtwist import Initializer

log = Logger(namespace="app.notes")


class Notes(Initializer):
    name = "notes"

    def start(self, node):
        path = os.environ.get("NOTES_FILE", "notes.txt")
        node.app.notes = open(path, "a", encoding="utf-8")
        log.info("notes: opened {path}", path=path)

    def stop(self, node):
        node.app.notes.close()
        log.info("notes: closed")
'''

WEBHOOKS = '''\
"""A Klein app mounted at /hooks (see ahtwist.toml): POST /hooks/github
accepts a GitHub-style webhook whose HMAC-SHA256 signature is checked over
the raw body."""

import hashlib
import hmac
import json
import os

from klein import Klein

app = Klein()


def secret() -> bytes:
    return os.environ.get("WEBHOOK_SECRET", "change-me").encode()


@app.route("/github", methods=["POST"])
def github(request):
    body = request.content.read()
    expected = b"sha256=" + hmac.new(secret(), body, hashlib.sha256).hexdigest().encode()
    if not hmac.compare_digest(request.getHeader(b"x-hub-signature-256") or b"", expected):
        request.setResponseCode(401)
        return b"bad signature"
    event = json.loads(body)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps({"ok": True, "event": event.get("action")}).encode()
'''

INDEX = """\
<!doctype html>
<title>{name}</title>
<h1>{name}</h1>
<p>Served by ahtwist. Try <a href="/api/hello?name=you">/api/hello?name=you</a>,
<a href="/healthz">/healthz</a> or the <a href="/chat.html">chat demo</a>.</p>
"""

CONFTEST = '''\
"""Fixtures for the app's tests."""

from pathlib import Path

import pytest

from ahtwist.testing import AppTester, Twistd

CONFIG = Path(__file__).resolve().parent.parent / "ahtwist.toml"


@pytest.fixture
def app(tmp_path, monkeypatch):
    """The app in memory (actions, initializers started), stopped after the test."""
    monkeypatch.setenv("NOTES_FILE", str(tmp_path / "notes.txt"))
    with AppTester(CONFIG) as tester:
        yield tester


@pytest.fixture
def server(tmp_path):
    """The app in a real twistd process on a free 127.0.0.1 port."""
    process = Twistd("--config", str(CONFIG), "--socket", "none", cwd=tmp_path)
    with process:
        yield process
'''

TEST_APP = '''\
"""The app's actions and endpoints, tested in memory with ahtwist.testing."""

import hashlib
import hmac
import json
import urllib.request


def test_hello(app):
    assert app.run_action("hello", {"name": "you"}) == {"greeting": "Hello, you!"}
    assert app.run_action("hello", {}, connection_type="socket") == {
        "error": "name is a required parameter for this action"
    }


def test_add_note_reads_the_text_body(app, tmp_path):
    response = app.http().request(
        "POST", "/api/addNote", headers={"Content-Type": "text/plain"}, body="buy milk"
    )
    assert (response.status, response.json()["saved"]) == (200, 8)
    assert (tmp_path / "notes.txt").read_text() == "buy milk\\n"


def test_webhook_checks_the_signature(app):
    body = json.dumps({"action": "opened"}).encode()
    signature = "sha256=" + hmac.new(b"change-me", body, hashlib.sha256).hexdigest()
    client = app.http()
    good = client.request("POST", "/hooks/github", headers={"X-Hub-Signature-256": signature}, body=body)
    assert (good.status, good.json()) == (200, {"ok": True, "event": "opened"})
    bad = client.request("POST", "/hooks/github", headers={"X-Hub-Signature-256": "sha256=0"}, body=body)
    assert (bad.status, bad.body) == (401, b"bad signature")


def test_over_the_socket_protocol(app):
    client = app.socket()
    [line] = client.ask(b"hello\\n")
    assert json.loads(line)["error"] == "name is a required parameter for this action"


def test_real_server(server):
    with urllib.request.urlopen(server.url("/api/hello?name=e2e")) as reply:
        assert json.load(reply)["greeting"] == "Hello, e2e!"
'''

UNIT = """\
# {name} under systemd.  Install:
#   sudo cp {unit_path} /etc/systemd/system/
#   sudo systemctl daemon-reload && sudo systemctl enable --now {name}
[Unit]
Description={name} (ahtwist)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User={user}
WorkingDirectory={app}
ExecStart={twistd} -n --pidfile= ahtwist --config {config}
Restart=on-failure
RestartSec=2
KillSignal=SIGTERM
TimeoutStopSec=7
NoNewPrivileges=yes
ProtectSystem=strict
# read-only (not yes): the app and its venv may live under /home
ProtectHome=read-only
ReadWritePaths={app}
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
"""


def unit_name(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", path.name).strip("-.") or "app"


def create_app(directory: str | os.PathLike[str], twistd: str | None = None) -> list[Path]:
    """Write a new app into ``directory`` (which must be empty or absent);
    returns the files written."""
    app = Path(directory).resolve()
    if app.exists() and any(app.iterdir()):
        raise FileExistsError(f"{app} is not empty")
    name = unit_name(app)
    config = app / "ahtwist.toml"
    twistd = twistd or str(Path(sys.executable).parent / "twistd")
    unit_path = app / "systemd" / f"{name}.service"
    try:
        user = os.getlogin()
    except OSError:
        import pwd

        user = pwd.getpwuid(os.getuid()).pw_name
    files = {
        config: CONFIG.format(name=name, token=secrets.token_hex(16), config=config),
        app / "actions" / "hello.py": HELLO,
        app / "actions" / "notes.py": NOTES_ACTION,
        app / "initializers" / "notes.py": NOTES_INITIALIZER,
        app / "webhooks.py": WEBHOOKS,
        app / "public" / "index.html": INDEX.format(name=name),
        app / "tests" / "conftest.py": CONFTEST,
        app / "tests" / "test_app.py": TEST_APP,
        unit_path: UNIT.format(
            name=name, app=app, config=config, twistd=twistd, user=user, unit_path=unit_path
        ),
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
    return list(files)


def main(argv: list[str] | None = None) -> int:
    """The ``ahtwist`` console script."""
    parser = argparse.ArgumentParser(prog="ahtwist", description="ahtwist application tools")
    parser.add_argument("--version", action="version", version=f"ahtwist {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    new = commands.add_parser("new", help="create a new app in DIR")
    new.add_argument("directory", metavar="DIR")
    args = parser.parse_args(argv)
    try:
        written = create_app(args.directory)
    except (FileExistsError, OSError) as e:
        sys.stderr.write(f"ahtwist: {e}\n")
        return 1
    app = written[0].parent
    sys.stdout.write(
        f"created {app}\n"
        f"  run it:   twistd -n --pidfile= ahtwist --config {app / 'ahtwist.toml'}\n"
        f"  test it:  cd {app} && python -m pytest\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
