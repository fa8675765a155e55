"""Actions over the socket: sticky params, JSON lines, messageId/messageCount,
the concurrency limit, shutdown, stats (docs/protocol-socket.md, 'Counters' and 'Actions';
docs/python-api.md, 'Processing order' and 'Built-in actions')."""

import json

from ahtwist import Action, ActionError, Input
from ahtwist.node import SOCKET_REQUESTS
from tests.helpers import REPO
from tests.socket_helpers import assert_lines, connect, factory_for

UNKNOWN = (
    '{"error":"unknown action or invalid apiVersion","context":"response",'
    '"messageCount":%d,"messageId":%s}'
)


class Echo(Action):
    """Shows the params the action received."""

    name = "echo"
    description = "echo"
    inputs = {"key": Input(), "value": Input(formatter=lambda v: f"<{v}>"), "n": Input(default=3)}

    def run(self, data):
        data.response["params"] = dict(data.params)
        data.response["seen"] = data.message_id


def test_first_word_is_the_action_and_other_words_are_ignored():
    (client,) = connect(factory_for(plugins=[Echo]))
    lines = client.ask(b"echo these words are ignored\n")
    assert_lines(
        lines,
        [
            '{"params":{"action":"echo","apiVersion":1,"n":3},"seen":"<uuid>",'
            '"context":"response","messageCount":1,"messageId":"<uuid>"}'
        ],
    )
    assert client.connection.params == {"action": "echo"}


def test_unknown_words_are_unknown_actions_and_become_sticky():
    (client,) = connect(factory_for())
    assert_lines(client.ask(b"hello\n"), [UNKNOWN % (1, '"<uuid>"')])
    assert client.connection.params == {"action": "hello"}


def test_sticky_params_are_a_copy_the_action_cannot_change():
    (client,) = connect(factory_for(plugins=[Echo]))
    client.ask(b"paramAdd key=k1\nparamAdd value=v1\n")
    assert_lines(
        client.ask(b"echo\n"),
        [
            '{"params":{"key":"k1","value":"<v1>","action":"echo","apiVersion":1,"n":3},'
            '"seen":"<uuid>","context":"response","messageCount":3,"messageId":"<uuid>"}'
        ],
    )
    # formatting, defaults and the defaulted apiVersion did not leak back
    assert client.connection.params == {"key": "k1", "value": "v1", "action": "echo"}


def test_json_params_replace_the_sticky_params():
    (client,) = connect(factory_for())
    client.ask(b"paramAdd key=abc\nparamAdd value=def\n")
    lines = client.ask(b'{"action":"cacheTest","params":{"key":"someOtherValue"}}\n')
    assert_lines(
        lines,
        [
            '{"error":"value is a required parameter for this action","context":"response",'
            '"messageCount":3,"messageId":"<uuid>"}'
        ],
    )
    assert client.connection.params == {"key": "someOtherValue", "action": "cacheTest"}


def test_json_without_action_runs_the_sticky_action():
    (client,) = connect(factory_for(plugins=[Echo]))
    client.ask(b"paramAdd key=abc\n")
    assert_lines(client.ask(b'{"messageId":5}\n'), [UNKNOWN % (2, "5")])  # no sticky action yet
    client.ask(b"echo\n")
    lines = client.ask(b'{"messageId":6}\n')
    assert json.loads(lines[0])["params"] == {"key": "abc", "action": "echo", "apiVersion": 1, "n": 3}
    assert json.loads(lines[0])["seen"] == 6
    # a non-object params is ignored; sticky params stay
    lines = client.ask(b'{"params":[1,2]}\n')
    assert json.loads(lines[0])["params"] == {"key": "abc", "action": "echo", "apiVersion": 1, "n": 3}
    # an object params replaces them all, the sticky action included [v17]
    assert_lines(client.ask(b'{"params":{"key":"y"}}\n'), [UNKNOWN % (6, '"<uuid>"')])
    assert client.connection.params == {"key": "y"}


def test_json_that_is_not_an_object_is_a_first_word():
    (client,) = connect(factory_for())
    assert_lines(client.ask(b'  "x"\n'), [UNKNOWN % (1, '"<uuid>"')])
    assert client.connection.params == {"action": ""}
    assert_lines(client.ask(b"null\n"), [UNKNOWN % (2, '"<uuid>"')])
    assert client.connection.params == {"action": "null"}


def test_json_with_leading_whitespace_is_json():
    (client,) = connect(factory_for())
    lines = client.ask(b' \t{"action":"randomNumber","messageId":"m"}\n')
    assert json.loads(lines[0])["messageId"] == "m"
    assert "randomNumber" in json.loads(lines[0])


def test_message_id_top_level_then_params_type_kept_never_sticky():
    (client,) = connect(factory_for(plugins=[Echo]))
    assert_lines(
        client.ask(b'{"action":"nope","messageId":7,"params":{"messageId":"p"}}\n'),
        [UNKNOWN % (1, "7")],
    )
    assert_lines(client.ask(b'{"action":"nope","params":{"messageId":"my-msg-1"}}\n'), [UNKNOWN % (2, '"my-msg-1"')])
    assert client.connection.params == {"action": "nope"}
    assert_lines(client.ask(b'{"action":"nope"}\n'), [UNKNOWN % (3, '"<uuid>"')])
    assert_lines(client.ask(b"nope\n"), [UNKNOWN % (4, '"<uuid>"')])
    assert_lines(client.ask(b'{"action":"nope","messageId":{"a":[1]}}\n'), [UNKNOWN % (5, '{"a":[1]}')])
    assert_lines(client.ask(b'{"action":"nope","messageId":null}\n'), [UNKNOWN % (6, '"<uuid>"')])
    # the action sees params.messageId for this request only
    lines = client.ask(b'{"action":"echo","params":{"messageId":"q"}}\n')
    assert json.loads(lines[0])["params"]["messageId"] == "q"
    assert "messageId" not in client.connection.params


def test_replies_carry_their_own_message_count_even_out_of_order():
    """docs/protocol-socket.md, 'Actions' (concurrency): six concurrent sleepTests, limit 5 -> the 6th is
    answered first; the others in completion order, each with its count."""
    factory = factory_for()
    (client,) = connect(factory)
    requests = b"".join(
        b'{"action":"sleepTest","params":{"sleepDuration":%d}}\n' % ms for ms in (1000, 900, 800, 700, 600, 500)
    )
    lines = client.ask(requests)
    assert_lines(
        lines,
        [
            '{"error":"you have too many pending requests","context":"response",'
            '"messageCount":6,"messageId":"<uuid>"}'
        ],
    )
    assert client.connection.pending_actions == 5
    replies = []
    factory.clock.advance(0.6)
    replies += client.lines()
    for _ in range(5):
        factory.clock.advance(0.1)
        replies += client.lines()
    counts = [json.loads(line)["messageCount"] for line in replies]
    assert counts == [5, 4, 3, 2, 1]
    assert_lines(
        replies[:1],
        [
            '{"sleepStarted":1795627006000,"sleepEnded":<ms>,"sleepDelta":<ms>,'
            '"sleepDuration":600,"context":"response","messageCount":5,"messageId":"<uuid>"}'
        ],
    )
    # the limit counts what is pending: now there is room again
    client.ask(b'{"action":"sleepTest","params":{"sleepDuration":10}}\n')
    factory.clock.advance(0.01)
    assert json.loads(client.lines()[0])["sleepDuration"] == 10


def test_simultaneous_actions_limit_is_configurable():
    factory = factory_for("[general]\nsimultaneousActions = 1\n")
    (client,) = connect(factory)
    lines = client.ask(b"paramAdd sleepDuration=50\nsleepTest\nsleepTest\n")
    assert json.loads(lines[1])["error"] == "you have too many pending requests"
    assert json.loads(lines[1])["messageCount"] == 3


def test_action_errors_and_unexpected_exceptions_keep_the_connection():
    class Broken(Action):
        name = "broken"
        description = "fails"
        inputs = {"key": Input()}

        def run(self, data):
            if data.params.get("key") == "object":
                raise ActionError({"error": "broken", "reason": "stuff"})
            if data.params.get("key") == "text":
                raise ActionError("just text")
            raise RuntimeError("secret detail")

    class SocketShy(Action):
        name = "shy"
        description = "not on sockets"
        blocked_connection_types = ("socket",)

        def run(self, data):
            data.response["ran"] = True

    (client,) = connect(factory_for(plugins=[Broken, SocketShy]))
    assert_lines(
        client.ask(b'{"action":"broken","params":{"key":"object"}}\n'),
        ['{"error":{"error":"broken","reason":"stuff"},"context":"response","messageCount":1,"messageId":"<uuid>"}'],
    )
    assert_lines(
        client.ask(b'{"action":"broken","params":{"key":"text"}}\n'),
        ['{"error":"just text","context":"response","messageCount":2,"messageId":"<uuid>"}'],
    )
    assert_lines(
        client.ask(b'{"action":"broken","params":{}}\n'),
        ['{"error":"internal server error","context":"response","messageCount":3,"messageId":"<uuid>"}'],
    )
    assert_lines(
        client.ask(b"shy\n"),
        [
            '{"error":"this action does not support the socket connection type","context":"response",'
            '"messageCount":4,"messageId":"<uuid>"}'
        ],
    )
    assert not client.closed


def test_to_render_false_sends_nothing_and_send_file_sends_raw_bytes():
    class Quiet(Action):
        name = "quiet"
        description = "answers itself"
        inputs = {"file": Input()}

        def run(self, data):
            data.to_render = False
            name = data.params.get("file")
            if name == "message":
                data.connection.send_message({"custom": True})
            elif name == "absolute":
                data.connection.send_file(str(REPO / "public" / "simple.html"))
            elif name is not None:
                data.connection.send_file(name)

    (client,) = connect(factory_for(plugins=[Quiet]))
    client.send(b"quiet\n")
    assert client.read() == b""
    client.send(b'{"action":"quiet","params":{"file":"simple.html"}}\n')
    assert client.read() == (REPO / "public" / "simple.html").read_bytes()
    client.send(b'{"action":"quiet","params":{"file":"absolute"}}\n')
    assert client.read() == (REPO / "public" / "simple.html").read_bytes()
    for name in (b"../setup.cfg", b"/etc/passwd"):
        client.send(b'{"action":"quiet","params":{"file":"%s"}}\n' % name)
        assert client.read() == b'"That file is not found"\r\n'
    client.send(b'{"action":"quiet","params":{"file":"message"}}\n')
    assert client.read() == b'{"custom":true}\r\n'


def test_shutting_down_refuses_new_actions():
    factory = factory_for()
    (client,) = connect(factory)
    factory.node.stopping = True
    assert_lines(
        client.ask(b"randomNumber\n"),
        ['{"error":"the server is shutting down","context":"response","messageCount":1,"messageId":"<uuid>"}'],
    )


def test_create_chat_room_action_over_the_socket():
    (client,) = connect(factory_for())
    assert_lines(
        client.ask(b'{"action":"createChatRoom","params":{"name":"newRoom"}}\n'),
        ['{"context":"response","messageCount":1,"messageId":"<uuid>"}'],
    )
    assert_lines(
        client.ask(b"createChatRoom\n"),
        ['{"error":"room exists","context":"response","messageCount":2,"messageId":"<uuid>"}'],
    )
    assert_lines(client.ask(b"roomAdd newRoom\n"), ['{"status":"OK","context":"response","data":true,"messageCount":3,"messageId":"<uuid>"}'])
    assert_lines(
        client.ask(b'{"action":"createChatRoom","params":{}}\n'),
        [
            '{"error":"name is a required parameter for this action","context":"response",'
            '"messageCount":4,"messageId":"<uuid>"}'
        ],
    )


def test_status_counts_socket_requests_and_active_clients():
    factory = factory_for()
    a, b = connect(factory, 2)
    a.ask(b"paramAdd key=x\n\n\nparamsView\n")
    b.ask(b"detailsView\n")
    status = json.loads(a.ask(b"status\n")[0])
    assert status["stats"]["socketServer"] == {
        "numberOfLocalSocketRequests": 4,
        "numberOfGlobalSocketRequests": 4,
        "numberOfLocalActiveSocketClients": 2,
    }
    b.drop()
    status = json.loads(a.ask(b"status\n")[0])
    assert status["stats"]["socketServer"]["numberOfLocalActiveSocketClients"] == 1
    assert factory.node.stats.local(SOCKET_REQUESTS) == 5


def test_a_response_json_cannot_encode_is_answered_with_internal_server_error():
    class Odd(Action):
        name = "odd"
        description = "returns something JSON cannot hold"

        def run(self, data):
            data.response["thing"] = object()

    (client,) = connect(factory_for(plugins=[Odd]))
    assert_lines(
        client.ask(b'{"action":"odd","messageId":"m1"}\n'),
        ['{"error":"internal server error","context":"response","messageCount":1,"messageId":"m1"}'],
    )
    assert_lines(client.ask(b"paramsView\n"), ['{"status":"OK","context":"response","data":{"action":"odd"},"messageCount":2,"messageId":"<uuid>"}'])
