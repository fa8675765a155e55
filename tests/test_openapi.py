"""The OpenAPI 3.1 document: built from the actions, their inputs and the routes."""

import json
import re

from openapi_spec_validator import validate
from twisted.trial.unittest import SynchronousTestCase

from ahtwist import Action, Input, json_schema
from ahtwist.actions.builtin.sleep_test import parse_int
from ahtwist.errors import ConfigError
from ahtwist.node import Node
from ahtwist.openapi import build_openapi
from ahtwist.tap import build_node
from tests.helpers import REPO, ManualClock, config_from, make_node

ROUTES = f"""
[general.paths]
actions = ["{REPO / "actions"}"]

[[routes.get]]
path = "/users/:userID"
action = "greet"

[[routes.post]]
path = '/login/:userID(^(\\d{{3}}|admin)$)'
action = "cacheTest"

[[routes.delete]]
path = "/cache/:key"
action = "cacheTest"
apiVersion = 1

[[routes.get]]
path = "/files/:path(^.*$)"
action = "file"
matchTrailingPathParts = true

[[routes.get]]
path = "/assets"
dir = "."
matchTrailingPathParts = true
"""

ERRORS = {
    "400": {"$ref": "#/components/responses/Error400"},
    "404": {"$ref": "#/components/responses/Error404"},
    "422": {"$ref": "#/components/responses/Error422"},
    "500": {"$ref": "#/components/responses/Error500"},
}
METADATA = {
    "serverInformation": {"$ref": "#/components/schemas/ServerInformation"},
    "requesterInformation": {"$ref": "#/components/schemas/RequesterInformation"},
}


def sample_node(text: str = ROUTES) -> Node:
    """The built-in actions, the sample action (actions/greet.py) and the routes above."""
    node = build_node(config_from(text), ManualClock())
    node.load_plugins()
    return node


def document_for(node: Node) -> dict:
    document = build_openapi(node.registry, node.config)
    # what is served is JSON: the document must survive the round trip as it is
    return json.loads(json.dumps(document))


class Hidden(Action):
    name = "hidden"
    description = "not in the documentation"
    to_document = False

    def run(self, data):
        pass


class Versioned(Action):
    name = "versioned"
    description = "the first version"
    version = 1
    inputs = {"a": Input(required=True)}

    def run(self, data):
        pass


@json_schema({"minimum": 1})
def positive(value):
    return True if value > 0 else "must be positive"


class VersionedTwo(Versioned):
    description = "the second version"
    version = 2
    inputs = {
        "where": Input(
            required=True,
            schema={"lat": Input(required=True, formatter=float), "label": Input(default="here")},
        ),
        "count": Input(formatter=parse_int, validator=positive),
        "mode": Input(default="fast", json_schema={"enum": ["fast", "slow"]}, formatter=str),
        "computed": Input(default=lambda: 3),
    }
    output_example = {"ok": True, "items": [{"n": 1.5}], "none": None}


class DocumentTests(SynchronousTestCase):
    def setUp(self):
        self.node = sample_node()
        self.document = document_for(self.node)

    def test_valid_openapi_3_1(self):
        validate(self.document)
        self.assertEqual(self.document["openapi"], "3.1.0")
        self.assertEqual(self.document["info"]["title"], "ahtwist")
        self.assertEqual(self.document["info"]["version"], "0.1.0")

    def test_one_operation_per_documented_action_and_route(self):
        operations = {
            (path, verb): operation["operationId"]
            for path, item in self.document["paths"].items()
            for verb, operation in item.items()
        }
        self.assertEqual(
            operations,
            {
                ("/api/cacheTest", "get"): "cacheTest",
                ("/api/createChatRoom", "get"): "createChatRoom",
                ("/api/file", "get"): "file",
                ("/api/greet", "get"): "greet",
                ("/api/randomNumber", "get"): "randomNumber",
                ("/api/showDocumentation", "get"): "showDocumentation",
                ("/api/sleepTest", "get"): "sleepTest",
                ("/api/status", "get"): "status",
                ("/api/users/{userID}", "get"): "get_users_userID",
                ("/api/login/{userID}", "post"): "post_login_userID",
                ("/api/cache/{key}", "delete"): "delete_cache_key",
                ("/api/files/{path}", "get"): "get_files_path",
            },
        )
        # the same selection as showDocumentation
        self.assertEqual(
            sorted(p.split("/")[-1] for p in self.document["paths"] if p.count("/") == 2),
            sorted(self.node.registry.documentation()),
        )

    def test_sample_action_exactly(self):
        self.assertEqual(
            self.document["paths"]["/api/greet"],
            {
                "get": {
                    "operationId": "greet",
                    "summary": "greet (version 1)",
                    "description": "Greets someone by name",
                    "tags": ["actions"],
                    "parameters": [
                        {
                            "name": "name",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The action's reply",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {"greeting": {"type": "string"}, **METADATA},
                                        "required": ["serverInformation", "requesterInformation"],
                                    },
                                    "example": {"greeting": "Hello, world!"},
                                }
                            },
                        },
                        **ERRORS,
                    },
                    "x-ahtwist-action": {"name": "greet", "version": 1},
                }
            },
        )

    def test_builtin_inputs_exactly(self):
        def parameters(path, verb="get"):
            return self.document["paths"][path][verb].get("parameters")

        self.assertEqual(
            parameters("/api/cacheTest"),
            [
                {
                    "name": "key",
                    "in": "query",
                    "required": True,
                    "schema": {"type": "string", "minLength": 3},
                },
                {
                    "name": "value",
                    "in": "query",
                    "required": True,
                    "schema": {"type": "string", "minLength": 3},
                },
            ],
        )
        # required, but the default fills it in: not required of the client
        self.assertEqual(
            parameters("/api/sleepTest"),
            [
                {
                    "name": "sleepDuration",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 0, "default": 1000},
                }
            ],
        )
        self.assertEqual(
            parameters("/api/file"),
            [{"name": "fileName", "in": "query", "required": True, "schema": {}}],
        )
        self.assertIsNone(parameters("/api/status"))

    def test_routes_exactly(self):
        users = self.document["paths"]["/api/users/{userID}"]["get"]
        self.assertEqual(
            (users["summary"], users["tags"], users["parameters"], users["x-ahtwist-route"]),
            (
                "GET /users/:userID -> greet",
                ["routes"],
                [
                    {
                        "name": "userID",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {"name": "name", "in": "query", "required": True, "schema": {"type": "string"}},
                ],
                {"path": "/users/:userID", "action": "greet"},
            ),
        )
        login = self.document["paths"]["/api/login/{userID}"]["post"]
        self.assertEqual(
            login["parameters"],
            [
                {
                    "name": "userID",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^(\\d{3}|admin)$"},
                }
            ],
        )
        body_schema = {
            "type": "object",
            "properties": {
                "key": {"type": "string", "minLength": 3},
                "value": {"type": "string", "minLength": 3},
            },
            "required": ["key", "value"],
        }
        self.assertEqual(
            login["requestBody"],
            {
                "required": True,
                "content": {
                    "application/json": {"schema": body_schema},
                    "application/x-www-form-urlencoded": {"schema": body_schema},
                },
            },
        )
        delete = self.document["paths"]["/api/cache/{key}"]["delete"]
        self.assertEqual(
            [p["name"] for p in delete["parameters"]], ["key", "value"]
        )  # the path variable replaces the input of the same name
        self.assertEqual(
            delete["x-ahtwist-route"],
            {"path": "/cache/:key", "action": "cacheTest", "apiVersion": 1},
        )
        files = self.document["paths"]["/api/files/{path}"]["get"]
        self.assertEqual(
            files["x-ahtwist-route"],
            {"path": "/files/:path(^.*$)", "action": "file", "matchTrailingPathParts": True},
        )

    def test_envelope_components(self):
        components = self.document["components"]
        self.assertEqual(
            components["schemas"]["ErrorReply"],
            {
                "type": "object",
                "properties": {"error": {"$ref": "#/components/schemas/ErrorText"}, **METADATA},
                "required": ["error", "serverInformation", "requesterInformation"],
            },
        )
        self.assertEqual(
            sorted(components["schemas"]["ServerInformation"]["properties"]),
            ["apiVersion", "currentTime", "requestDuration", "serverName"],
        )
        self.assertEqual(
            components["responses"]["Error404"]["description"],
            "Unknown action or invalid apiVersion.",
        )

    def test_transports(self):
        self.assertEqual(self.document["x-ahtwist-transports"]["websocket"]["path"], "/ws")
        self.assertEqual(
            self.document["x-ahtwist-transports"]["socket"]["listeners"],
            [{"kind": "tcp", "tls": False, "port": 5000}],
        )
        description = self.document["info"]["description"]
        self.assertIn("**WebSocket** at `/ws`", description)
        self.assertIn("**TCP socket** on port 5000:", description)


class SelectionTests(SynchronousTestCase):
    def test_undocumented_actions_left_out(self):
        node = make_node(plugins=[Hidden])
        document = document_for(node)
        self.assertIn("hidden", node.registry.latest)
        self.assertNotIn("/api/hidden", document["paths"])
        self.assertNotIn("hidden", node.registry.documentation())

    def test_undocumented_route_target_left_out(self):
        node = make_node('[[routes.get]]\npath = "/h"\naction = "hidden"\n', plugins=[Hidden])
        self.assertNotIn("/api/h", document_for(node)["paths"])

    def test_versions_nested_inputs_and_declared_types(self):
        node = make_node(plugins=[Versioned, VersionedTwo])
        document = document_for(node)
        validate(document)
        old = document["paths"]["/api/versioned?apiVersion=1"]["get"]
        self.assertEqual(
            (old["operationId"], old["description"], old["x-ahtwist-action"]),
            ("versioned_v1", "the first version", {"name": "versioned", "version": 1}),
        )
        latest = document["paths"]["/api/versioned"]["get"]
        self.assertEqual(latest["operationId"], "versioned")
        self.assertEqual(
            latest["parameters"],
            [
                {
                    "name": "where",
                    "in": "query",
                    "required": True,
                    "style": "deepObject",
                    "explode": True,
                    "schema": {
                        "type": "object",
                        "properties": {
                            "lat": {"type": "number"},
                            "label": {"default": "here"},
                        },
                        "required": ["lat"],
                    },
                },
                {
                    "name": "count",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1},
                },
                {
                    "name": "mode",
                    "in": "query",
                    "required": False,
                    "schema": {"enum": ["fast", "slow"], "default": "fast"},
                },
                {"name": "computed", "in": "query", "required": False, "schema": {}},
            ],
        )
        self.assertEqual(
            latest["responses"]["200"]["content"]["application/json"],
            {
                "schema": {
                    "type": "object",
                    "properties": {
                        "ok": {"type": "boolean"},
                        "items": {
                            "type": "array",
                            "items": {"type": "object", "properties": {"n": {"type": "number"}}},
                        },
                        "none": {"type": "null"},
                        **METADATA,
                    },
                    "required": ["serverInformation", "requesterInformation"],
                },
                "example": {"ok": True, "items": [{"n": 1.5}], "none": None},
            },
        )

    def test_query_routing_only(self):
        node = make_node(
            "[servers.web]\nsimpleRouting = false\n", plugins=[Versioned, VersionedTwo]
        )
        paths = document_for(node)["paths"]
        self.assertIn("/api?action=versioned", paths)
        self.assertIn("/api?action=versioned&apiVersion=1", paths)
        self.assertNotIn("/api/versioned", paths)

    def test_envelope_as_configured(self):
        node = make_node(
            "[servers.web]\nreturnErrorCodes = false\nurlPathForActions = 'v2/api'\n"
            "[servers.web.metadataOptions]\nserverInformation = false\nrequesterInformation = false\n"
        )
        document = document_for(node)
        validate(document)
        status = document["paths"]["/v2/api/status"]["get"]
        self.assertEqual(list(status["responses"]), ["200"])
        self.assertEqual(
            status["responses"]["200"]["content"]["application/json"]["schema"]["properties"][
                "error"
            ],
            {"$ref": "#/components/schemas/ErrorText"},
        )
        self.assertNotIn(
            "required", status["responses"]["200"]["content"]["application/json"]["schema"]
        )
        self.assertEqual(sorted(document["components"]["schemas"]), ["ErrorReply", "ErrorText"])
        self.assertNotIn("responses", document["components"])

    def test_no_socket_no_websocket(self):
        node = make_node(
            "[servers.socket]\nenabled = false\n[servers.websocket]\nenabled = false\n"
        )
        document = document_for(node)
        self.assertEqual(document["x-ahtwist-transports"], {})
        self.assertNotIn("WebSocket", document["info"]["description"])


class ConfigTests(SynchronousTestCase):
    def error(self, text: str) -> str:
        with self.assertRaises(ConfigError) as e:
            config_from(text)
        return str(e.exception).split(": ", 1)[1]

    def test_defaults(self):
        web = config_from("").servers.web
        self.assertEqual((web.openapi.enabled, web.openapi.path), (True, "/api/openapi.json"))
        self.assertEqual((web.docs.enabled, web.docs.path), (True, "/docs"))

    def test_bad_paths(self):
        self.assertEqual(
            self.error('[servers.web.openapi]\npath = "openapi.json"\n'),
            'servers.web.openapi.path: must start with "/" and name a path (no ? or #)',
        )
        self.assertEqual(
            self.error('[servers.web.docs]\npath = "/ws"\n'),
            "servers.web.docs.path: '/ws' is already servers.websocket.path",
        )
        self.assertEqual(
            self.error('[servers.web.docs]\npath = "/api/openapi.json"\n'),
            "servers.web.docs.path: '/api/openapi.json' is already servers.web.openapi.path",
        )
        self.assertEqual(
            self.error("[servers.web.openapi]\nenabled = false\n"),
            "servers.web.docs.enabled: the docs page needs servers.web.openapi.enabled = true",
        )
        web = config_from(
            "[servers.web.openapi]\nenabled = false\n[servers.web.docs]\nenabled = false\n"
        ).servers.web
        self.assertEqual((web.openapi.enabled, web.docs.enabled), (False, False))


class OpenAPIPageTests(SynchronousTestCase):
    """docs/openapi.md's example declares the types it says it does."""

    def test_declaring_input_types_example(self):
        page = (REPO / "docs" / "openapi.md").read_text("utf-8")
        (code,) = [b for b in re.findall(r"^```python\n(.*?)^```", page, re.M | re.S) if "class Search" in b]
        namespace: dict = {}
        exec(compile(code, "docs/openapi.md", "exec"), namespace)
        node = make_node(plugins=[namespace["Search"]])
        parameters = document_for(node)["paths"]["/api/search"]["get"]["parameters"]
        self.assertEqual(
            parameters,
            [
                {"name": "q", "in": "query", "required": True, "schema": {"type": "string", "maxLength": 20}},
                {
                    "name": "page",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "default": 1},
                },
                {
                    "name": "order",
                    "in": "query",
                    "required": False,
                    "schema": {"enum": ["asc", "desc"], "default": "asc"},
                },
            ],
        )
        self.assertIn(
            "documents `q` as `{\"type\": \"string\", \"maxLength\": 20}` (required), `page` as\n"
            "`{\"type\": \"integer\", \"minimum\": 1, \"default\": 1}` and `order` as\n"
            "`{\"enum\": [\"asc\", \"desc\"], \"default\": \"asc\"}`.",
            page,
        )
        # and the action runs as declared
        self.assertEqual(namespace["positive_int"]("0"), 1)
        self.assertEqual(namespace["short"]("x" * 21), "at most 20 characters")
