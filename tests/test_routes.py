"""REST routes (docs/protocol-http.md, 'Routes') through the HTTP API, and the route table alone."""

import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from ahtwist import Action, Input
from ahtwist.errors import ConfigError
from tests.helpers import HTTPClient, config_from, make_node


class Show(Action):
    """Shows what it received and which route matched."""

    name = "show"
    description = "show params"
    version = 1
    inputs = {"userID": Input(), "key": Input(), "path": Input(), "x": Input()}

    def run(self, data):
        route = data.connection.matched_route
        data.response["params"] = {k: v for k, v in data.params.items() if k != "apiVersion"}
        data.response["version"] = 1
        data.response["route"] = route.path if route else None


class ShowV2(Show):
    version = 2

    def run(self, data):
        super().run(data)
        data.response["version"] = 2


class Other(Action):
    name = "other"
    description = "another action"

    def run(self, data):
        data.response["other"] = True


ROUTES = r"""
[[routes.get]]
path = "/users"
action = "other"

[[routes.get]]
path = "/user/:userID"
action = "show"

[[routes.post]]
path = '/login/:userID(^(\d{3}|admin)$)'
action = "show"

[[routes.all]]
path = "/everything/:key"
action = "show"
apiVersion = 1

[[routes.get]]
path = "/a/wild/:key/:path(^.*$)"
action = "show"
matchTrailingPathParts = true

[[routes.get]]
path = "/CaSe/Literal"
action = "other"

[[routes.get]]
path = "/randomNumber"
action = "other"

[[routes.head]]
path = "/headonly"
action = "other"

[[routes.get]]
path = "/first/:x"
action = "show"

[[routes.get]]
path = "/first/:x"
action = "other"
"""


class RouteTests(SynchronousTestCase):
    def setUp(self):
        self.client = HTTPClient(make_node(ROUTES, plugins=[Show, ShowV2, Other]))

    def get(self, path, method="GET"):
        r = self.client.request(method, path)
        return r, (r.json() if r.body else None)

    def test_param_capture_and_matched_route(self):
        r, body = self.get("/api/user/123")
        self.assertEqual(body["params"], {"userID": "123", "action": "show"})
        self.assertEqual(body["route"], "/user/:userID")
        self.assertEqual(body["version"], 2)  # no route apiVersion: the highest

    def test_route_variable_overrides_query(self):
        _, body = self.get("/api/user/1?userID=2")
        self.assertEqual(body["params"]["userID"], "1")

    def test_empty_part_never_matches(self):
        r, body = self.get("/api/user/")
        self.assertEqual((r.status, body["error"]), (404, "unknown action or invalid apiVersion"))

    def test_regex_param(self):
        for value in ("123", "admin"):
            r, body = self.get(f"/api/login/{value}", "POST")
            self.assertEqual(body["params"]["userID"], value)
        r, body = self.get("/api/login/1234", "POST")
        self.assertEqual((r.status, body["error"]), (404, "unknown action or invalid apiVersion"))
        r, _ = self.get("/api/login/123", "GET")  # post-only route
        self.assertEqual(r.status, 404)

    def test_all_registers_every_verb(self):
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            r, body = self.get("/api/everything/abc", method)
            self.assertEqual((r.status, body["params"]["key"]), (200, "abc"), method)
        self.assertEqual(self.client.request("HEAD", "/api/everything/abc").status, 200)

    def test_route_api_version_only_when_client_sent_none(self):
        _, body = self.get("/api/everything/abc")
        self.assertEqual(body["version"], 1)
        _, body = self.get("/api/everything/abc?apiVersion=2")
        self.assertEqual(body["version"], 2)

    def test_match_trailing_path_parts(self):
        _, body = self.get("/api/a/wild/theKey/and/some/more/path")
        self.assertEqual(body["params"]["key"], "theKey")
        self.assertEqual(body["params"]["path"], "and/some/more/path")

    def test_literals_case_insensitive(self):
        r, body = self.get("/api/case/LITERAL")
        self.assertEqual(body, {"other": True, **{k: body[k] for k in ("serverInformation", "requesterInformation")}})

    def test_configured_route_shadows_simple_route(self):
        self.client.node.registry.add(type("RN", (Action,), {"name": "nothingElse", "description": "d", "run": lambda s, d: None}))
        _, body = self.get("/api/randomNumber")
        self.assertEqual(body["other"], True)
        self.assertNotIn("randomNumber", body)

    def test_top_down_first_match(self):
        _, body = self.get("/api/first/1")
        self.assertEqual(body["params"]["x"], "1")

    def test_real_query_action_beats_routes_fake_one_does_not(self):
        _, body = self.get("/api/user/123?action=other")
        self.assertEqual(body["other"], True)
        _, body = self.get("/api/user/123?action=fakeAction")
        self.assertEqual(body["params"]["userID"], "123")

    def test_head_routes_then_get_routes(self):
        self.assertEqual(self.client.request("HEAD", "/api/headonly").status, 200)
        self.assertEqual(self.client.request("GET", "/api/headonly").status, 404)
        self.assertEqual(self.client.request("HEAD", "/api/user/1").status, 200)

    def test_decoding_of_values(self):
        _, body = self.get("/api/user/a%20b+c")
        self.assertEqual(body["params"]["userID"], "a b c")
        _, body = self.get("/api/user/%E2%9C%93")
        self.assertEqual(body["params"]["userID"], "\u2713")
        r, body = self.get("/api/user/%zz")
        self.assertEqual(r.status, 200)
        self.assertNotIn("userID", body["params"])  # malformed: the variable is skipped

    def test_special_characters_in_values(self):
        _, body = self.get("/api/user/a.b-c$d")
        self.assertEqual(body["params"]["userID"], "a.b-c$d")

    def test_new_params_not_allowed_through_route_definitions(self):
        client = HTTPClient(make_node('[[routes.get]]\npath = "/thing/:notAnInput"\naction = "show"\n', plugins=[Show, ShowV2, Other]))
        body = client.get("/api/thing/x").json()
        self.assertNotIn("notAnInput", body["params"])
        self.assertEqual(body["requesterInformation"]["receivedParams"], {"action": "show", "apiVersion": 2})


class RoutesFileTests(SynchronousTestCase):
    def test_separate_routes_file(self):
        directory = tempfile.mkdtemp()
        Path(directory, "routes.toml").write_text('[[routes.get]]\npath = "/u/:userID"\naction = "show"\n')
        client = HTTPClient(make_node('routes = "routes.toml"\n', plugins=[Show, Other], directory=directory))
        self.assertEqual(client.get("/api/u/7").json()["params"]["userID"], "7")

    def test_missing_routes_file(self):
        with self.assertRaises(ConfigError) as e:
            config_from('routes = "nope.toml"\n')
        self.assertIn("routes: cannot read routes file", str(e.exception))


class DirRouteTests(SynchronousTestCase):
    def setUp(self):
        self.directory = Path(tempfile.mkdtemp())
        special = self.directory / "static" / "special"
        (special / "sub").mkdir(parents=True)
        (special / "x.html").write_bytes(b"special x")
        (special / "sub" / "y.txt").write_bytes(b"deep y")
        (self.directory / "static" / "outside.txt").write_bytes(b"outside")
        text = (
            '[[routes.get]]\npath = "/my/public/route"\ndir = "static/special"\nmatchTrailingPathParts = true\n'
            '[[routes.get]]\npath = "/exact"\ndir = "static/special"\n'
        )
        self.client = HTTPClient(make_node(text, directory=str(self.directory)))

    def test_files_below_the_route(self):
        self.assertEqual(self.client.get("/my/public/route/x.html").body, b"special x")
        self.assertEqual(self.client.get("/my/public/route/sub/y.txt").body, b"deep y")
        self.assertEqual(self.client.get("/MY/Public/route/x.html").body, b"special x")

    def test_containment_inside_dir(self):
        for path in ("/my/public/route/../../x", "/my/public/route/../outside.txt", "/my/public/route/%2e%2e/outside.txt"):
            r = self.client.get(path)
            self.assertEqual((r.status, r.body), (404, b"That file is not found"), path)

    def test_without_trailing_parts_no_file_below(self):
        self.assertEqual(self.client.get("/exact/x.html").status, 404)

    def test_dir_routes_only_in_file_mode(self):
        self.assertEqual(self.client.get("/api/my/public/route/x.html").status, 404)
