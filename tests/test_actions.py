"""The action framework: definitions, versions, middleware, inputs, processing order."""

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from ahtwist import Action, ActionError, ActionMiddleware, ConnectionMiddleware, Input
from ahtwist.actions.registry import ActionRegistry
from ahtwist.connection import Connection
from ahtwist.errors import ConfigError
from tests.helpers import make_node


def run(node, params, connection=None, type="socket"):
    """Process an action and return the fired ActionData (fails if it waits)."""
    connection = connection or Connection(type, "127.0.0.1", 1, node.now_ms())
    results = []
    node.processor.process(connection, params, "mid").addBoth(results.append)
    assert results, "action did not complete synchronously"
    return results[0]


def define(name="thing", **attrs):
    attrs.setdefault("description", "a test action")
    attrs.setdefault("run", lambda self, data: data.response.update(ok=True))
    return type(f"A_{name}", (Action,), {"name": name, **attrs})


class DefinitionTests(SynchronousTestCase):
    def check(self, cls, message):
        with self.assertRaises(ConfigError) as e:
            ActionRegistry().add(cls)
        self.assertEqual(str(e.exception), message)

    def test_invalid_definitions(self):
        self.check(define(name=None), "an action is missing 'action.name'")
        self.check(define(description=None), "Action thing is missing 'action.description'")
        self.check(define(run=None), "Action thing has no run method")
        for verb in ("quit", "exit", "documentation", "paramAdd", "paramDelete", "paramView", "paramsView",
                     "paramsDelete", "roomAdd", "roomLeave", "roomView", "detailsView", "say"):
            self.check(define(name=verb), f"{verb} is a reserved verb for connections. choose a new name")

    def test_file_is_not_reserved(self):
        ActionRegistry().add(define(name="file"))

    def test_duplicate_name_and_version(self):
        registry = ActionRegistry()
        registry.add(define())
        with self.assertRaises(ConfigError) as e:
            registry.add(define())
        self.assertEqual(str(e.exception), "Action thing version 1 is defined twice")

    def test_unregistered_middleware(self):
        node = make_node()
        node.registry.add(define(middleware=["nope"]))
        with self.assertRaises(ConfigError) as e:
            node.registry.check_middleware_references()
        self.assertIn("'nope'", str(e.exception))

    def test_nameless_middleware(self):
        with self.assertRaises(ConfigError) as e:
            ActionRegistry().add_middleware(type("M", (ActionMiddleware,), {}))
        self.assertEqual(str(e.exception), "middleware.name is required")


class VersionTests(SynchronousTestCase):
    def setUp(self):
        self.node = make_node(
            plugins=[
                define("v", version=1, run=lambda s, d: d.response.update(v=1)),
                define("v", version=2, run=lambda s, d: d.response.update(v=2)),
                define("v", version=10, run=lambda s, d: d.response.update(v=10)),
            ]
        )

    def test_highest_numeric_version_is_default(self):
        data = run(self.node, {"action": "v"})
        self.assertEqual(data.response, {"v": 10})
        self.assertEqual(data.params["apiVersion"], 10)

    def test_version_selection(self):
        for sent in (1, "1", "1.0", 1.0):
            self.assertEqual(run(self.node, {"action": "v", "apiVersion": sent}).response, {"v": 1}, sent)
        self.assertEqual(run(self.node, {"action": "v", "apiVersion": "2"}).response, {"v": 2})

    def test_unknown_version(self):
        for sent in (3, "x", None.__class__):
            data = run(self.node, {"action": "v", "apiVersion": sent})
            self.assertEqual(data.response, {"error": "unknown action or invalid apiVersion"})
            self.assertEqual(data.action_status, "unknown_action")

    def test_documentation(self):
        doc = self.node.registry.documentation()["v"]
        self.assertEqual(list(doc), ["1", "2", "10"])
        self.assertEqual(doc["10"]["version"], 10)


class ProcessingOrderTests(SynchronousTestCase):
    def test_shutting_down_first(self):
        node = make_node()
        node.stopping = True
        self.assertEqual(run(node, {"action": "nope"}).response, {"error": "the server is shutting down"})

    def test_too_many_pending_before_unknown(self):
        node = make_node()
        connection = Connection("socket", "127.0.0.1", 1, 0)
        connection.pending_actions = 5
        data = run(node, {"action": "nope"}, connection)
        self.assertEqual(data.response, {"error": "you have too many pending requests"})
        self.assertEqual(connection.pending_actions, 5)
        self.assertEqual(connection.total_actions, 1)

    def test_limit_counts_the_request_itself(self):
        node = make_node("[general]\nsimultaneousActions = 2\n")
        connection = Connection("socket", "127.0.0.1", 1, 0)
        pending = [node.processor.process(connection, {"action": "sleepTest", "sleepDuration": 10}) for _ in range(2)]
        third = run(node, {"action": "sleepTest"}, connection)
        self.assertEqual(third.response, {"error": "you have too many pending requests"})
        node.reactor.advance(1)
        for d in pending:
            self.assertIn("sleepDelta", self.successResultOf(d).response)

    def test_blocked_connection_type(self):
        node = make_node(plugins=[define(blocked_connection_types=["websocket"])])
        data = run(node, {"action": "thing"}, type="websocket")
        self.assertEqual(data.response, {"error": "this action does not support the websocket connection type"})
        self.assertEqual(run(node, {"action": "thing"}, type="web").response, {"ok": True})

    def test_precedence_pre_processor_then_missing_then_validator(self):
        class Pre(ActionMiddleware):
            name = "pre"

            def pre_processor(self, data):
                if data.params.get("fail"):
                    raise ActionError("pre says no")

        action = define(
            middleware=["pre"],
            inputs={
                "a": Input(validator=lambda v: "a is bad"),
                "b": Input(required=True),
                "c": Input(required=True),
            },
        )
        node = make_node(plugins=[Pre, action])
        self.assertEqual(run(node, {"action": "thing", "fail": 1, "a": 1}).response, {"error": "pre says no"})
        self.assertEqual(
            run(node, {"action": "thing", "a": 1}).response, {"error": "b is a required parameter for this action"}
        )
        self.assertEqual(run(node, {"action": "thing", "a": 1, "b": 1, "c": 1}).response, {"error": "a is bad"})


class InputTests(SynchronousTestCase):
    def node(self, inputs, text=""):
        def body(self, data):
            data.response["params"] = dict(data.params)

        return make_node(text, plugins=[define(inputs=inputs, run=body)])

    def test_defaults_value_and_callable(self):
        node = self.node(
            {
                "a": Input(default=5),
                "b": Input(default=lambda: "made"),
                "c": Input(default=lambda value, data: data.params["a"] * 2),
                "d": Input(default=0),
            }
        )
        params = run(node, {"action": "thing", "d": None}).response["params"]
        self.assertEqual(params, {"d": None, "action": "thing", "apiVersion": 1, "a": 5, "b": "made", "c": 10})

    def test_formatters_in_order_and_failure(self):
        node = self.node({"n": Input(formatter=[str.strip, int, lambda v, data: v + 1])})
        self.assertEqual(run(node, {"action": "thing", "n": " 41 "}).response["params"]["n"], 42)
        data = run(node, {"action": "thing", "n": "x"})
        # issue 12, item 8: names the parameter, no Python message
        self.assertEqual(data.response, {"error": 'Input for parameter "n" failed validation!'})
        self.assertEqual(data.action_status, "validator_errors")

    def test_validator_results(self):
        def raises(value):
            raise ValueError("raised text")

        node = self.node(
            {
                "t": Input(validator=lambda v: True),
                "s": Input(validator=lambda v: "custom text"),
                "f": Input(validator=lambda v: False),
                "r": Input(validator=raises),
                "e": Input(validator=lambda v: (_ for _ in ()).throw(ActionError({"code": 7}))),
            }
        )
        self.assertEqual(run(node, {"action": "thing", "t": 1}).response["params"]["t"], 1)
        self.assertEqual(run(node, {"action": "thing", "s": 1}).response, {"error": "custom text"})
        self.assertEqual(run(node, {"action": "thing", "f": 1}).response, {"error": 'Input for parameter "f" failed validation!'})
        # any exception but ActionError: the parameter is named, its text not sent (issue 12, item 8)
        self.assertEqual(run(node, {"action": "thing", "r": 1}).response, {"error": 'Input for parameter "r" failed validation!'})
        self.assertEqual(run(node, {"action": "thing", "e": 1}).response, {"error": {"code": 7}})

    def test_required_and_missing_checks(self):
        node = self.node({"x": Input(required=True)})
        for value in ("", None):
            self.assertEqual(
                run(node, {"action": "thing", "x": value}).response,
                {"error": "x is a required parameter for this action"},
            )
        for value in (False, 0, [], "0"):
            self.assertEqual(run(node, {"action": "thing", "x": value}).response["params"]["x"], value)
        node = self.node({"x": Input(required=True)}, '[general]\nmissingParamChecks = ["", "null", 0]\n')
        for value in ("null", 0):
            self.assertIn("error", run(node, {"action": "thing", "x": value}).response)
        self.assertNotIn("error", run(node, {"action": "thing", "x": False}).response)

    def test_schema(self):
        node = self.node(
            {"user": Input(required=True, schema={"name": Input(required=True), "age": Input(formatter=int)})}
        )
        data = run(node, {"action": "thing", "user": {"age": "3", "extra": 1}})
        self.assertEqual(data.response, {"error": "user.name is a required parameter for this action"})
        data = run(node, {"action": "thing", "user": {"name": "x", "age": "3", "extra": 1}})
        self.assertEqual(data.response["params"]["user"], {"name": "x", "age": 3})

    def test_scrubbing_and_copy(self):
        node = self.node({"a": Input(default="d")})
        sticky = {"action": "thing", "zzz": 1, "callback": "cb", "messageId": "m", "file": "f"}
        data = run(node, sticky)
        self.assertEqual(
            data.response["params"],
            {"action": "thing", "callback": "cb", "messageId": "m", "file": "f", "apiVersion": 1, "a": "d"},
        )
        self.assertEqual(sticky, {"action": "thing", "zzz": 1, "callback": "cb", "messageId": "m", "file": "f"})

    def test_scrubbing_disabled(self):
        node = self.node({}, "[general]\ndisableParamScrubbing = true\n")
        self.assertEqual(run(node, {"action": "thing", "zzz": 1}).response["params"]["zzz"], 1)


class MiddlewareTests(SynchronousTestCase):
    def test_order_priorities_and_hooks(self):
        calls = []

        def mw(name, priority=None, is_global=True, **hooks):
            return type(name, (ActionMiddleware,), {"name": name, "priority": priority, "is_global": is_global, **hooks})

        plugins = [
            mw("late", 200, pre_processor=lambda s, d: calls.append("late.pre"), post_processor=lambda s, d: calls.append("late.post")),
            mw("early", 10, pre_processor=lambda s, d: calls.append("early.pre"), post_processor=lambda s, d: calls.append("early.post")),
            mw("default1", pre_processor=lambda s, d: calls.append("default1.pre")),
            mw("default2", pre_processor=lambda s, d: calls.append("default2.pre")),
            mw("own", 1, is_global=False, pre_processor=lambda s, d: calls.append("own.pre")),
            define(middleware=["own"], run=lambda s, d: calls.append("run")),
        ]
        node = make_node(plugins=plugins)
        run(node, {"action": "thing"})
        self.assertEqual(
            calls,
            ["early.pre", "default1.pre", "default2.pre", "late.pre", "own.pre", "run", "early.post", "late.post"],
        )

    def test_pre_processor_sees_unscrubbed_params_and_can_skip(self):
        seen = {}

        class Pre(ActionMiddleware):
            name = "pre"
            is_global = True

            def pre_processor(self, data):
                seen.update(data.params)
                data.to_process = False
                data.response["skipped"] = True

        node = make_node(plugins=[Pre, define(run=lambda s, d: d.response.update(ran=True))])
        data = run(node, {"action": "thing", "secret": 1})
        self.assertEqual(seen["secret"], 1)
        self.assertEqual(data.response, {"skipped": True})
        self.assertIsNone(data.error)

    def test_post_processor_error_and_render_flag(self):
        class Post(ActionMiddleware):
            name = "post"
            is_global = True

            def post_processor(self, data):
                if data.params.get("x") == "fail":
                    raise ActionError("post says no")
                data.to_render = False

        node = make_node(plugins=[Post, define(inputs={"x": Input()})])
        data = run(node, {"action": "thing", "x": "fail"})
        self.assertEqual((data.response, data.action_status), ({"ok": True, "error": "post says no"}, "post_processor_error"))
        self.assertFalse(run(node, {"action": "thing"}).to_render)

    def test_post_processor_skipped_after_failure(self):
        calls = []

        class Post(ActionMiddleware):
            name = "post"
            is_global = True

            def post_processor(self, data):
                calls.append("post")

        def fail(self, data):
            raise ActionError("no")

        node = make_node(plugins=[Post, define(run=fail)])
        run(node, {"action": "thing"})
        self.assertEqual(calls, [])

    def test_async_middleware_and_run(self):
        waiting = Deferred()

        class Slow(ActionMiddleware):
            name = "slow"
            is_global = True

            async def pre_processor(self, data):
                data.params["got"] = await waiting

        async def body(self, data):
            data.response["got"] = data.params["got"]

        node = make_node(plugins=[Slow, define(run=body, inputs={"got": Input()})])
        d = node.processor.process(Connection("socket", "1", 1, 0), {"action": "thing"})
        self.assertNoResult(d)
        waiting.callback("value")
        self.assertEqual(self.successResultOf(d).response, {"got": "value"})

    def test_run_returning_deferred(self):
        node = make_node(plugins=[define(run=lambda s, d: succeed(None).addCallback(lambda _: d.response.update(x=1)))])
        self.assertEqual(run(node, {"action": "thing"}).response, {"x": 1})

    def test_middleware_exception_is_internal_error(self):
        class Bad(ActionMiddleware):
            name = "bad"
            is_global = True

            def pre_processor(self, data):
                raise KeyError("oops")

        node = make_node(plugins=[Bad, define()])
        data = run(node, {"action": "thing"})
        self.assertEqual((data.response, data.action_status), ({"error": "internal server error"}, "server_error"))
        self.flushLoggedErrors(KeyError)


class ActionErrorTests(SynchronousTestCase):
    def test_forms(self):
        node = make_node(
            plugins=[
                define("text", run=lambda s, d: (_ for _ in ()).throw(ActionError("plain"))),
                define("obj", run=lambda s, d: (_ for _ in ()).throw(ActionError({"error": "broken", "reason": "stuff"}))),
                define("returned", run=lambda s, d: ActionError("returned error")),
                define("set", run=lambda s, d: d.response.update(error="set by action")),
                define("exc", run=lambda s, d: (_ for _ in ()).throw(ActionError(ValueError("from exception")))),
            ]
        )
        self.assertEqual(run(node, {"action": "text"}).response, {"error": "plain"})
        self.assertEqual(run(node, {"action": "obj"}).response, {"error": {"error": "broken", "reason": "stuff"}})
        self.assertEqual(run(node, {"action": "returned"}).response, {"error": "returned error"})
        data = run(node, {"action": "set"})
        self.assertEqual((data.response, data.action_status), ({"error": "set by action"}, "action_error"))
        self.assertEqual(run(node, {"action": "exc"}).response, {"error": "from exception"})

    def test_unexpected_exception(self):
        def bug(self, data):
            data.response["partial"] = 1
            raise ZeroDivisionError("division by zero")

        node = make_node(plugins=[define(run=bug)])
        connection = Connection("socket", "127.0.0.1", 1, 0)
        data = run(node, {"action": "thing"}, connection)
        self.assertEqual(data.response, {"partial": 1, "error": "internal server error"})
        self.assertEqual(connection.pending_actions, 0)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(run(node, {"action": "thing"}, connection).action_status, "server_error")
        self.flushLoggedErrors(ZeroDivisionError)


class ConnectionMiddlewareTests(SynchronousTestCase):
    def test_create_destroy_order_and_errors_ignored(self):
        calls = []

        def mw(name, priority):
            return type(
                name,
                (ConnectionMiddleware,),
                {
                    "name": name,
                    "priority": priority,
                    "create": lambda s, c: calls.append(f"{name}.create"),
                    "destroy": lambda s, c: calls.append(f"{name}.destroy"),
                },
            )

        class Broken(ConnectionMiddleware):
            name = "broken"
            priority = 50

            def create(self, connection):
                raise RuntimeError("ignored")

        node = make_node(plugins=[mw("b", 300), mw("a", 100), Broken])
        connection = node.add_connection(Connection("socket", "127.0.0.1", 1, 0))
        self.assertIn(connection.id, node.connections)
        node.destroy_connection(connection)
        self.assertEqual(calls, ["a.create", "b.create", "a.destroy", "b.destroy"])
        self.assertNotIn(connection.id, node.connections)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_web_requests_run_connection_middleware(self):
        from tests.helpers import HTTPClient

        seen = []

        class Seen(ConnectionMiddleware):
            name = "seen"

            def create(self, connection):
                seen.append(("create", connection.type))

            def destroy(self, connection):
                seen.append(("destroy", connection.type))

        HTTPClient(make_node(plugins=[Seen])).get("/api/randomNumber")
        self.assertEqual(seen, [("create", "web"), ("destroy", "web")])
