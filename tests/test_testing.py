"""ahtwist.testing: the helpers users test their apps with (ActionHero's specHelper)."""

import textwrap

import treq

from ahtwist.testing import AppTester, assert_lines


def write_app(tmp_path):
    (tmp_path / "actions").mkdir()
    (tmp_path / "initializers").mkdir()
    (tmp_path / "actions" / "hello.py").write_text(
        textwrap.dedent(
            """
            from ahtwist import Action, Input

            class Hello(Action):
                name = "hello"
                description = "greets"
                inputs = {"name": Input(required=True)}

                def run(self, data):
                    data.node.app.greeted += 1
                    data.response["hello"] = data.params["name"]
                    data.response["type"] = data.connection.type
                    data.response["count"] = data.node.app.greeted
            """
        )
    )
    (tmp_path / "initializers" / "count.py").write_text(
        textwrap.dedent(
            """
            from ahtwist import Initializer

            class Count(Initializer):
                name = "count"

                def start(self, node):
                    node.app.greeted = 0

                def stop(self, node):
                    node.app.stopped_at = node.app.greeted
            """
        )
    )
    (tmp_path / "app.toml").write_text(
        '[general.paths]\nactions = ["actions"]\ninitializers = ["initializers"]\n'
    )
    return tmp_path / "app.toml"


def test_run_action_as_each_connection_type(tmp_path):
    app = AppTester(write_app(tmp_path))
    assert app.run_action("hello", {"name": "ann"}) == {"hello": "ann", "type": "web", "count": 1}
    assert app.run_action("hello", {"name": "bob"}, connection_type="socket") == {
        "hello": "bob", "type": "socket", "count": 2,
    }
    assert app.run_action("hello", {}, connection_type="websocket") == {
        "error": "name is a required parameter for this action"
    }
    assert app.node.connections == {}


def test_timers_run_to_completion_on_the_manual_clock(tmp_path):
    app = AppTester(write_app(tmp_path))
    before = app.clock.seconds()
    response = app.run_action("sleepTest", {"sleepDuration": 1500})
    assert response["sleepDuration"] == 1500 and response["sleepDelta"] == 1500
    assert app.clock.seconds() - before == 1.5


def test_initializers_start_and_stop(tmp_path):
    with AppTester(write_app(tmp_path)) as app:
        assert app.node.ready is True
        app.run_action("hello", {"name": "x"})
        assert not hasattr(app.node.app, "stopped_at")
    assert app.node.app.stopped_at == 1


def test_http_client_speaks_raw_http_and_treq(tmp_path):
    app = AppTester(write_app(tmp_path))
    client = app.http()
    raw = client.get("/api/hello?name=raw")
    assert raw.status == 200 and raw.json()["hello"] == "raw"
    response = client.settle(client.treq.get("http://127.0.0.1:8080/api/hello", params={"name": "treq"}))
    assert response.code == 200
    assert response.headers.getRawHeaders("content-type") == ["application/json; charset=utf-8"]
    body = client.settle(treq.json_content(response))
    assert (body["hello"], body["type"], body["count"]) == ("treq", "web", 2)
    slow = client.settle(client.treq.get("http://127.0.0.1:8080/api/sleepTest?sleepDuration=20"), step=0.01)
    assert client.settle(treq.json_content(slow))["sleepDuration"] == 20
    health = client.settle(client.treq.get("http://127.0.0.1:8080/healthz"))
    assert client.settle(treq.content(health)) == b'{"status":"ok"}'


def test_socket_and_websocket_clients_speak_the_real_protocols(tmp_path):
    app = AppTester(write_app(tmp_path))
    socket = app.socket()
    assert_lines(
        socket.ask(b"paramAdd name=sam\n"),
        ['{"status":"OK","context":"response","messageCount":1,"messageId":"<uuid>"}'],
    )
    assert_lines(
        socket.ask(b"hello\n"),
        ['{"hello":"sam","type":"socket","count":1,"context":"response","messageCount":2,"messageId":"<uuid>"}'],
    )
    ws = app.websocket()
    [message] = ws.request({"event": "action", "params": {"action": "hello", "name": "wes"}, "messageId": 7})
    assert (message["hello"], message["type"], message["messageId"]) == ("wes", "websocket", 7)
