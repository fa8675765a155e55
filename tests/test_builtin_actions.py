"""Built-in actions (docs/python-api.md, 'Built-in actions') and loading user actions from folders."""

import tempfile
import textwrap
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from ahtwist.actions.builtin.sleep_test import parse_int
from ahtwist.connection import Connection
from ahtwist.errors import ConfigError
from ahtwist.node import SOCKET_REQUESTS, WEB_REQUESTS
from tests.helpers import REPO, HTTPClient, make_node
from tests.test_actions import run


class StatusTests(SynchronousTestCase):
    def test_shape_and_counters(self):
        node = make_node('[general]\nid = "node-1"\n')
        node.reactor.advance(0.124)
        node.stats.increment(SOCKET_REQUESTS, 2)
        node.add_connection(Connection("socket", "127.0.0.1", 1, 0))
        node.add_connection(Connection("websocket", "127.0.0.1", 1, 0))
        client = HTTPClient(node)
        client.get("/api/randomNumber")
        body = client.get("/api/status").json()
        self.assertEqual(
            list(body)[:11],
            ["nodeStatus", "problems", "id", "ahtwistVersion", "uptime", "name", "description", "version",
             "consumedMemoryMB", "eventLoopDelay", "stats"],
        )
        self.assertEqual(body["nodeStatus"], "Node Healthy")
        self.assertEqual(body["problems"], [])
        self.assertEqual(body["id"], "node-1")
        self.assertEqual(body["uptime"], 124)
        self.assertEqual((body["name"], body["version"], body["ahtwistVersion"]), ("ahtwist", "0.1.0", "0.1.0"))
        self.assertEqual(body["description"], "ActionHero-compatible API server on Twisted")
        self.assertGreater(body["consumedMemoryMB"], 1)
        stats = body["stats"]
        # the same resident-memory reading, in bytes and in MB rounded to 2 places
        self.assertLessEqual(abs(stats["memoryConsumption"] - body["consumedMemoryMB"] * 1048576), 0.005 * 1048576)
        self.assertEqual(stats["id"], "node-1")
        self.assertEqual(stats["uptimeSeconds"], 0.124)
        self.assertEqual(stats["cache"], {"numberOfObjects": 0})
        self.assertEqual(stats["peers"], ["node-1"])
        self.assertEqual(stats["webServer"], {"numberOfLocalWebRequests": 2, "numberOfGlobalWebRequests": 2})
        self.assertEqual(
            stats["socketServer"],
            {"numberOfLocalSocketRequests": 2, "numberOfGlobalSocketRequests": 2, "numberOfLocalActiveSocketClients": 1},
        )
        self.assertEqual(
            stats["webSocketServer"],
            {"numberOfGlobalWebSocketRequests": 0, "numberOfLocalActiveWebSocketClients": 1},
        )
        self.assertEqual(node.stats.local(WEB_REQUESTS), 2)

    def test_problems(self):
        node = make_node()
        node.event_loop_delay = 12.5
        node.health_checks.append(lambda: ["Redis unavailable"])
        body = run(node, {"action": "status"}).response
        self.assertEqual(body["nodeStatus"], "Node Unhealthy")
        self.assertEqual(body["problems"], ["EventLoop Blocked for more than 10 ms", "Redis unavailable"])


class CacheTestTests(SynchronousTestCase):
    def test_results(self):
        node = make_node()
        data = run(node, {"action": "cacheTest", "key": "abc", "value": "def"})
        self.assertEqual(
            data.response,
            {
                "cacheTestResults": {
                    "saveResp": True,
                    "sizeResp": 1,
                    "loadResp": {
                        "key": "cacheTest_abc",
                        "value": "def",
                        "expireTimestamp": 1795627011000,
                        "createdAt": 1795627006000,
                        "readAt": None,
                    },
                    "deleteResp": True,
                }
            },
        )

    def test_non_strings_become_json_text(self):
        data = run(make_node(), {"action": "cacheTest", "key": {"a": 1}, "value": [1, 2]})
        loaded = data.response["cacheTestResults"]["loadResp"]
        self.assertEqual((loaded["key"], loaded["value"]), ('cacheTest_{"a":1}', "[1,2]"))

    def test_validation(self):
        node = make_node()
        self.assertEqual(run(node, {"action": "cacheTest", "key": "ab", "value": "def"}).response, {"error": "inputs should be at least 3 letters long"})
        self.assertEqual(run(node, {"action": "cacheTest", "key": "abc", "value": "de"}).response, {"error": "inputs should be at least 3 letters long"})
        self.assertEqual(run(node, {"action": "cacheTest", "value": "de"}).response, {"error": "key is a required parameter for this action"})

    def test_cache_expiry(self):
        node = make_node()
        cache = node.cache
        self.successResultOf(cache.save("k", "v", 1000))
        self.assertEqual(self.successResultOf(cache.size()), 1)
        first = self.successResultOf(cache.load("k"))
        self.assertIsNone(first["readAt"])
        node.reactor.advance(0.5)
        self.assertEqual(self.successResultOf(cache.load("k"))["readAt"], 1795627006000)
        node.reactor.advance(0.5)
        self.assertEqual(str(self.failureResultOf(cache.load("k")).value), "Object expired")
        self.assertEqual(str(self.failureResultOf(cache.load("k")).value), "Object not found")
        self.assertEqual(self.successResultOf(cache.size()), 0)
        self.assertFalse(self.successResultOf(cache.destroy("k")))


class SleepTestTests(SynchronousTestCase):
    def test_sleeps_without_blocking(self):
        node = make_node()
        d = node.processor.process(Connection("socket", "1", 1, 0), {"action": "sleepTest", "sleepDuration": "10"})
        self.assertNoResult(d)
        node.reactor.advance(0.010)
        self.assertEqual(
            self.successResultOf(d).response,
            {"sleepStarted": 1795627006000, "sleepEnded": 1795627006010, "sleepDelta": 10, "sleepDuration": 10},
        )

    def test_default_and_missing(self):
        node = make_node()
        d = node.processor.process(Connection("socket", "1", 1, 0), {"action": "sleepTest"})
        node.reactor.advance(1)
        self.assertEqual(self.successResultOf(d).response["sleepDuration"], 1000)
        self.assertEqual(
            run(node, {"action": "sleepTest", "sleepDuration": "abc"}).response,
            {"error": "sleepDuration is a required parameter for this action"},
        )

    def test_parse_int(self):
        cases = {"10": 10, " 42abc": 42, "-5": 0, "+7": 7, "0x1f": 31, "1.9": 1, 3.9: 3, "abc": None, "": None, True: None}
        for value, expected in cases.items():
            self.assertEqual(parse_int(value), expected, value)


class DocumentationTests(SynchronousTestCase):
    def test_show_documentation(self):
        doc = run(make_node(), {"action": "showDocumentation"}).response["documentation"]
        self.assertEqual(list(doc), sorted(doc))
        self.assertEqual(
            doc["sleepTest"],
            {
                "1": {
                    "name": "sleepTest",
                    "version": 1,
                    "description": "I will sleep and then return",
                    "inputs": {"sleepDuration": {"required": True, "default": 1000}},
                    "outputExample": {"sleepStarted": 1420953571322, "sleepEnded": 1420953572327, "sleepDelta": 1005, "sleepDuration": 1000},
                }
            },
        )
        self.assertEqual(doc["cacheTest"]["1"]["inputs"], {"key": {"required": True}, "value": {"required": True}})


class CreateChatRoomTests(SynchronousTestCase):
    def test_create(self):
        node = make_node()
        self.assertEqual(run(node, {"action": "createChatRoom", "name": "newRoom"}).response, {})
        self.assertTrue(self.successResultOf(node.rooms.exists("newRoom")))
        again = run(node, {"action": "createChatRoom", "name": "newRoom"})
        self.assertEqual((again.response, again.action_status), ({"error": "room exists"}, "action_error"))


class LoaderTests(SynchronousTestCase):
    def folder(self, files):
        directory = Path(tempfile.mkdtemp())
        for name, text in files.items():
            (directory / name).write_text(textwrap.dedent(text))
        return str(directory)

    def test_sample_action_folder(self):
        node = make_node()
        node.load_plugins([str(REPO / "actions")])
        self.assertEqual(run(node, {"action": "greet", "name": " world "}).response, {"greeting": "Hello, world!"})
        self.assertEqual(run(node, {"action": "greet", "name": "voldemort"}).response, {"error": "we do not say that name here"})
        r = HTTPClient(node).get("/api/greet?name=%20%20")
        self.assertEqual((r.status, r.json()["error"]), (400, "name must not be blank"))

    def test_loads_actions_and_middleware_defined_in_files(self):
        folder = self.folder(
            {
                "a.py": """
                    from ahtwist import Action, ActionMiddleware
                    from ahtwist.actions.builtin.random_number import RandomNumber  # imported: not registered again
                    class Tag(ActionMiddleware):
                        name = "tag"
                        def post_processor(self, data):
                            data.response["tagged"] = True
                    class One(Action):
                        name = "one"
                        description = "one"
                        middleware = ["tag"]
                        def run(self, data):
                            data.response["one"] = 1
                """,
                "_private.py": "raise SystemExit('never imported')",
                "notes.txt": "ignored",
            }
        )
        node = make_node()
        node.load_plugins([folder])
        self.assertEqual(run(node, {"action": "one"}).response, {"one": 1, "tagged": True})

    def test_broken_file(self):
        folder = self.folder({"bad.py": "x = 1\nraise ValueError('bad things')\n"})
        with self.assertRaises(ConfigError) as e:
            make_node().load_plugins([folder])
        self.assertEqual(str(e.exception), f"{folder}/bad.py (line 2): failed to load action file: ValueError: bad things")

    def test_syntax_error(self):
        folder = self.folder({"bad.py": "def (:\n"})
        with self.assertRaises(ConfigError) as e:
            make_node().load_plugins([folder])
        self.assertTrue(str(e.exception).startswith(f"{folder}/bad.py (line 1): failed to load action file: SyntaxError"), str(e.exception))

    def test_duplicate_across_files(self):
        action = "from ahtwist import Action\nclass X(Action):\n    name = 'dup'\n    description = 'd'\n    def run(self, data): pass\n"
        folder = self.folder({"a.py": action, "b.py": action})
        with self.assertRaises(ConfigError) as e:
            make_node().load_plugins([folder])
        self.assertEqual(str(e.exception), "Action dup version 1 is defined twice")

    def test_reserved_name_in_file(self):
        folder = self.folder({"a.py": "from ahtwist import Action\nclass X(Action):\n    name = 'say'\n    description = 'd'\n    def run(self, data): pass\n"})
        with self.assertRaises(ConfigError) as e:
            make_node().load_plugins([folder])
        self.assertEqual(str(e.exception), "say is a reserved verb for connections. choose a new name")


class RandomNumberTests(SynchronousTestCase):
    def test_text_matches_the_json_number_even_when_tiny(self):
        import random

        from ahtwist.encoding import dumps

        original = random.random
        random.random = lambda: 4.9376121682098706e-05
        try:
            response = run(make_node(), {"action": "randomNumber"}).response
        finally:
            random.random = original
        self.assertEqual(
            dumps(response),
            b'{"randomNumber":0.000049376121682098706,'
            b'"stringRandomNumber":"Your random number is 0.000049376121682098706"}',
        )
