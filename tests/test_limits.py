"""Quotas and limits (issue 12, items 5 and 6): rooms, message rate, in-flight
cap, sleepTest's cap, actions of a connection that went away.

The rules are unit-tested in :mod:`ahtwist.limits`, then through the real
transports in memory, asserting the exact reply each client gets.
"""

import json

from twisted.internet.task import Clock

from ahtwist.limits import OutboundMeter, TokenBucket
from ahtwist.socket import SocketFactory
from tests.helpers import HTTPClient, make_node
from tests.socket_helpers import assert_lines, connect, error, factory_for
from tests.wshelpers import WSHarness

# --- the rules ---------------------------------------------------------------


def test_token_bucket_spends_the_burst_then_refills_at_the_rate():
    clock = Clock()
    bucket = TokenBucket(2, 3, clock.seconds)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.advance(0.5)  # one token back
    assert [bucket.take(), bucket.take()] == [True, False]
    clock.advance(100)  # never more than the burst
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_outbound_meter_counts_only_while_the_transport_is_paused():
    over = []
    events = []
    meter = OutboundMeter(100, over.append, lambda: events.append("pause"), lambda: events.append("resume"))
    meter.wrote(1000)  # the transport is not behind: nothing counted
    assert (meter.unsent, over) == (0, [])
    meter.pauseProducing()
    meter.wrote(60)
    meter.wrote(40)
    assert (meter.unsent, over) == (100, [])
    meter.wrote(1)
    assert over == [101]
    meter.wrote(50)  # reported once
    assert over == [101]
    meter.resumeProducing()
    assert (meter.unsent, events) == (0, ["pause", "resume"])


# --- rooms ---------------------------------------------------------------------


def test_create_chat_room_refuses_a_long_name_and_too_many_rooms():
    node = make_node("[limits]\nmaxRoomNameLength = 8\nmaxRooms = 3\n")
    http = HTTPClient(node)
    r = http.post_json("/api/createChatRoom", {"name": "x" * 9})
    assert (r.status, r.json()["error"]) == (400, "room name is too long (8 characters max)")
    r = http.post_json("/api/createChatRoom", {"name": "x" * 8})  # defaultRoom, otherRoom, this
    assert (r.status, r.json().get("error")) == (200, None)
    r = http.post_json("/api/createChatRoom", {"name": "fourth"})
    assert (r.status, r.json()["error"]) == (400, "too many rooms (3 max)")
    r = http.post_json("/api/createChatRoom", {"name": "x" * 8})  # exists is said first
    assert (r.status, r.json()["error"]) == (400, "room exists")
    assert sorted(node.rooms.list().result) == ["defaultRoom", "otherRoom", "xxxxxxxx"]


def test_room_names_are_bounded_in_every_verb_and_joins_per_connection():
    factory = factory_for("[limits]\nmaxRoomNameLength = 12\nmaxRoomsPerConnection = 1\n")
    (client,) = connect(factory)
    long = b"y" * 13
    too_long = "room name is too long (12 characters max)"
    assert_lines(client.ask(b"roomAdd " + long + b"\n"), [error(too_long, 1, "false")])
    assert_lines(client.ask(b"roomLeave " + long + b"\n"), [error(too_long, 2, "false")])
    assert_lines(client.ask(b"say " + long + b" hi\n"), [error(too_long, 3)])
    assert_lines(client.ask(b"roomAdd defaultRoom\n"), [
        '{"status":"OK","context":"response","data":true,"messageCount":4,"messageId":"<uuid>"}'
    ])
    assert_lines(
        client.ask(b"roomAdd otherRoom\n"), [error("connection is in too many rooms (1 max)", 5, "false")]
    )
    assert client.connection.rooms == ["defaultRoom"]


def test_membership_is_a_set_in_join_order():
    """Joining and leaving many rooms: membership answers and keeps join order."""
    node = make_node("[limits]\nmaxRoomsPerConnection = 2000\nmaxRooms = 3000\n")
    for i in range(2000):
        node.rooms.add(f"r{i}")
    (client,) = connect(SocketFactory(node))
    client.send(b"".join(b"roomAdd r%d\n" % i for i in range(2000)))
    rooms = client.connection.rooms
    assert len(rooms) == 2000 and list(rooms)[:3] == ["r0", "r1", "r2"] and "r1999" in rooms
    client.send(b"roomLeave r1\n")
    assert list(rooms)[:3] == ["r0", "r2", "r3"] and "r1" not in rooms
    assert client.connection.details()["rooms"][:2] == ["r0", "r2"]


def test_room_view_lists_a_bounded_number_of_members_with_the_true_count():
    node = make_node("[limits]\nmaxRoomViewMembers = 2\n")
    clients = connect(SocketFactory(node), 3)
    for c in clients:
        c.ask(b"roomAdd defaultRoom\n")
    [line] = clients[0].ask(b"roomView defaultRoom\n")
    data = json.loads(line)["data"]
    assert data["membersCount"] == 3
    assert list(data["members"]) == [clients[0].connection.id, clients[1].connection.id]


# --- message rate ----------------------------------------------------------------


def test_message_rate_limit_on_the_socket():
    node = make_node("[limits]\nmessagesPerSecond = 1\nmessageBurst = 2\n")
    (client,) = connect(SocketFactory(node))
    lines = client.ask(b"paramsView\nparamsView\nparamsView\n")
    assert_lines(lines[2:], [error("you are sending messages too fast", 3)])
    node.reactor.advance(1)
    assert_lines(client.ask(b"paramsView\n"), [
        '{"status":"OK","context":"response","data":{},"messageCount":4,"messageId":"<uuid>"}'
    ])
    assert node.stats.local("limits:rateLimited") == 1


def test_message_rate_limit_on_the_websocket():
    h = WSHarness(make_node("[limits]\nmessagesPerSecond = 1\nmessageBurst = 1\n"))
    c = h.client()
    assert c.request({"event": "detailsView", "messageId": 1})[0]["status"] == "OK"
    assert c.texts() == []
    c.send({"event": "action", "params": {"action": "randomNumber"}, "messageId": 2})
    assert c.texts() == [
        b'{"status":"you are sending messages too fast","error":"you are sending messages too fast",'
        b'"context":"response","messageCount":2,"messageId":2}'
    ]
    h.node.reactor.advance(1)
    [reply] = c.request({"event": "action", "params": {"action": "randomNumber"}, "messageId": 3})
    assert "randomNumber" in reply


def test_message_rate_limit_is_off_by_default():
    node = make_node()
    (client,) = connect(SocketFactory(node))
    assert len(client.ask(b"paramsView\n" * 500)) == 500
    assert client.connection.bucket is None


# --- actions -----------------------------------------------------------------------


def test_sleep_test_duration_is_capped():
    http = HTTPClient(make_node("[limits]\nmaxSleepDuration = 5000\n"))
    r = http.post_json("/api/sleepTest", {"sleepDuration": 1e300})
    assert (r.status, r.json()["error"]) == (400, "sleepDuration must be at most 5000 ms")
    r = http.get("/api/sleepTest?sleepDuration=5000", advance=5)
    assert (r.status, r.json()["sleepDuration"]) == (200, 5000)


def test_global_in_flight_cap_refuses_with_the_server_is_too_busy():
    node = make_node("[limits]\nmaxActionsInFlight = 3\n[general]\nsimultaneousActions = 100\n")
    clients = connect(SocketFactory(node), 2)
    clients[0].ask(b"sleepTest\nsleepTest\n")
    clients[1].ask(b"sleepTest\n")
    assert node.processor.in_flight == 3
    assert_lines(clients[1].ask(b"randomNumber\n"), [
        '{"error":"the server is too busy","context":"response","messageCount":2,"messageId":"<uuid>"}'
    ])
    node.reactor.advance(1)
    assert node.processor.in_flight == 0
    assert [json.loads(line)["messageCount"] for line in clients[1].lines()] == [1]  # its sleep
    [line] = clients[1].ask(b"randomNumber\n")
    assert "randomNumber" in json.loads(line)


def test_actions_of_a_connection_that_went_away_are_cancelled():
    """1,000 sleeping actions of clients that left hold nothing: no timers, no
    connections, nothing in flight."""
    node = make_node("[general]\nsimultaneousActions = 10\n")
    clients = connect(SocketFactory(node), 100)
    for c in clients:
        c.send(b'{"action":"sleepTest","params":{"sleepDuration":50000}}\n' * 10)
    assert node.processor.in_flight == 1000
    assert len(node.reactor.getDelayedCalls()) >= 1000
    for c in clients:
        c.drop()
    assert node.processor.in_flight == 0
    assert node.connections == {}
    assert [c for c in node.reactor.getDelayedCalls() if c.getTime() > node.reactor.seconds() + 40] == []


def test_memory_is_handed_back_once_a_few_seconds_after_slow_clients_are_dropped():
    """The trims coalesce: drops in a burst cost one malloc_trim(0), 3 s after
    the latest (once the dropped connections are gone)."""
    from ahtwist.limits import MemoryReturner

    clock = Clock()
    calls = []
    returner = MemoryReturner(clock, delay=3.0, trim=lambda pad: calls.append(pad) or 1)
    for _ in range(3):
        returner.soon()
        clock.advance(1)
    assert calls == []  # 1 s after the latest drop
    clock.advance(1.9)
    assert calls == []
    clock.advance(0.1)
    assert calls == [0] and returner.trims == 1
    returner.soon()
    clock.advance(3)
    assert calls == [0, 0]


def test_a_dropped_slow_client_asks_for_the_memory_back():
    node = make_node()
    node.limits.slow_client_dropped(node.stats, "socket")
    assert node.stats.local("limits:slowClientsDropped") == 1
    assert node.limits.slow_clients_dropped == {"socket": 1}
    assert [round(c.getTime() - node.reactor.seconds()) for c in node.reactor.getDelayedCalls()] == [3]
