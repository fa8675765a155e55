"""The processor's synchronous fast path and its hand-over to Twisted's
coroutine driver (ahtwist._async.start): results, errors thrown
through awaited Deferreds, and nothing left unhandled or unclosed."""

import gc

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.logger import globalLogPublisher

from ahtwist import Action, ActionError, ActionMiddleware
from ahtwist._async import start as _run
from ahtwist.connection import Connection
from tests.helpers import make_node

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")

gates: dict[str, Deferred] = {}


class Waits(Action):
    name = "waits"
    description = "awaits gates"

    async def run(self, data):
        first = await gates["one"]
        data.response["one"] = first
        data.response["ready"] = await succeed("already fired")
        try:
            await gates["two"]
        except ValueError as e:
            data.response["caught"] = str(e)
        outcome = await gates["three"]
        data.response["three"] = outcome


class Raises(Action):
    name = "raises"
    description = "an awaited Deferred fails"

    async def run(self, data):
        await gates["one"]


class SlowGate(ActionMiddleware):
    name = "slowGate"
    is_global = True

    async def pre_processor(self, data):
        if data.params.get("action") == "randomNumber" and "pre" in gates:
            await gates["pre"]


def setup_function():
    gates.clear()
    for name in ("one", "two", "three"):
        gates[name] = Deferred()


def process(node, params):
    connection = Connection("socket", "127.0.0.1", 1, node.now_ms())
    node.add_connection(connection)
    return connection, node.processor.process(connection, params, "m", 1)


def results(d):
    box = []
    d.addBoth(box.append)
    return box


def test_synchronous_actions_come_back_already_fired():
    node = make_node(plugins=[SlowGate])
    _, d = process(node, {"action": "randomNumber"})
    assert d.called
    data = results(d)[0]
    assert set(data.response) == {"randomNumber", "stringRandomNumber"}


def test_awaiting_actions_finish_later_with_values_and_caught_errors():
    node = make_node(plugins=[Waits])
    connection, d = process(node, {"action": "waits"})
    assert not d.called and connection.pending_actions == 1
    gates["one"].callback(1)
    assert not d.called
    gates["two"].errback(ValueError("handled inside"))
    gates["three"].callback(3)
    data = results(d)[0]
    assert data.response == {"one": 1, "ready": "already fired", "caught": "handled inside", "three": 3}
    assert data.error is None and connection.pending_actions == 0


def test_errors_thrown_through_an_awaited_deferred_become_the_reply():
    node = make_node(plugins=[Raises])
    _, d = process(node, {"action": "raises"})
    gates["one"].errback(ActionError("refused later"))
    assert results(d)[0].response == {"error": "refused later"}
    gates["one"] = Deferred()
    _, d = process(node, {"action": "raises"})
    gates["one"].errback(RuntimeError("boom"))
    assert results(d)[0].response == {"error": "internal server error"}


def test_async_middleware_and_no_unhandled_errors_left_behind():
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        gates["pre"] = Deferred()
        node = make_node(plugins=[SlowGate, Raises])
        _, d = process(node, {"action": "randomNumber"})
        assert not d.called
        gates["pre"].callback(None)
        assert "randomNumber" in results(d)[0].response
        _, d = process(node, {"action": "raises"})
        gates["one"].errback(RuntimeError("boom"))
        results(d)
        del d
        gc.collect()
    finally:
        globalLogPublisher.removeObserver(events.append)
    texts = [e.get("log_format") or "" for e in events]
    assert not any("Unhandled error in Deferred" in t for t in texts), texts
    assert any(e.get("log_format") == "action {action} raised" for e in events)


def test_a_pending_action_garbage_collected_closes_cleanly():
    node = make_node(plugins=[Waits])
    process(node, {"action": "waits"})
    gates.clear()
    gc.collect()  # the suspended coroutines are closed; nothing is raised


def test_run_wraps_exceptions_from_the_first_step():
    async def broken():
        raise KeyError("first step")

    failure = results(_run(broken()))[0]
    assert failure.check(KeyError)


def test_start_returns_the_data_itself_when_nothing_waited_else_a_deferred():
    from ahtwist.actions.processor import ActionData

    node = make_node(plugins=[Waits])
    connection = Connection("socket", "127.0.0.1", 1, node.now_ms())
    node.add_connection(connection)
    data = node.processor.start(connection, {"action": "randomNumber"}, "m", 3)
    assert isinstance(data, ActionData)
    assert data.message_count == 3 and data.message_id == "m"
    pending = node.processor.start(connection, {"action": "waits"}, "n", 4)
    assert isinstance(pending, Deferred) and not pending.called
    for gate, value in (("one", 1), ("two", 2), ("three", 3)):
        gates[gate].callback(value)
    assert results(pending)[0].response["three"] == 3
