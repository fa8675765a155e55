"""``/docs`` (Swagger UI) in headless Chromium against a real ``twistd ahtwist``.

The server runs the built-in actions, the sample action (``actions/greet.py``)
and routes; the page must list every operation of the document, load nothing
from another host, and run an action through "Try it out".  Set
``AHTWIST_DOCS_SCREENSHOT=/path/file.png`` to keep a screenshot of the page.
"""

import json
import os
import re
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ahtwist.apidocs import ASSETS, swagger_ui_dir
from tests.e2e.twistd import AhtwistProcess
from tests.helpers import REPO
from tests.test_openapi import ROUTES

OPERATIONS = {
    # (tag, operationId): path as Swagger UI shows it
    ("actions", "cacheTest"): "/api/cacheTest",
    ("actions", "createChatRoom"): "/api/createChatRoom",
    ("actions", "file"): "/api/file",
    ("actions", "greet"): "/api/greet",
    ("actions", "randomNumber"): "/api/randomNumber",
    ("actions", "showDocumentation"): "/api/showDocumentation",
    ("actions", "sleepTest"): "/api/sleepTest",
    ("actions", "status"): "/api/status",
    ("routes", "get_users_userID"): "/api/users/{userID}",
    ("routes", "post_login_userID"): "/api/login/{userID}",
    ("routes", "delete_cache_key"): "/api/cache/{key}",
    ("routes", "get_files_path"): "/api/files/{path}",
}


@pytest.fixture(scope="module")
def server():
    directory = Path(tempfile.mkdtemp(prefix="ahtwist-docs-"))
    config = directory / "ahtwist.toml"
    config.write_text(ROUTES, "utf-8")
    process = AhtwistProcess(config=str(config)).start()
    yield process
    process.cleanup()


def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, dict(response.headers), response.read()


def test_curl_example_of_the_page(server):
    """docs/openapi.md's curl line prints what the page shows."""
    page = (REPO / "docs" / "openapi.md").read_text("utf-8")
    command, shown = re.search(r"```sh\n(.*?)\n```\n\n```\n(.*?)\n```", page, re.S).groups()
    result = subprocess.run(
        command.replace("localhost:8080", f"127.0.0.1:{server.port}"),
        shell=True, capture_output=True, text=True, timeout=30,
    )
    assert result.stdout == shown


def test_assets_come_from_the_installed_package(server):
    folder = swagger_ui_dir()
    for name, mime in ASSETS.items():
        status, headers, body = fetch(f"{server.http_url}/docs/{name}")
        assert (status, headers["Content-Type"]) == (200, mime)
        assert body == (folder / name).read_bytes()


def test_docs_lists_every_operation_and_runs_an_action(browser, server):  # noqa: F811
    document = json.loads(fetch(f"{server.http_url}/api/openapi.json")[2])
    operations = {
        (operation["tags"][0], operation["operationId"]): path
        for path, item in document["paths"].items()
        for operation in item.values()
    }
    assert operations == OPERATIONS

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    hosts = []
    page.on("request", lambda request: hosts.append(urlsplit(request.url).netloc))
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(f"{server.http_url}/docs")
        page.wait_for_selector(".opblock", timeout=20000)
        shown = page.evaluate(
            """() => Array.from(document.querySelectorAll('.opblock')).map(block => [
                block.id,
                block.querySelector('.opblock-summary-method').textContent,
                block.querySelector('.opblock-summary-path').getAttribute('data-path'),
            ])"""
        )
        expected = [
            [f"operations-{tag}-{operation_id}", method.upper(), path]
            for path, item in document["paths"].items()
            for method, operation in item.items()
            for tag, operation_id in [(operation["tags"][0], operation["operationId"])]
        ]
        assert sorted(shown) == sorted(expected)
        assert page.inner_text(".info .title").startswith("ahtwist")
        screenshot = os.environ.get("AHTWIST_DOCS_SCREENSHOT")
        if screenshot:
            page.screenshot(path=screenshot, full_page=True)

        # "Try it out" on the sample action: the browser calls the real server
        block = page.locator("#operations-actions-greet")
        block.locator(".opblock-summary").click()
        block.locator("button.try-out__btn").click()
        block.locator("tr[data-param-name='name'] input").fill("world")
        block.locator("button.execute").click()
        body = block.locator(".responses-wrapper .live-responses-table .response-col_description pre")
        body.first.wait_for(timeout=20000)
        reply = json.loads(body.first.inner_text())
        assert reply["greeting"] == "Hello, world!"
        assert reply["requesterInformation"]["receivedParams"] == {
            "name": "world",
            "action": "greet",
            "apiVersion": 1,
        }
    finally:
        page.close()
    assert errors == []
    assert set(hosts) == {f"127.0.0.1:{server.port}"}  # no CDN, nothing from elsewhere
