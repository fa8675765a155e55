"""Resume on the wire, every transport (docs/protocol-websocket.md and
docs/protocol-socket.md, 'Resume'): the opt-in roomAdd forms, their exact
replies, says carrying offset and epoch, the missed messages first.

Members that do not opt in keep today's frames (the other websocket and
socket tests check those unchanged).
"""

import json

from ahtwist.socket import SocketFactory
from tests.helpers import make_node
from tests.socket_helpers import assert_lines, connect, error
from tests.wshelpers import WSHarness

T0 = 1795627006000
BAD_SINCE = "invalid since: give no position, or an offset (an integer >= 0) and an epoch"


def say_line(message: str, sender: str, offset: int | None = None, epoch: str | None = None) -> bytes:
    text = '{"message":"%s","room":"defaultRoom","from":"%s","context":"user","sentAt":%d' % (message, sender, T0)
    if offset is not None:
        text += ',"offset":%d,"epoch":"%s"' % (offset, epoch)
    return (text + "}").encode()


def epoch_of(node, room: str = "defaultRoom") -> str:
    box: list = []
    node.rooms.history.position(room).addCallback(box.append)
    return box[0][1]


# --- websocket ---------------------------------------------------------------------------


def test_websocket_join_from_now_then_says_carry_offset_and_epoch():
    h = WSHarness(make_node())
    epoch = epoch_of(h.node)
    plain, tracked = h.client(), h.client()
    plain.request({"event": "roomAdd", "room": "defaultRoom"})
    tracked.send_text(b'{"event":"roomAdd","room":"defaultRoom","since":{},"messageId":"j"}')
    assert tracked.texts() == [
        b'{"status":"OK","context":"response","data":{"recovered":true,"offset":0,"epoch":"%s"},"messageCount":1,"messageId":"j"}'
        % epoch.encode()
    ]
    plain_id = plain.request({"event": "detailsView"})[0]["data"]["id"]
    plain.send_text(b'{"event":"say","room":"defaultRoom","message":"hi","messageId":5}')
    assert plain.texts() == [
        b'{"status":"OK","context":"response","messageCount":3,"messageId":5}',
        say_line("hi", plain_id),
    ]
    assert tracked.texts() == [say_line("hi", plain_id, 1, epoch)]


def test_websocket_resume_gets_exactly_the_missed_messages_then_live():
    h = WSHarness(make_node())
    epoch = epoch_of(h.node)
    speaker, listener = h.client(), h.client()
    speaker.request({"event": "roomAdd", "room": "defaultRoom"})
    speaker_id = speaker.request({"event": "detailsView"})[0]["data"]["id"]
    for n in range(1, 4):
        speaker.request({"event": "say", "room": "defaultRoom", "message": f"m{n}"})
    listener.send_text(
        b'{"event":"roomAdd","room":"defaultRoom","since":{"offset":1,"epoch":"%s"},"messageId":7}' % epoch.encode()
    )
    speaker.send({"event": "say", "room": "defaultRoom", "message": "m4"})
    assert listener.texts() == [
        b'{"status":"OK","context":"response","data":{"recovered":true,"offset":3,"epoch":"%s"},"messageCount":1,"messageId":7}'
        % epoch.encode(),
        say_line("m2", speaker_id, 2, epoch),
        say_line("m3", speaker_id, 3, epoch),
        say_line("m4", speaker_id, 4, epoch),
    ]


def replies_from(client) -> str:
    return client.request({"event": "detailsView"})[0]["data"]["id"]


def test_websocket_resume_of_a_lost_epoch_answers_recovered_false_and_joins():
    """recovered false; what the room holds now is all new to the client."""
    h = WSHarness(make_node())
    epoch = epoch_of(h.node)
    speaker, listener = h.client(), h.client()
    speaker.request({"event": "roomAdd", "room": "defaultRoom"})
    speaker.request({"event": "say", "room": "defaultRoom", "message": "m1"})
    replies = listener.request(
        {"event": "roomAdd", "room": "defaultRoom", "since": {"offset": 0, "epoch": "old"}, "messageId": 1}
    )
    assert replies == [
        {
            "status": "OK",
            "context": "response",
            "data": {"recovered": False, "offset": 1, "epoch": epoch},
            "messageCount": 1,
            "messageId": 1,
        },
        {"message": "m1", "room": "defaultRoom", "from": replies_from(speaker), "context": "user", "sentAt": T0, "offset": 1, "epoch": epoch},
    ]
    assert h.node.rooms.resumes.resume_misses == 1


def test_websocket_resume_errors():
    h = WSHarness(make_node())
    c = h.client()
    for n, since in enumerate([[], {"offset": 1}, {"offset": -1, "epoch": "e"}, {"offset": "1", "epoch": "e"}], 1):
        c.send({"event": "roomAdd", "room": "defaultRoom", "since": since, "messageId": n})
    c.send({"event": "roomAdd", "room": "nope", "since": {}, "messageId": 5})
    c.send({"event": "roomAdd", "room": "defaultRoom", "since": {}, "messageId": 6})
    c.send({"event": "roomAdd", "room": "defaultRoom", "since": {}, "messageId": 7})
    texts = c.texts()
    assert texts[:4] == [
        b'{"status":"%s","error":"%s","context":"response","data":false,"messageCount":%d,"messageId":%d}'
        % (BAD_SINCE.encode(), BAD_SINCE.encode(), n, n)
        for n in range(1, 5)
    ]
    assert texts[4] == (
        b'{"status":"room does not exist","error":"room does not exist","context":"response","data":false,"messageCount":5,"messageId":5}'
    )
    assert json.loads(texts[5])["data"]["recovered"] is True
    assert texts[6] == (
        b'{"status":"connection already in this room (defaultRoom)","error":"connection already in this room (defaultRoom)","context":"response","data":false,"messageCount":7,"messageId":7}'
    )


# --- socket: the verb and the JSON line ---------------------------------------------------------


def test_socket_verb_resume_forms():
    node = make_node()
    factory = SocketFactory(node)
    epoch = epoch_of(node)
    speaker, listener, other = connect(factory, 3)
    speaker.ask(b"roomAdd defaultRoom\n")
    speaker.ask(b"say defaultRoom m1\nsay defaultRoom m2\n")
    ok = '{"status":"OK","context":"response","data":{"recovered":%s,"offset":2,"epoch":"%s"},"messageCount":%d,"messageId":"<uuid>"}'
    assert_lines(listener.ask(b"roomAdd defaultRoom since\n"), [ok % ("true", epoch, 1)])
    assert_lines(other.ask(f"roomAdd defaultRoom since 1 {epoch}\n"), [ok % ("true", epoch, 1)] + [say_line("m2", speaker.id, 2, epoch).decode()])
    speaker.lines()
    assert speaker.ask(b"say defaultRoom m3\n")[1:] == [say_line("m3", speaker.id)]
    assert listener.lines() == [say_line("m3", speaker.id, 3, epoch)]
    assert other.lines() == [say_line("m3", speaker.id, 3, epoch)]
    lines = other.ask(b"roomAdd otherRoom since x y\nroomAdd otherRoom since 1\nroomAdd otherRoom since -1 e\n")
    assert_lines(lines, [error(BAD_SINCE, n, "false") for n in (2, 3, 4)])


def test_socket_json_line_resume_mirrors_the_websocket():
    node = make_node()
    factory = SocketFactory(node)
    epoch = epoch_of(node)
    speaker, listener = connect(factory, 2)
    speaker.ask(b"roomAdd defaultRoom\nsay defaultRoom m1\nsay defaultRoom m2\n")
    line = json.dumps({"event": "roomAdd", "room": "defaultRoom", "since": {"offset": 0, "epoch": epoch}, "messageId": "r1"})
    assert listener.ask(line + "\n") == [
        b'{"status":"OK","context":"response","data":{"recovered":true,"offset":2,"epoch":"%s"},"messageCount":1,"messageId":"r1"}'
        % epoch.encode(),
        say_line("m1", speaker.id, 1, epoch),
        say_line("m2", speaker.id, 2, epoch),
    ]
    line = json.dumps({"event": "roomAdd", "room": "otherRoom", "since": {"offset": "0"}})
    assert_lines(listener.ask(line + "\n"), [error(BAD_SINCE, 2, "false")])


def test_socket_json_line_without_since_is_still_an_action_line():
    """Only the resume form is a verb; any other JSON object still runs an action."""
    (client,) = connect(SocketFactory(make_node()))
    lines = client.ask(json.dumps({"event": "roomAdd", "room": "defaultRoom", "messageId": "x"}) + "\n")
    assert lines == [
        b'{"error":"unknown action or invalid apiVersion","context":"response","messageCount":1,"messageId":"x"}'
    ]


def test_socket_chat_line_is_encoded_once_and_again_when_the_payload_changes():
    """Members of a room get the same bytes; a payload changed between two
    deliveries (say middleware may hand out one dict) is encoded again."""
    factory = SocketFactory(make_node())
    a, b = connect(factory, 2)
    payload = {"message": "one", "room": "r", "from": 0, "context": "user", "sentAt": T0}
    a.connection.send_message(payload)
    line = factory.shared_line[2]
    payload["message"] = "two"
    b.connection.send_message(payload)
    assert a.lines() == [b'{"message":"one","room":"r","from":0,"context":"user","sentAt":%d}' % T0]
    assert b.lines() == [b'{"message":"two","room":"r","from":0,"context":"user","sentAt":%d}' % T0]
    assert factory.shared_line[2] is not line
    reply = {"status": "OK", "context": "response"}
    a.connection.send_message(reply)  # not chat: never cached
    assert factory.shared_line[0] is payload


def test_a_long_resume_goes_out_over_several_reactor_turns():
    """Missed messages are written 200 per turn, so the transport can send
    them in between (a 10,000-message resume over a socket stays within its
    output limit: bench/history_bench.py)."""
    from ahtwist.resume import CATCH_UP_BATCH

    node = make_node()
    factory = SocketFactory(node)
    result_box: list = []
    node.rooms.add("big", history_messages=1000).addCallback(result_box.append)
    speaker, listener = connect(factory, 2)
    speaker.ask(b"roomAdd big\n")
    for n in range(450):
        speaker.send(b"say big %d\n" % n, advance=False)
    node.reactor.advance(0)
    speaker.lines()
    epoch = epoch_of(node, "big")
    listener.send(f"roomAdd big since 0 {epoch}\n", advance=False)
    assert len(listener.lines()) == 1  # the reply
    clock = node.reactor
    turns = []
    while due := [c for c in clock.getDelayedCalls() if c.getTime() <= clock.seconds()]:
        for call in due:  # one reactor turn: what was due when it began
            clock.calls.remove(call)
            call.called = 1
            call.func(*call.args, **call.kw)
        turns.append(len(listener.lines()))
    assert [n for n in turns if n] == [CATCH_UP_BATCH, CATCH_UP_BATCH, 50]
