"""Drain without loss (issue 12, item 7): on stop, websockets answer what is
in flight, then close; new actions and new upgrades are refused meanwhile."""

import json
import struct

from twisted.internet.defer import Deferred

from ahtwist.service import wait_until
from tests.helpers import make_node
from tests.wshelpers import OP_CLOSE, OP_TEXT, WSHarness

SHUTTING_DOWN = "the server is shutting down"


def harness(text: str = "") -> WSHarness:
    return WSHarness(make_node(text))


def stop(h: WSHarness, destroy: bool = False):
    h.node.stopping = True  # as the top service does before stopping the servers
    return h.websockets.stop(destroy, lambda done: wait_until(h.node.reactor, done, 5))


def sleep(c, ms: int, message_id: int) -> None:
    c.send({"event": "action", "params": {"action": "sleepTest", "sleepDuration": ms}, "messageId": message_id})


def test_in_flight_replies_are_sent_before_the_1001_close():
    h = harness()
    busy, idle = h.client(), h.client()
    sleep(busy, 1000, 1)
    sleep(busy, 2000, 2)
    done = stop(h)
    assert idle.frames() == [(OP_CLOSE, struct.pack("!H", 1001))]
    assert busy.frames() == []
    # no new actions meanwhile
    [refused] = busy.request({"event": "action", "params": {"action": "randomNumber"}, "messageId": 3})
    assert (refused["error"], refused["messageId"]) == (SHUTTING_DOWN, 3)
    h.node.reactor.advance(1)
    [(opcode, payload)] = busy.frames()
    assert opcode == OP_TEXT and json.loads(payload)["messageId"] == 1
    h.node.reactor.advance(1)
    frames = busy.frames()
    assert [opcode for opcode, _ in frames] == [OP_TEXT, OP_CLOSE]
    assert json.loads(frames[0][1])["sleepDuration"] == 2000
    assert frames[1][1] == struct.pack("!H", 1001)
    busy.close(1001)
    idle.close(1001)
    h.node.reactor.advance(0.1)
    assert busy.lost and idle.lost
    assert done.called and not isinstance(done.result, Deferred)
    assert h.node.connections == {}


def test_with_destroy_clients_the_reply_comes_then_close_1000():
    h = harness("[servers.websocket]\ndestroyClientsOnShutdown = true\n")
    c = h.client()
    c.request({"event": "roomAdd", "room": "defaultRoom"})
    sleep(c, 500, 7)
    stop(h, destroy=True)
    assert c.frames() == []
    h.node.reactor.advance(0.5)
    frames = c.frames()
    assert [opcode for opcode, _ in frames] == [OP_TEXT, OP_CLOSE]
    assert json.loads(frames[0][1])["messageId"] == 7
    assert frames[1][1] == struct.pack("!H", 1000)
    assert h.node.rooms.local_members("defaultRoom") == []


def test_what_is_still_running_at_the_wait_limit_is_dropped():
    h = harness()
    c = h.client()
    sleep(c, 60000, 1)
    fired: list = []
    stop(h).addBoth(fired.append)
    h.node.reactor.advance(4.9)
    assert not c.lost and fired == []
    h.node.reactor.advance(0.2)
    assert c.transport.aborted and fired == [False]  # the wait gave up
    h.node.reactor.advance(0)
    assert c.texts() == []  # nothing was answered: it ran past the limit
    assert h.node.processor.in_flight == 0  # and it was cancelled with its connection


def test_new_upgrades_during_the_drain_get_503():
    h = harness()
    stop(h)
    c = h.client(handshake=False)
    assert c.handshake() == b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    assert h.node.connections == {}
