"""Initializers: hook order, the listeners wait for start, stop after the drain, failures."""

import textwrap

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher

from ahtwist import Initializer
from ahtwist.errors import ConfigError
from ahtwist.initializers import Initializers, load_initializers
from ahtwist.tap import build_service
from tests.helpers import config_from, make_node


def recorder(calls, name, load=1000, start=1000, stop=1000, **hooks):
    """An initializer class appending ``(name, hook)`` to ``calls``, then
    running ``on_<hook>(node)`` if given."""

    def hook(kind):
        def run(self, node):
            calls.append((name, kind))
            extra = hooks.get(f"on_{kind}")
            return extra(node) if extra else None

        return run

    return type(
        name,
        (Initializer,),
        {
            "name": name,
            "load_priority": load,
            "start_priority": start,
            "stop_priority": stop,
            "initialize": hook("initialize"),
            "start": hook("start"),
            "stop": hook("stop"),
        },
    )


def test_hooks_run_in_priority_order_and_stop_reverses_start_on_ties():
    calls = []
    node = make_node()
    inits = Initializers(
        node,
        [
            recorder(calls, "a", load=3, start=2, stop=5),
            recorder(calls, "b", load=1, start=1, stop=5),
            recorder(calls, "c", load=2, start=3, stop=1),
        ],
    )
    assert inits.start().result is None
    assert calls == [
        ("b", "initialize"), ("c", "initialize"), ("a", "initialize"),
        ("b", "start"), ("a", "start"), ("c", "start"),
    ]
    del calls[:]
    inits.stop()
    assert calls == [("c", "stop"), ("a", "stop"), ("b", "stop")]


def test_async_and_deferred_hooks_are_awaited_in_turn():
    calls = []
    waiting = Deferred()

    async def slow_start(node):
        await waiting
        node.app.db = "pool"

    inits = Initializers(
        make_node(),
        [recorder(calls, "first", start=1, on_start=slow_start), recorder(calls, "second", start=2)],
    )
    done = inits.start()
    assert calls == [("first", "initialize"), ("second", "initialize"), ("first", "start")]
    assert not done.called
    waiting.callback(None)
    assert done.called and calls[-1] == ("second", "start")
    assert inits.node.app.db == "pool"


def test_listeners_start_only_after_every_initializer_started():
    reactor = MemoryReactorClock()
    config = config_from(socket=("tcp:0:interface=127.0.0.1",), web=("tcp:0:interface=127.0.0.1",))
    top = build_service(config, reactor)
    waiting = Deferred()
    opened = []

    class Db(Initializer):
        name = "db"

        def start(self, node):
            return waiting.addCallback(lambda _: opened.append(node.ready))

    top.initializers.add(Db)
    top.privilegedStartService()
    top.startService()
    assert [child.running for child in top] == [0, 0]
    assert top.node.ready is False
    waiting.callback(None)
    assert opened == [False]
    assert [child.running for child in top] == [1, 1]
    assert top.node.ready is True


def test_stop_runs_after_the_servers_drained():
    reactor = MemoryReactorClock()
    top = build_service(config_from(socket=("none",), web=("tcp:0:interface=127.0.0.1",)), reactor)
    order = []

    class Db(Initializer):
        name = "db"

        def stop(self, node):
            order.append(("db stop", node.stopping, [c.running for c in top]))

    top.initializers.add(Db)
    top.startService()
    drained = Deferred()
    web = list(top)[0]
    original = web.stopService
    web.stopService = lambda: (order.append("web drained"), original(), drained)[2]
    stopped = top.stopService()
    assert order == ["web drained"]
    drained.callback(None)
    assert order == ["web drained", ("db stop", True, [0])]
    assert stopped.called


def test_a_failing_start_stops_start_up_with_one_line_naming_it():
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        reactor = MemoryReactorClock()
        top = build_service(config_from(socket=("none",), web=("tcp:0:interface=127.0.0.1",)), reactor)
        calls = []

        def boom(node):
            raise RuntimeError("database is down")

        top.initializers.add(recorder(calls, "early", start=1))
        top.initializers.add(recorder(calls, "db", start=2, on_start=boom))
        top.initializers.add(recorder(calls, "late", start=3))
        failed = []
        top.on_startup_failure = lambda: failed.append(True)
        top.startService()
    finally:
        globalLogPublisher.removeObserver(events.append)
    lines = [e["message"] for e in events if e.get("log_namespace") == "ahtwist.service" and "message" in e]
    assert lines == ["initializer 'db' failed in start: RuntimeError: database is down"]
    assert failed == [True]
    assert [child.running for child in top] == [0]
    top.stopService()
    assert [c for c in calls if c[1] != "initialize"] == [("early", "start"), ("db", "start"), ("early", "stop")]


def test_load_from_folders_and_checks(tmp_path):
    folder = tmp_path / "initializers"
    folder.mkdir()
    (folder / "db.py").write_text(
        textwrap.dedent(
            """
            from ahtwist import Initializer

            class Db(Initializer):
                name = "db"
                start_priority = 5

                def initialize(self, node):
                    node.app.db = {"open": False}
                    node.registry.add_post_variables(["apiKey"])
            """
        )
    )
    (folder / "_private.py").write_text("raise RuntimeError('not imported')\n")
    found = load_initializers([str(folder), str(tmp_path / "missing")])
    assert [i.name for i in found.initializers] == ["db"]
    assert found.missing_folders == [str(tmp_path / "missing")]
    node = make_node()
    Initializers(node, found.initializers).start()
    assert node.app.db == {"open": False}
    assert "apiKey" in node.registry.post_variables
    (folder / "dup.py").write_text("from ahtwist import Initializer\nclass Db2(Initializer):\n    name = 'db'\n")
    with pytest.raises(ConfigError, match=r"dup\.py: initializer 'db' is defined twice"):
        load_initializers([str(folder)])
    with pytest.raises(ConfigError, match="initializer Nameless has no name"):
        Initializers(node, [type("Nameless", (Initializer,), {})])


def test_post_variables_an_initializer_adds_are_accepted_by_param_add():
    import json

    from ahtwist.socket import SocketFactory
    from tests.socket_helpers import connect

    class ApiKey(Initializer):
        name = "apiKey"

        def initialize(self, node):
            node.registry.add_post_variables(["apiKey"])

    def sticky(node):
        [client] = connect(SocketFactory(node), 1)
        client.ask(b"paramAdd apiKey=k1\n")
        return json.loads(client.ask(b"paramsView\n")[0])["data"]

    assert sticky(make_node()) == {}
    node = make_node()
    Initializers(node, [ApiKey]).start()
    assert sticky(node) == {"apiKey": "k1"}
