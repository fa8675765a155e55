"""The processor's path for an action without middleware (run synchronously,
no coroutine, one scrubbed copy of the params) gives what the general path
gives: the same response, error, status, params, counts and log line, for
successes, errors, invalid params, waiting inputs and runs, versions and
scrubbing on or off.  The general path is forced by a global middleware with
no hooks (it changes nothing but the path taken)."""

import re

import pytest
from twisted.internet.defer import Deferred
from twisted.logger import formatEvent, globalLogPublisher

from ahtwist import Action, ActionError, ActionMiddleware, Input
from ahtwist.actions.data import ActionData
from ahtwist.connection import Connection
from tests.helpers import make_node

later: list[Deferred] = []


def wait_then(value):
    d = Deferred()
    later.append(d)
    return d.addCallback(lambda _: value)


class Greet(Action):
    name = "greet"
    description = "inputs of every kind"
    inputs = {
        "name": Input(required=True, formatter=str.strip, validator=lambda v: len(v) > 2 or "name too short"),
        "greeting": Input(default=lambda: "hello"),
        "times": Input(formatter=int),
        "nested": Input(schema={"a": Input(required=True)}),
    }

    def run(self, data):
        data.response["text"] = f"{data.params['greeting']} {data.params['name']}"
        data.response["params"] = dict(data.params)


class Versioned(Action):
    name = "versioned"
    description = "two versions"
    version = 2

    def run(self, data):
        data.response["v"] = 2


class VersionedOld(Action):
    name = "versioned"
    description = "two versions"
    version = 1

    def run(self, data):
        data.response["v"] = 1


class Fails(Action):
    name = "fails"
    description = "every way of failing"
    inputs = {"how": Input(required=True)}

    def run(self, data):
        how = data.params["how"]
        if how == "raise":
            raise ActionError("refused")
        if how == "crash":
            raise RuntimeError("boom")
        if how == "return":
            return ActionError({"code": 7})
        if how == "response":
            data.response["error"] = "set by the action"
        if how == "wait-refuse":
            return wait_then(None).addCallback(lambda _: (_ for _ in ()).throw(ActionError("later")))
        return None


class Waits(Action):
    name = "waits"
    description = "an async run and an async validator"
    inputs = {"x": Input(validator=lambda v: wait_then(v == "ok" or "x is not ok"))}

    async def run(self, data):
        data.response["got"] = await wait_then(data.params.get("x"))


class NoSocket(Action):
    name = "noSocket"
    description = "blocked on the socket"
    blocked_connection_types = ["socket"]

    def run(self, data):
        data.response["ok"] = True


class NoHooks(ActionMiddleware):
    name = "noHooks"
    is_global = True


ACTIONS = [Greet, Versioned, VersionedOld, Fails, Waits, NoSocket]

REQUESTS = [
    {"action": "randomNumber", "unknown": 1},
    {"action": "greet", "name": "  Ada  ", "times": "3", "nested": {"a": 1, "b": 2}, "messageId": "m"},
    {"action": "greet", "name": "Al"},
    {"action": "greet"},
    {"action": "greet", "name": "Ada", "times": "x"},
    {"action": "greet", "name": "Ada", "nested": {"b": 2}},
    {"action": "greet", "apiVersion": None, "name": "Ada"},
    {"apiVersion": "1", "name": "Ada", "action": "greet", "extra": True},
    {"action": "versioned"},
    {"action": "versioned", "apiVersion": 1},
    {"action": "versioned", "apiVersion": "1.0"},
    {"action": "versioned", "apiVersion": 3},
    {"action": "nope"},
    {"action": ["not", "a", "name"]},
    {},
    {"action": "fails", "how": "raise"},
    {"action": "fails", "how": "crash"},
    {"action": "fails", "how": "return"},
    {"action": "fails", "how": "response"},
    {"action": "fails", "how": "wait-refuse"},
    {"action": "fails", "how": "fine"},
    {"action": "fails"},
    {"action": "waits", "x": "ok"},
    {"action": "waits", "x": "bad"},
    {"action": "waits"},
    {"action": "noSocket"},
]


def outcome(node, params):
    """Everything the request leaves behind (durations aside)."""
    connection = Connection("socket", "10.0.0.1", 1, node.now_ms())
    node.add_connection(connection)
    result = node.processor.start(connection, dict(params), "id", 1)
    while not isinstance(result, ActionData) and later:
        later.pop(0).callback(None)
    if not isinstance(result, ActionData):
        box = []
        result.addBoth(box.append)
        result = box[0]
    assert not later
    return {
        "response": result.response,
        "error": result.error,
        "status": result.action_status,
        "params": result.params,
        "raw": result.raw_params,
        "validated": result.validated,
        "missing": result.missing_params,
        "validator_errors": result.validator_errors,
        "received": result.received_params(node.registry.post_variables, node.processor.scrub),
        "counts": {
            (c.name, tuple(sorted(c.totals()[0].items()))) for c in node.processor.counts.values()
        },
        "pending": (connection.pending_actions, connection.total_actions, node.processor.in_flight),
    }


def scrub_random(value):
    if isinstance(value, dict) and "randomNumber" in value:
        return {**value, "randomNumber": 0, "stringRandomNumber": ""}
    return value


@pytest.mark.parametrize("toml", ["", "[general]\ndisableParamScrubbing = true\n"])
def test_without_middleware_every_request_ends_as_on_the_general_path(toml):
    fast = make_node(toml, plugins=ACTIONS)
    general = make_node(toml, plugins=[*ACTIONS, NoHooks])
    assert fast.registry.plan(fast.registry.get("greet")).chain == []
    assert [m.name for m in general.registry.plan(general.registry.get("greet")).chain] == ["noHooks"]

    async def never(*args):  # the path without middleware never enters the coroutine of the chain
        raise AssertionError("the general path was taken")

    fast.processor._with_middleware = never
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        for params in REQUESTS:
            del events[:]
            a = outcome(fast, params)
            fast_lines = [formatEvent(e) for e in events if e.get("log_namespace") == "ahtwist.action"]
            del events[:]
            b = outcome(general, params)
            general_lines = [formatEvent(e) for e in events if e.get("log_namespace") == "ahtwist.action"]
            a["response"], b["response"] = scrub_random(a["response"]), scrub_random(b["response"])
            assert a == b, params
            assert list(a["params"]) == list(b["params"]), params  # the same order too
            assert [re.sub(r"duration=\d+", "", line) for line in fast_lines] == [
                re.sub(r"duration=\d+", "", line) for line in general_lines
            ], params
            assert fast_lines[-1].startswith("[ action @ socket ] to=10.0.0.1 action="), params
    finally:
        globalLogPublisher.removeObserver(events.append)


def test_the_paths_reply_as_written_down():
    """Spot checks of the outcomes compared above (so a change to both paths
    at once is still caught)."""
    node = make_node(plugins=ACTIONS)
    greeted = outcome(node, REQUESTS[1])
    assert greeted["response"] == {
        "text": "hello Ada",
        "params": {"action": "greet", "name": "Ada", "times": 3, "nested": {"a": 1},
                   "messageId": "m", "apiVersion": 1, "greeting": "hello"},
    }
    assert greeted["status"] == "success" and greeted["pending"] == (0, 1, 0)
    assert outcome(node, REQUESTS[0])["params"] == {"action": "randomNumber", "apiVersion": 1}
    assert outcome(node, REQUESTS[2])["response"] == {"error": "name too short"}
    assert outcome(node, REQUESTS[3])["error"] == "name is a required parameter for this action"
    assert outcome(node, REQUESTS[7])["params"] == {"apiVersion": "1", "name": "Ada", "action": "greet",
                                                    "greeting": "hello"}
    assert outcome(node, REQUESTS[10])["response"] == {"v": 1}
    assert outcome(node, REQUESTS[11])["status"] == "unknown_action"
    failed = [outcome(node, REQUESTS[i]) for i in range(15, 20)]
    assert [(f["response"], f["status"]) for f in failed] == [
        ({"error": "refused"}, "action_error"),
        ({"error": "internal server error"}, "server_error"),
        ({"error": {"code": 7}}, "action_error"),
        ({"error": "set by the action"}, "action_error"),
        ({"error": "later"}, "action_error"),
    ]
    assert outcome(node, REQUESTS[20])["status"] == "success"
    assert outcome(node, REQUESTS[22])["response"] == {"got": "ok"}
    assert outcome(node, REQUESTS[23])["response"] == {"error": "x is not ok"}
    assert outcome(node, REQUESTS[25])["status"] == "unsupported_server_type"
