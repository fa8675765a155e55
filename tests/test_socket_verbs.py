"""Every socket verb and its error strings (docs/protocol-socket.md, 'Verbs' and 'The file verb'), in memory."""

import json

from ahtwist import ActionError, ChatMiddleware
from tests.helpers import REPO
from tests.socket_helpers import NOT_FOUND, assert_lines, connect, error, factory_for, ok_data

OK = '{"status":"OK","context":"response","messageCount":%d,"messageId":"<uuid>"}'


# --- sticky params ----------------------------------------------------------


def test_param_add_forms():
    (client,) = connect(factory_for())
    client.ask(b"paramAdd key=abc\nparamAdd value def\nparamAdd apiVersion=1=2\n")
    assert_lines(client.ask(b"paramsView\n"), [ok_data('{"key":"abc","value":"def","apiVersion":"1"}', 4)])
    client.ask(b"paramAdd key=a b c\n")
    assert_lines(client.ask(b"paramView key\n"), [ok_data('"a"', 6)])
    client.ask(b"paramAdd value\n")  # no value: deleted
    assert_lines(client.ask(b"paramsView\n"), [ok_data('{"key":"a","apiVersion":"1"}', 8)])


def test_param_add_keeps_only_known_params_file_allowed_message_id_never():
    """A param no action takes is an error, not a silent OK (issue 12, item 8)."""
    (client,) = connect(factory_for())
    lines = client.ask(b"paramAdd novalue\nparamAdd unknown=1\nparamAdd messageId=7\nparamAdd file=simple.html\n")
    assert_lines(
        lines,
        [
            error("param not allowed (novalue)", 1),
            error("param not allowed (unknown)", 2),
            error("param not allowed (messageId)", 3),
            OK % 4,
        ],
    )
    assert_lines(client.ask(b"paramsView\n"), [ok_data('{"file":"simple.html"}', 5)])


def test_param_add_stores_anything_without_scrubbing_but_never_message_id():
    (client,) = connect(factory_for("[general]\ndisableParamScrubbing = true\n"))
    client.ask(b"paramAdd unknown=1\nparamAdd messageId=7\n")
    assert_lines(client.ask(b"paramsView\n"), [ok_data('{"unknown":"1"}', 3)])


def test_param_view_delete_and_params_delete():
    (client,) = connect(factory_for())
    client.ask(b"paramAdd key=abc\nparamAdd value=def\n")
    assert_lines(client.ask(b"paramView key\n"), [ok_data('"abc"', 3)])
    assert_lines(client.ask(b"paramView nothing\n"), [OK % 4])  # unknown key: no data
    assert_lines(client.ask(b"paramView\n"), [OK % 5])
    assert_lines(client.ask(b"paramDelete key\n"), [OK % 6])
    assert_lines(client.ask(b"paramDelete nothing\n"), [OK % 7])
    assert_lines(client.ask(b"paramsView\n"), [ok_data('{"value":"def"}', 8)])
    assert_lines(client.ask(b"paramsDelete\n"), [OK % 9])
    assert_lines(client.ask(b"paramsView\n"), [ok_data("{}", 10)])


def test_transcript_session_from_actionhero():
    """The exchange a telnet user of ActionHero sees (docs/protocol-socket.md)."""
    (client,) = connect(factory_for())
    assert_lines(client.ask(b"paramAdd key=x\n"), [OK % 1])
    assert_lines(
        client.ask(b"cacheTest\n"),
        [
            '{"error":"value is a required parameter for this action","context":"response",'
            '"messageCount":2,"messageId":"<uuid>"}'
        ],
    )
    lines = client.ask(b'{"action":"randomNumber","messageId":7}\n')
    assert len(lines) == 1
    reply = json.loads(lines[0])
    assert_lines(
        lines,
        [
            '{"randomNumber":%r,"stringRandomNumber":"Your random number is %r",'
            '"context":"response","messageCount":3,"messageId":7}' % (reply["randomNumber"], reply["randomNumber"])
        ],
    )
    assert client.ask(b"quit\n") == [b'{"status":"Bye!","context":"api"}']


# --- details and documentation ----------------------------------------------


def test_details_view():
    factory = factory_for()
    (client,) = connect(factory)
    cid = client.id
    client.ask(b"paramAdd key=abc\nroomAdd defaultRoom\ncacheTest\nrandomNumber\n")
    assert_lines(
        client.ask(b"detailsView\n"),
        [
            ok_data(
                '{"id":"%s","fingerprint":"%s","remoteIP":"127.0.0.1","remotePort":46810,'
                '"params":{"key":"abc","action":"randomNumber"},"connectedAt":1795627006000,'
                '"rooms":["defaultRoom"],"totalActions":2,"pendingActions":0}' % (cid, cid),
                5,
            )
        ],
    )


def test_documentation_verb_equals_show_documentation():
    (client,) = connect(factory_for())
    doc_line = client.ask(b"documentation\n")[0]
    action_line = client.ask(b"showDocumentation\n")[0]
    doc = json.loads(doc_line)
    shown = json.loads(action_line)
    assert list(doc) == ["status", "context", "data", "messageCount", "messageId"]
    assert doc["data"] == shown["documentation"]
    assert list(doc["data"]) == sorted(doc["data"])
    assert doc["data"]["sleepTest"] == {
        "1": {
            "name": "sleepTest",
            "version": 1,
            "description": "I will sleep and then return",
            "inputs": {"sleepDuration": {"required": True, "default": 1000}},
            "outputExample": {
                "sleepStarted": 1420953571322,
                "sleepEnded": 1420953572327,
                "sleepDelta": 1005,
                "sleepDuration": 1000,
            },
        }
    }


# --- rooms -----------------------------------------------------------------


def test_room_add_leave_and_their_errors():
    (client,) = connect(factory_for())
    assert_lines(client.ask(b"roomAdd defaultRoom\n"), [ok_data("true", 1)])
    assert_lines(
        client.ask(b"roomAdd defaultRoom\n"),
        [error("connection already in this room (defaultRoom)", 2, "false")],
    )
    assert_lines(client.ask(b"roomAdd noSuchRoom\n"), [error("room does not exist", 3, "false")])
    # no name: a clear error (issue 12, item 8; it used to say "room does not exist")
    assert_lines(client.ask(b"roomAdd\n"), [error("a room is required", 4, "false")])
    assert_lines(client.ask(b"roomLeave defaultRoom\n"), [ok_data("true", 5)])
    assert_lines(
        client.ask(b"roomLeave defaultRoom\n"),
        [error("connection not in this room (defaultRoom)", 6, "false")],
    )
    assert_lines(client.ask(b"roomLeave\n"), [error("connection not in this room ()", 7, "false")])
    assert client.connection.rooms == []


def test_room_leave_of_a_room_deleted_meanwhile():
    factory = factory_for()
    (client,) = connect(factory)
    client.ask(b"roomAdd otherRoom\n")
    factory.node.rooms.destroy("otherRoom")  # the members are told on the next turn
    client.send(b"roomLeave otherRoom\n", advance=False)
    assert_lines(client.lines(), [error("room does not exist", 2, "false")])
    factory.clock.advance(0)
    assert_lines(
        client.lines(),
        ['{"message":"this room has been deleted","room":"otherRoom","from":0,"context":"user","sentAt":<ms>}'],
    )
    assert client.connection.rooms == []


def test_rooms_are_joined_in_order():
    (client,) = connect(factory_for())
    client.ask(b"roomAdd otherRoom\nroomAdd defaultRoom\n")
    assert client.connection.rooms == ["otherRoom", "defaultRoom"]


def test_room_view_for_members_only():
    factory = factory_for()
    a, b = connect(factory, 2)
    assert_lines(a.ask(b"roomView defaultRoom\n"), [error("connection not in this room (defaultRoom)", 1)])
    assert_lines(a.ask(b"roomView noSuchRoom\n"), [error("connection not in this room (noSuchRoom)", 2)])
    assert_lines(a.ask(b"roomView\n"), [error("connection not in this room ()", 3)])
    a.ask(b"roomAdd defaultRoom\n")
    factory.clock.advance(1.5)
    b.ask(b"roomAdd defaultRoom\n")
    assert_lines(
        a.ask(b"roomView defaultRoom\n"),
        [
            ok_data(
                '{"room":"defaultRoom","members":{"%s":{"id":"%s","joinedAt":1795627006000},'
                '"%s":{"id":"%s","joinedAt":1795627007500}},"membersCount":2}' % (a.id, a.id, b.id, b.id),
                5,
            )
        ],
    )


def test_join_and_leave_vetoes_are_the_error_reply():
    class Bouncer(ChatMiddleware):
        name = "bouncer"

        def join(self, connection, room):
            if room == "otherRoom":
                raise ActionError("members only")

        async def leave(self, connection, room):
            raise ValueError("you cannot leave")

    (client,) = connect(factory_for(plugins=[Bouncer]))
    assert_lines(client.ask(b"roomAdd otherRoom\n"), [error("members only", 1, "false")])
    assert_lines(client.ask(b"roomAdd defaultRoom\n"), [ok_data("true", 2)])
    assert_lines(client.ask(b"roomLeave defaultRoom\n"), [error("you cannot leave", 3, "false")])
    assert client.connection.rooms == ["defaultRoom"]


# --- say ----------------------------------------------------------------------


def chat(text: str, room: str, sender: str | int) -> str:
    sender_json = json.dumps(sender)
    return '{"message":%s,"room":"%s","from":%s,"context":"user","sentAt":1795627006000}' % (
        json.dumps(text, ensure_ascii=False),
        room,
        sender_json,
    )


def test_say_reaches_every_member_after_the_senders_ok():
    factory = factory_for()
    a, b, outsider = connect(factory, 3)
    a.ask(b"roomAdd defaultRoom\n")
    b.ask(b"roomAdd defaultRoom\n")
    outsider.ask(b"roomAdd otherRoom\n")
    assert_lines(a.ask(b"say defaultRoom hello  world \n"), [OK % 2, chat("hello  world ", "defaultRoom", a.id)])
    assert_lines(b.lines(), [chat("hello  world ", "defaultRoom", a.id)])
    assert outsider.lines() == []


def test_say_errors():
    (client,) = connect(factory_for())
    client.ask(b"roomAdd defaultRoom\n")
    assert_lines(client.ask(b"say\n"), [error("both room and message are required", 2)])
    assert_lines(client.ask(b"say defaultRoom\n"), [error("both room and message are required", 3)])
    assert_lines(client.ask(b"say  hello\n"), [error("both room and message are required", 4)])
    assert_lines(client.ask(b"say otherRoom hello\n"), [error("connection not in this room (otherRoom)", 5)])
    assert_lines(client.ask(b"say noRoom hello\n"), [error("connection not in this room (noRoom)", 6)])


def test_on_say_receive_changes_or_vetoes_once_and_say_per_recipient():
    calls = []

    class Polite(ChatMiddleware):
        name = "polite"
        priority = 10

        def on_say_receive(self, connection, room, payload):
            calls.append(("receive", payload["message"]))
            if "darn" in payload["message"]:
                raise ActionError("mind your language")
            return {**payload, "message": payload["message"].upper()}

    class Shout(ChatMiddleware):
        name = "shout"
        priority = 20

        def on_say_receive(self, connection, room, payload):
            calls.append(("receive2", payload["message"]))
            return None  # keeps the payload

        def say(self, connection, room, payload):
            if connection.params.get("file") == "deaf":
                raise ActionError("not for you")
            return {**payload, "message": payload["message"] + "!"}

    factory = factory_for(plugins=[Shout, Polite])
    a, b, deaf = connect(factory, 3)
    for client in (a, b, deaf):
        client.ask(b"roomAdd defaultRoom\n")
    deaf.ask(b"paramAdd file=deaf\n")
    assert_lines(a.ask(b"say defaultRoom hi there\n"), [OK % 2, chat("HI THERE!", "defaultRoom", a.id)])
    assert_lines(b.lines(), [chat("HI THERE!", "defaultRoom", a.id)])
    assert deaf.lines() == []
    assert calls == [("receive", "hi there"), ("receive2", "HI THERE")]
    assert_lines(a.ask(b"say defaultRoom darn\n"), [error("mind your language", 3)])
    assert b.lines() == []


# --- file ---------------------------------------------------------------------


def test_file_verb_streams_raw_bytes_and_keeps_the_connection_open():
    (client,) = connect(factory_for())
    expected = (REPO / "public" / "simple.html").read_bytes()
    client.send(b"file simple.html\n")
    assert client.read() == expected
    assert_lines(client.ask(b"paramsView\n"), [ok_data('{"file":"simple.html"}', 2)])
    client.send(b"file css/../index.html\n")
    assert client.read() == (REPO / "public" / "index.html").read_bytes()


def test_file_verb_refusals_all_say_not_found_without_counters():
    (client,) = connect(factory_for())
    public = REPO / "public"
    for name in (
        b"nope.html",
        b"../package.json",
        b"../setup.cfg",
        b"/etc/passwd",
        str(public / "simple.html").encode(),  # absolute, even inside public/
        b"css//x",
        b"%2e%2e/setup.cfg",
        b"..\\setup.cfg",
    ):
        client.send(b"file " + name + b"\n")
        assert client.read() == NOT_FOUND + b"\r\n", name
    assert client.connection.message_count == 8


def test_file_verb_without_a_name_uses_the_sticky_param_or_fails():
    (client,) = connect(factory_for())
    client.send(b"file\n")
    assert client.read() == NOT_FOUND + b"\r\n"
    client.send(b"file \n")
    assert client.read() == NOT_FOUND + b"\r\n"
    client.ask(b"paramAdd file=simple.html\n")
    client.send(b"file\n")
    assert client.read() == (REPO / "public" / "simple.html").read_bytes()


def test_big_file_is_streamed_with_flow_control_and_messages_wait_behind_it(tmp_path):
    public = tmp_path / "public"
    public.mkdir()
    content = bytes(range(256)) * 4096 * 3  # 3 MiB
    (public / "big.bin").write_bytes(content)
    (public / "small.txt").write_bytes(b"small\n")
    factory = factory_for(f'[general.paths]\npublic = ["{public}"]\n', directory=str(tmp_path))
    (client,) = connect(factory, buffer_size=65536)
    client.send(b"roomAdd defaultRoom\nfile big.bin\nfile small.txt\nsay defaultRoom hi\n")
    first = client.transport.value()
    # roomAdd's reply, then at most two chunks: the file is not read whole
    assert len(first) <= 2 * 65536 + 200
    assert client.transport.reading  # a small backlog: requests are still read
    received = client.read_until_quiet()
    lines_before, _, rest = received.partition(b"\r\n")
    assert b'"data":true' in lines_before
    assert rest.startswith(content)
    tail = rest[len(content) :]
    assert tail.startswith(b"small\n")
    assert_lines(
        tail[len(b"small\n") :].split(b"\r\n")[:-1],
        [OK % 4, chat("hi", "defaultRoom", client.id)],
    )
    assert client.transport.reading
    assert client.protocol._file is None


def test_quit_while_a_file_streams_finishes_the_file_then_says_goodbye(tmp_path):
    public = tmp_path / "public"
    public.mkdir()
    content = b"z" * 300000
    (public / "big.bin").write_bytes(content)
    factory = factory_for(f'[general.paths]\npublic = ["{public}"]\n', directory=str(tmp_path))
    (client,) = connect(factory, buffer_size=65536)
    client.send(b"file big.bin\nquit\n")
    received = b""
    while not client.transport.disconnecting:
        received += client.read()
    received += client.read()
    assert received == content + b'{"status":"Bye!","context":"api"}\r\n'
    factory.clock.advance(0)
    assert client.closed


def test_requests_piling_up_behind_a_file_pause_input_until_it_is_sent(tmp_path):
    public = tmp_path / "public"
    public.mkdir()
    (public / "big.bin").write_bytes(b"b" * 1000000)
    factory = factory_for(f'[general.paths]\npublic = ["{public}"]\n', directory=str(tmp_path))
    (client,) = connect(factory, buffer_size=65536)
    client.send(b"file big.bin\n")
    for _ in range(1000):  # ~100 kB of replies queue behind the file
        client.send(b"paramsView\n")
        if not client.transport.reading:
            break
    assert not client.transport.reading
    assert not client.transport.aborted
    data = client.read_until_quiet()
    assert data.startswith(b"b" * 1000000)
    replies = data[1000000:].split(b"\r\n")[:-1]
    assert len(replies) == _ + 1
    assert json.loads(replies[-1])["messageCount"] == _ + 2
    assert client.transport.reading  # caught up: reading again


def test_files_queued_behind_a_file_are_opened_in_turn_and_dropped_on_quit(tmp_path):
    public = tmp_path / "public"
    public.mkdir()
    (public / "a.bin").write_bytes(b"a" * 200000)
    (public / "b.txt").write_bytes(b"bbb")
    factory = factory_for(f'[general.paths]\npublic = ["{public}"]\n', directory=str(tmp_path))
    (client,) = connect(factory, buffer_size=65536)
    client.send(b"file a.bin\nfile b.txt\nfile nope\nfile b.txt\n")
    (public / "b.txt").write_bytes(b"BBB")  # read when its turn comes, not before
    data = client.read_until_quiet()
    assert data == b"a" * 200000 + b"BBB" + NOT_FOUND + b"\r\n" + b"BBB"
    client.send(b"file a.bin\nfile b.txt\nquit\n")
    data = b""
    while not client.closed:
        data += client.read()
        factory.clock.advance(0)
    data += client.read()
    assert data == b"a" * 200000 + b'{"status":"Bye!","context":"api"}\r\n'
