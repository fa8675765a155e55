"""The OpenAPI document and /docs over HTTP (the real site, in memory), served as
Klein routes through the web server's mount table."""

import json
import tempfile
from pathlib import Path

from openapi_spec_validator import validate
from twisted.trial.unittest import SynchronousTestCase

from ahtwist import Action
from ahtwist.errors import ConfigError
from ahtwist.openapi import build_openapi
from ahtwist.web.api import WebServer
from tests.helpers import HTTPClient, make_node
from tests.test_openapi import sample_node


class OpenAPIJson(Action):
    """An action whose name collides with the document's default path."""

    name = "openapi.json"
    description = "an action named like the document"

    def run(self, data):
        data.response["action"] = "ran"


class Late(Action):
    name = "late"
    description = "registered after start-up"

    def run(self, data):
        pass


def client_for(node) -> HTTPClient:
    """An HTTP client of the node's web server (its mount table holds the document)."""
    return HTTPClient(node, WebServer(node))


class ServedDocumentTests(SynchronousTestCase):
    def test_document_served_at_the_default_path(self):
        node = sample_node()
        response = client_for(node).get("/api/openapi.json")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("Content-Type"), "application/json; charset=utf-8")
        document = response.json()
        validate(document)
        self.assertEqual(document, json.loads(json.dumps(build_openapi(node.registry, node.config))))
        self.assertIn("/api/greet", document["paths"])
        self.assertIn("/api/users/{userID}", document["paths"])

    def test_head(self):
        response = client_for(sample_node()).request("HEAD", "/api/openapi.json")
        self.assertEqual((response.status, response.body), (200, b""))

    def test_document_path_wins_over_an_action_of_that_name(self):
        client = client_for(make_node(plugins=[OpenAPIJson]))
        self.assertEqual(client.get("/api/openapi.json").json()["openapi"], "3.1.0")
        reply = client.get("/api?action=openapi.json").json()
        self.assertEqual(reply["action"], "ran")

    def test_configured_path(self):
        client = client_for(make_node("[servers.web.openapi]\npath = '/openapi.json'\n"))
        self.assertEqual(client.get("/openapi.json").json()["openapi"], "3.1.0")
        response = client.get("/api/openapi.json")
        self.assertEqual(response.status, 404)
        self.assertEqual(response.json()["error"], "unknown action or invalid apiVersion")

    def test_built_once_at_start(self):
        node = make_node()
        client = client_for(node)
        first = client.get("/api/openapi.json").body
        node.registry.add(Late)
        second = client.get("/api/openapi.json").body
        self.assertEqual(first, second)
        self.assertNotIn(b"/api/late", second)

    def test_docs_page(self):
        response = client_for(make_node()).get("/docs")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("Content-Type"), "text/html; charset=utf-8")
        page = response.body.decode()
        self.assertIn('<script src="/docs/swagger-ui-bundle.js"></script>', page)
        self.assertIn('<link rel="stylesheet" href="/docs/swagger-ui.css">', page)
        self.assertIn('  url: "/api/openapi.json",', page)
        self.assertIn("<title>ahtwist - API documentation</title>", page)
        self.assertNotIn("http://", page)  # no CDN
        self.assertNotIn("https://", page)

    def test_unknown_asset(self):
        response = client_for(make_node()).get("/docs/swagger-editor.js")
        self.assertEqual((response.status, response.body), (404, b"Not Found"))


class SwitchedOffTests(SynchronousTestCase):
    def test_both_off(self):
        client = client_for(
            make_node(
                "[servers.web.openapi]\nenabled = false\n[servers.web.docs]\nenabled = false\n"
            )
        )
        response = client.get("/api/openapi.json")
        self.assertEqual(response.status, 404)
        self.assertEqual(response.json()["error"], "unknown action or invalid apiVersion")
        response = client.get("/docs")
        self.assertEqual((response.status, response.body), (404, b"That file is not found"))
        response = client.get("/docs/swagger-ui.css")
        self.assertEqual((response.status, response.body), (404, b"That file is not found"))

    def test_off_frees_the_path_for_the_action(self):
        client = client_for(
            make_node(
                "[servers.web.openapi]\nenabled = false\n[servers.web.docs]\nenabled = false\n",
                plugins=[OpenAPIJson],
            )
        )
        self.assertEqual(client.get("/api/openapi.json").json()["action"], "ran")

    def test_docs_off_document_on(self):
        client = client_for(make_node("[servers.web.docs]\nenabled = false\n"))
        self.assertEqual(client.get("/api/openapi.json").status, 200)
        response = client.get("/docs")
        self.assertEqual((response.status, response.body), (404, b"That file is not found"))


class MountTests(SynchronousTestCase):
    def test_mounted_as_klein_apps(self):
        """Both are entries of the mount table (listed at start-up with the others);
        the document's is the one mount allowed under the action prefix."""
        server = WebServer(make_node())
        mounts = {m.name: (m.path, m.strip) for m in server.mounts.mounts}
        self.assertEqual(mounts["openapi"], ("/api/openapi.json", False))
        self.assertEqual(mounts["docs"], ("/docs", False))

    def test_a_user_mount_cannot_take_the_docs_path(self):
        with self.assertRaises(ConfigError) as e:
            WebServer(
                make_node("[[servers.web.mounts]]\npath = '/docs'\napp = 'tests.test_apidocs:user_app'\n")
            )
        self.assertEqual(str(e.exception), "mount '/docs' is defined twice")

    def test_a_static_file_of_the_same_path_wins(self):
        """As for every mount: with rootEndpointType "file" the public folders come first."""
        public = tempfile.mkdtemp(prefix="ahtwist-public-")
        Path(public, "docs").write_text("my own docs")
        client = client_for(make_node(public=(public,)))
        response = client.get("/docs")
        self.assertEqual((response.status, response.body), (200, b"my own docs"))
        self.assertEqual(client.get("/api/openapi.json").status, 200)


def user_app(node):
    """A user's mount target (for the clash test; never served)."""
    from klein import Klein

    return Klein()
