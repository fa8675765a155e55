"""The typed app runs: in memory with ahtwist.testing (and mypy --strict checks this file too)."""

from pathlib import Path

from ahtwist.testing import AppTester

CONFIG = Path(__file__).resolve().parent / "ahtwist.toml"


def test_greet_with_inputs_and_middleware() -> None:
    with AppTester(CONFIG) as app:
        assert app.run_action("typedGreet", {"name": "Ann", "suffix": "?"}) == {
            "greeting": "Hello, Ann?",
            "stamped": True,
            "connectionType": "web",
        }
        assert app.run_action("typedGreet", {"name": "Ann", "loud": "true"}, connection_type="socket") == {
            "greeting": "HELLO, ANN!",
            "stamped": True,
            "connectionType": "socket",
        }
        refused = app.run_action("typedGreet", {"name": "voldemort"})
        assert refused["error"] == "we do not say that name here"
        assert app.run_action("typedGreet", {})["error"] == "name is a required parameter for this action"


def test_the_initializer_started() -> None:
    with AppTester(CONFIG) as app:
        stores = [i for i in app.initializers.by("start_priority") if i.name == "typedGreetingsStore"]
        assert [getattr(store, "opened") for store in stores] == [True]  # noqa: B009 -- not on Initializer
    assert [getattr(store, "opened") for store in stores] == [False]  # noqa: B009


def test_chat_and_connection_middleware() -> None:
    with AppTester(CONFIG) as app:
        client = app.websocket()
        details = client.request({"event": "detailsView", "messageId": 1})[0]["data"]
        connection = app.node.connections[details["id"]]
        assert connection.session == {"tag": "typed"}
        assert client.request({"event": "roomAdd", "room": "defaultRoom", "messageId": 2})[0]["status"] == "OK"
        quiet = client.request({"event": "say", "room": "defaultRoom", "message": "hi", "messageId": 3})
        # the reply, then the say itself coming back to the room
        assert [(m["context"], m.get("status"), m.get("message")) for m in quiet] == [
            ("response", "OK", None), ("user", None, "hi")
        ]
        loud = client.request({"event": "say", "room": "defaultRoom", "message": "HI", "messageId": 4})
        assert [(m["context"], m["error"], m["messageId"]) for m in loud] == [("response", "no shouting", 4)]
