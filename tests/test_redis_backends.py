"""The Redis providers against a real ``redis-server`` (started here, on a free port).

Each test builds one or two "nodes" (the real :class:`ClusterService` that
``--redis`` builds: its link and the providers over it) on the real reactor,
and checks what a second node sees.  Trial's TestCase checks after every test
that nothing was left behind on the reactor (timers, connections), which is
how these tests catch leaks across outages.
"""

import os
import signal
import tempfile
import unittest.mock

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from ahtwist.backends.interfaces import IBus, ICache, IPeers, IRoomBackend, IRoomHistory, IStats
from ahtwist.backends.memory import CacheMiss
from ahtwist.errors import RoomError
from tests.helpers import config_from, free_port, wait_for_in_reactor
from tests.redis_server import RedisServer

SERVER: RedisServer | None = None


@pytest.fixture(scope="module", autouse=True)
def module_server(redis_server):
    """The module's redis-server (tests/conftest.py), for the trial-style
    test cases below, which cannot take fixtures."""
    global SERVER
    SERVER = redis_server
    yield SERVER
    SERVER = None


def sleep(seconds: float) -> Deferred:
    return deferLater(reactor, seconds, lambda: None)


class Node:
    """The Redis side of one cluster node: the real :class:`ClusterService`
    (what ``--redis`` builds) for a config naming the node, its token, its
    RPC timeout and starting rooms.

    Only its link is started, not its periodic work: these tests flush the
    stats and send heartbeats themselves.  ``announce=False`` also leaves out
    the heartbeat the service sends when the link comes up, for a node that
    has not announced itself yet.
    """

    def __init__(self, url: str, node_id: str, token: str = "secret", rpc_timeout_ms: int = 300,
                 starting_rooms: tuple[str, ...] = ("defaultRoom",), announce: bool = True,
                 redis_settings: str = "") -> None:
        from ahtwist.backends.redis import ClusterService

        rooms = ", ".join(f'"{room}"' for room in starting_rooms)
        config = config_from(
            f'[general]\nid = "{node_id}"\nserverToken = "{token}"\nchannel = "test"\n'
            f"rpcTimeout = {rpc_timeout_ms}\nstartingChatRooms = [{rooms}]\n"
            f'[redis]\nurl = "{url}"\nreconnectMaxDelay = 1\n{redis_settings}'
        )
        self.cluster = cluster = ClusterService(config, reactor)
        if not announce:
            cluster.link.on_up.remove(cluster._beat)
        self.id = node_id
        self.link = cluster.link
        self.bus = cluster.bus
        self.rooms = cluster.rooms
        self.cache = cluster.cache
        self.stats = cluster.stats
        self.peers = cluster.peers
        self.history = cluster.history
        self.events: list[dict] = []
        self.bus.subscribe(self.events.append)

    async def start(self) -> "Node":
        self.link.start()
        await wait_for_in_reactor(lambda: self.link.up)
        return self


class RedisProviderTests(TestCase):
    timeout = 60

    async def node(self, node_id: str, **kw) -> Node:
        return await self.node_on(SERVER.url, node_id, **kw)

    def setUp(self) -> None:
        SERVER.flush()

    async def test_providers_provide_the_interfaces(self):
        a = await self.node("a")
        self.assertTrue(verifyObject(ICache, a.cache))
        self.assertTrue(verifyObject(IStats, a.stats))
        self.assertTrue(verifyObject(IPeers, a.peers))
        self.assertTrue(verifyObject(IRoomBackend, a.rooms))
        self.assertTrue(verifyObject(IBus, a.bus))
        self.assertTrue(verifyObject(IRoomHistory, a.history))

    async def test_cache_is_shared_and_keeps_the_memory_shape(self):
        a, b = await self.node("a"), await self.node("b")
        self.assertIs(await a.cache.save("k", {"x": [1, "two"]}, 5000), True)
        self.assertEqual(await b.cache.size(), 1)
        first = await b.cache.load("k")
        created = first["createdAt"]
        self.assertEqual(
            first,
            {"key": "k", "value": {"x": [1, "two"]}, "expireTimestamp": created + 5000,
             "createdAt": created, "readAt": None},
        )
        second = await a.cache.load("k")
        self.assertIsInstance(second["readAt"], int)
        self.assertGreaterEqual(second["readAt"], created)
        self.assertIs(await a.cache.destroy("k"), True)
        self.assertIs(await b.cache.destroy("k"), False)
        with self.assertRaises(CacheMiss) as miss:
            await b.cache.load("k")
        self.assertEqual(str(miss.exception), "Object not found")
        self.assertEqual(await a.cache.size(), 0)

    async def test_cache_expiry_is_cluster_wide(self):
        a, b = await self.node("a"), await self.node("b")
        await a.cache.save("short", "v", 100)
        await a.cache.save("forever", "w")
        self.assertEqual(await b.cache.size(), 2)
        await sleep(0.2)
        self.assertEqual(await b.cache.size(), 1)
        with self.assertRaises(CacheMiss):
            await b.cache.load("short")
        self.assertEqual((await b.cache.load("forever"))["expireTimestamp"], None)

    async def test_stats_are_counted_locally_and_flushed_in_batches(self):
        a, b = await self.node("a"), await self.node("b")
        for _ in range(3):
            a.stats.increment("web:requests")
        b.stats.increment("web:requests", 4)
        self.assertEqual(a.stats.local("web:requests"), 3)
        # not flushed yet: each node sees its own pending increments only
        self.assertEqual(await a.stats.global_counts(), {"web:requests": 3})
        flushing = a.stats.flush()
        a.stats.increment("web:requests")  # while a flush is in flight
        await a.stats.flush_now()  # what a clean stop does: waits for it, sends the rest
        self.assertTrue(flushing.called)
        await b.stats.flush()
        self.assertEqual(await a.stats.global_counts(), {"web:requests": 8})
        self.assertEqual(await b.stats.global_counts(), {"web:requests": 8})
        self.assertEqual(b.stats.local("web:requests"), 4)

    async def test_peers_are_the_nodes_that_announced_themselves(self):
        a, b = await self.node("node-b", announce=False), await self.node("node-a", announce=False)
        # a node counts itself; another only once it has announced itself
        self.assertEqual(await b.peers.peers(), ["node-a"])
        live, dead = await a.peers.heartbeat()
        self.assertEqual((live, dead), (["node-b"], []))
        await b.peers.heartbeat()
        self.assertEqual(await b.peers.peers(), ["node-a", "node-b"])
        self.assertEqual(await a.peers.peers(), ["node-a", "node-b"])

    async def test_rooms_and_members_are_shared(self):
        a, b = await self.node("a"), await self.node("b")
        self.assertIs(await a.rooms.add_room("r1"), True)
        self.assertIs(await b.rooms.add_room("r1"), False)
        self.assertEqual(await b.rooms.list_rooms(), ["defaultRoom", "r1"])
        self.assertIs(await b.rooms.room_exists("r1"), True)
        first = {"id": "c1", "joinedAt": 1000, "host": "a"}
        # same ms, or even an earlier clock on the other node: join order wins
        second = {"id": "c2", "joinedAt": 999, "host": "b"}
        self.assertIs(await a.rooms.add_member("r1", first), True)
        self.assertIs(await b.rooms.add_member("r1", second), True)
        self.assertIs(await b.rooms.add_member("r1", second), False)
        members = await a.rooms.members("r1")
        self.assertEqual(list(members), ["c1", "c2"])
        self.assertEqual(members["c2"], second)
        self.assertIs(await a.rooms.remove_member("r1", "c2"), True)
        self.assertIs(await a.rooms.remove_member("r1", "c2"), False)
        self.assertIs(await b.rooms.remove_room("r1"), True)
        self.assertIs(await a.rooms.room_exists("r1"), False)
        self.assertEqual(await a.rooms.members("r1"), {})

    async def test_events_reach_every_node_once_and_never_synchronously(self):
        a, b = await self.node("a"), await self.node("b")
        event = {"type": "say", "room": "r", "payload": {"message": "hi"}}
        await a.bus.publish(event)
        self.assertEqual(a.events, [])
        await wait_for_in_reactor(lambda: a.events and b.events)
        await sleep(0.05)
        self.assertEqual(a.events, [event])
        self.assertEqual(b.events, [event])

    async def test_messages_with_another_token_are_ignored(self):
        a, other = await self.node("a"), await self.node("x", token="another")
        await other.bus.publish({"type": "say", "room": "r", "payload": {}})
        await a.bus.publish({"type": "say", "room": "mine", "payload": {}})
        await wait_for_in_reactor(lambda: a.events)
        await sleep(0.05)
        self.assertEqual(a.events, [{"type": "say", "room": "mine", "payload": {}}])
        self.assertEqual(other.events, [{"type": "say", "room": "r", "payload": {}}])

    async def test_rpc_runs_on_the_holding_node(self):
        a, b = await self.node("a"), await self.node("b")
        calls = []

        def on_rpc(connection_id, method, args):
            calls.append((connection_id, method, args))
            if connection_id != "held-by-b":
                return None
            if method == "add_member":
                from twisted.internet.defer import fail, succeed

                return succeed(True) if args == ["room"] else fail(RoomError("room does not exist"))
            raise ValueError("boom")

        b.bus.on_rpc = on_rpc
        a.bus.on_rpc = lambda *args: None
        self.assertIs(await a.bus.call_remote("held-by-b", "add_member", ["room"]), True)
        with self.assertRaises(RoomError) as refused:
            await a.bus.call_remote("held-by-b", "add_member", ["nope"])
        self.assertEqual(refused.exception.message, "room does not exist")
        with self.assertRaises(RoomError) as broken:
            await a.bus.call_remote("held-by-b", "destroy", [])
        self.assertEqual(broken.exception.message, "internal server error")
        self.flushLoggedErrors(ValueError)
        started = reactor.seconds()
        with self.assertRaises(RoomError) as nobody:
            await a.bus.call_remote("held-by-nobody", "add_member", ["room"])
        self.assertEqual(nobody.exception.message, "RPC Timeout")
        self.assertGreaterEqual(reactor.seconds() - started, 0.29)
        self.assertEqual(a.bus.pending_rpcs, {})
        self.assertEqual([c[0] for c in calls], ["held-by-b", "held-by-b", "held-by-b", "held-by-nobody"])

    async def test_a_dead_node_is_cleaned_up_by_survivors(self):
        a, b = await self.node("a"), await self.node("b")
        await a.rooms.add_room("r")
        await b.rooms.add_member("r", {"id": "cb", "joinedAt": 1, "host": "b"})
        await a.rooms.add_member("r", {"id": "ca", "joinedAt": 2, "host": "a"})
        await a.peers.heartbeat()
        await b.peers.heartbeat()
        # b alive: nothing happens
        self.assertEqual(await a.rooms.remove_node("b", a.peers.key, only_if_dead=True), -1)
        # b's last heartbeat 16 s ago: dead
        await a.link.execute("ZADD", a.peers.key, 0, "b")
        live, dead = await a.peers.heartbeat()
        self.assertEqual((live, dead), (["a"], ["b"]))
        self.assertEqual(await a.rooms.remove_node("b", a.peers.key, only_if_dead=True), 1)
        self.assertEqual(list(await a.rooms.members("r")), ["ca"])
        self.assertEqual(await a.peers.peers(), ["a"])

    async def test_unreachable_redis_serves_locally_then_reasserts_on_connect(self):
        """Start-up never waits for Redis: every call is answered locally, each
        failed attempt is one error line (password masked), and once Redis is
        there the node puts its state into it."""
        lines = capture_log(self)
        port = free_port()
        a = Node(f"redis://:hunter2@127.0.0.1:{port}/0", "a", rpc_timeout_ms=5000)
        self.addCleanup(a.link.stop)
        a.link.start()
        self.assertFalse(a.link.up)
        self.assertIs(await a.rooms.add_room("offline"), True)
        self.assertIs(await a.rooms.add_room("offline"), False)
        self.assertIs(await a.rooms.room_exists("offline"), True)
        record = {"id": "c1", "joinedAt": 5, "host": "a"}
        self.assertIs(await a.rooms.add_member("offline", record), True)
        self.assertEqual(await a.rooms.members("offline"), {"c1": record})
        await a.bus.publish({"type": "say", "room": "offline", "payload": {}})
        self.assertEqual(a.events, [])
        await sleep(0)
        self.assertEqual(a.events, [{"type": "say", "room": "offline", "payload": {}}])
        with self.assertRaises(RoomError) as rpc:
            await a.bus.call_remote("someone", "add_member", ["offline"])
        self.assertEqual(rpc.exception.message, "RPC Timeout")
        await a.cache.save("kept", "value", 60000)
        self.assertEqual((await a.cache.load("kept"))["value"], "value")
        a.stats.increment("web:requests", 2)
        self.assertEqual(await a.stats.global_counts(), {"web:requests": 2})
        self.assertEqual(await a.peers.peers(), ["a"])
        def failures():
            return [line for line in lines if "cannot connect" in line]

        started = reactor.seconds()
        await wait_for_in_reactor(lambda: len(failures()) >= 3)  # attempts at 0, 0.5 and 1.5 s
        self.assertGreaterEqual(reactor.seconds() - started, 1.0)
        failures = failures()
        self.assertEqual(
            failures[0],
            f"Redis redis://:****@127.0.0.1:{port}/0: cannot connect: Connection was refused by "
            "other side: 111: Connection refused.; retrying in 0.5 s",
        )
        self.assertTrue(failures[1].endswith("retrying in 1.0 s"), failures[1])
        self.assertTrue(failures[2].endswith("retrying in 1.0 s"), failures[2])  # reconnectMaxDelay
        self.assertNotIn("hunter2", "\n".join(lines))

        server = RedisServer(port=port, password="hunter2").start()
        self.addCleanup(server.stop)
        await wait_for_in_reactor(lambda: a.link.up)
        self.assertEqual([line for line in lines if "connected" in line and "cannot" not in line],
                         [f"Redis redis://:****@127.0.0.1:{port}/0: connected"])
        b = await self.node_on(server.url, "b")
        self.assertEqual(await b.rooms.list_rooms(), ["defaultRoom", "offline"])
        self.assertEqual(await b.rooms.members("offline"), {"c1": record})
        self.assertEqual(await b.cache.size(), 1)
        self.assertEqual((await b.cache.load("kept"))["value"], "value")
        await a.stats.flush()
        self.assertEqual(await b.stats.global_counts(), {"web:requests": 2})

    async def test_redis_restart_is_survived(self):
        """Redis killed and restarted empty on the same port: RPCs waiting fail at
        once, the loss and the reconnection are logged once, and both nodes
        re-assert their rooms and memberships and talk again."""
        lines = capture_log(self)
        server = RedisServer().start()
        self.addCleanup(server.stop)
        # a minute of rpcTimeout: an RPC that fails before half of it failed because Redis went away,
        # not because its timer ran out, however loaded the machine
        a = await self.node_on(server.url, "a", rpc_timeout_ms=60000)
        b = await self.node_on(server.url, "b", rpc_timeout_ms=60000)
        await a.rooms.add_room("made-by-a")
        await a.rooms.add_member("defaultRoom", {"id": "ca", "joinedAt": 1, "host": "a"})
        await b.rooms.add_member("defaultRoom", {"id": "cb", "joinedAt": 2, "host": "b"})
        waiting = a.bus.call_remote("nobody", "add_member", ["defaultRoom"])
        started = reactor.seconds()
        server.stop(signal.SIGKILL)
        with self.assertRaises(RoomError) as rpc:
            await waiting
        self.assertEqual(rpc.exception.message, "RPC Timeout")
        self.assertLess(reactor.seconds() - started, 30.0)
        self.assertEqual(a.bus.pending_rpcs, {})
        await wait_for_in_reactor(lambda: not a.link.up and not b.link.up)
        # a left, b joined during the outage; a created a room
        await a.rooms.remove_member("defaultRoom", "ca")
        await b.rooms.add_member("defaultRoom", {"id": "cb2", "joinedAt": 3, "host": "b"})
        await a.rooms.add_room("during-outage")
        self.assertEqual(list(await b.rooms.members("defaultRoom")), ["cb", "cb2"])
        server.start()
        await wait_for_in_reactor(lambda: a.link.up and b.link.up)
        await sleep(0.05)
        url = server.url
        lost = [line for line in lines if "connection lost" in line]
        self.assertEqual(len(lost), 2, lines)
        self.assertTrue(lost[0].startswith(f"Redis {url}: connection lost: "), lost[0])
        self.assertEqual(len([line for line in lines if "reconnected after" in line]), 2, lines)
        # the restarted Redis is empty: what it holds now was re-asserted
        self.assertEqual(await a.rooms.list_rooms(), ["defaultRoom", "during-outage"])
        self.assertEqual(list(await a.rooms.members("defaultRoom")), ["cb", "cb2"])
        await a.bus.publish({"type": "say", "room": "defaultRoom", "payload": {"n": 1}})
        await wait_for_in_reactor(lambda: b.events)
        self.assertEqual(b.events, [{"type": "say", "room": "defaultRoom", "payload": {"n": 1}}])

    async def test_a_command_lost_with_the_connection_is_answered_locally_and_logged_once(self):
        """A command that was sent when the connection broke is answered from
        the local copy, not failed; the provider logs it once per outage."""
        lines = capture_log(self)
        a = await self.node("a")
        await a.rooms.add_room("r")

        async def lose_the_connection_under_two_commands():
            connections = a.link.connections
            exists, listed = a.rooms.room_exists("r"), a.rooms.list_rooms()
            a.link._command.transport.abortConnection()
            self.assertIs(await exists, True)
            self.assertEqual(await listed, ["r"])
            await wait_for_in_reactor(lambda: a.link.connections == connections + 1)  # reconnected

        await lose_the_connection_under_two_commands()
        await lose_the_connection_under_two_commands()
        local = [line for line in lines if "answering locally" in line]
        self.assertEqual(
            local,
            ["Redis did not answer for rooms (Lost connection); answering locally until it is back"] * 2,
        )
        self.assertEqual(len([line for line in lines if "connection lost" in line]), 2, lines)

    async def test_a_stalled_subscription_is_detected_logged_and_resubscribed(self):
        """A subscriber connection that stays open but delivers nothing (here:
        the node stops reading it) is found out by the link's self-pings, logged
        with the channel, dropped and subscribed again; events flow again and
        the counters say what happened."""
        lines = capture_log(self)
        a, b = await self.node("a"), await self.node("b")
        a.link.subscription_timeout = 1.0
        a.link.watch.start()  # at the new period
        self.assertEqual((a.link.stalls, a.link.gaps, a.link.reconnects), (0, 0, 0))
        stalled = a.link._subscriber
        stalled.transport.stopReading()
        await b.bus.publish({"type": "say", "room": "r", "payload": {"n": 1}})  # lost for a
        await wait_for_in_reactor(lambda: a.link.reconnects == 1, timeout=30)
        self.assertIsNot(a.link._subscriber, stalled)
        self.assertEqual((a.link.stalls, a.link.gaps, a.link.connections), (1, 1, 2))
        self.assertGreater(a.link.gap_seconds, 1.0)
        start, end = a.link.last_gap
        self.assertAlmostEqual(end - start, a.link.gap_seconds)
        stall_lines = [line for line in lines if "stalled" in line]
        self.assertEqual(len(stall_lines), 1, lines)
        self.assertRegex(
            stall_lines[0],
            rf"^Redis {SERVER.url}: connection lost: subscription to test stalled "
            r"\(nothing received for \d+\.\d s\); reconnecting in 0\.5 s$",
        )
        back = [line for line in lines if "reconnected after" in line]
        self.assertEqual(len(back), 1, lines)
        self.assertRegex(
            back[0],
            rf"^Redis {SERVER.url}: reconnected after \d+\.\d s; resubscribed to test "
            r"\(its messages of the last \d+\.\d s were not received\)$",
        )
        self.assertEqual(a.events, [])
        await b.bus.publish({"type": "say", "room": "r", "payload": {"n": 2}})
        await wait_for_in_reactor(lambda: a.events)
        self.assertEqual(a.events, [{"type": "say", "room": "r", "payload": {"n": 2}}])
        self.assertEqual((b.bus.published, b.bus.local_only), (2, 0))
        self.assertEqual((a.bus.received, b.bus.received), (1, 2))

    async def test_an_idle_subscription_is_not_taken_for_stalled(self):
        """With no traffic at all the self-pings keep the subscription alive."""
        a = await self.node("a")
        a.link.subscription_timeout = 0.6
        a.link.watch.start()
        await sleep(2.5)
        self.assertEqual((a.link.stalls, a.link.gaps, a.link.connections), (0, 0, 1))

    async def test_a_room_deleted_during_a_redis_restart_stays_deleted(self):
        """a deletes a room while Redis is down and restarts empty; b, which
        held a member of it, must not bring it back when it re-asserts, and
        its member gets the deletion notice exactly once -- whichever node
        reconnects first."""
        server = RedisServer().start()
        self.addCleanup(server.stop)
        a = await self.node_on(server.url, "a")
        b = await self.node_on(server.url, "b")
        await a.rooms.add_room("r")
        await b.rooms.add_member("r", {"id": "cb", "joinedAt": a.rooms._now(), "host": "b"})
        server.stop(signal.SIGKILL)
        await wait_for_in_reactor(lambda: not a.link.up and not b.link.up)
        await sleep(0.01)  # the deletion comes after b's join (the nodes' clocks, in ms)
        self.assertIs(await a.rooms.remove_room("r"), True)
        self.assertEqual(a.rooms.offline_deleted, {"r": unittest.mock.ANY})
        server.start()
        await wait_for_in_reactor(lambda: a.link.up and b.link.up)
        await wait_for_in_reactor(lambda: destroys(b.events, "r"))
        await sleep(0.2)  # a second notice would be there by now
        self.assertEqual(destroys(b.events, "r"), [
            {"type": "destroy", "room": "r", "payload": {
                "message": "this room has been deleted", "room": "r", "from": 0, "context": "user",
                "sentAt": unittest.mock.ANY}},
        ])
        self.assertEqual(await b.rooms.list_rooms(), ["defaultRoom"])
        self.assertEqual(await b.rooms.members("r"), {})
        self.assertIs(await b.rooms.room_exists("r"), False)
        self.assertEqual(a.rooms.offline_deleted, {})
        self.assertEqual(a.rooms.replayed_deletions + b.rooms.refused_rooms, 1)
        # the room may be created again, and then it stays
        self.assertIs(await b.rooms.add_room("r"), True)
        await b.link.stop()
        b.link.start()
        await wait_for_in_reactor(lambda: b.link.up)
        await b.rooms.add_member("r", {"id": "cb2", "joinedAt": b.rooms._now(), "host": "b"})
        self.assertEqual(list(await a.rooms.members("r")), ["cb2"])

    async def test_a_room_deleted_while_a_node_was_cut_off_is_dropped_by_it(self):
        """b is cut off from Redis (Redis itself stays up) while a deletes a
        room b had members in: when b comes back it does not re-assert it and
        tells its members, and its starting room deleted meanwhile stays gone."""
        lines = capture_log(self)
        a = await self.node("a")
        b = await self.node("b", starting_rooms=("defaultRoom", "lobby"))
        await b.rooms.add_member("r", {"id": "cb", "joinedAt": b.rooms._now(), "host": "b"})
        await b.link.stop()
        await sleep(0.01)
        self.assertIs(await a.rooms.remove_room("r"), True)
        self.assertIs(await a.rooms.remove_room("lobby"), True)
        self.assertEqual(await a.rooms.list_rooms(), ["defaultRoom"])
        b.link.start()
        await wait_for_in_reactor(lambda: len(destroys(b.events, "r") + destroys(b.events, "lobby")) == 2)
        self.assertEqual(await a.rooms.list_rooms(), ["defaultRoom"])
        self.assertEqual(await a.rooms.members("r"), {})
        self.assertEqual(b.rooms.refused_rooms, 2)
        self.assertIn("room r was deleted while this node was cut off from Redis: dropped here", lines)
        await b.link.stop()
        b.link.start()
        await wait_for_in_reactor(lambda: b.link.connections == 3)
        await b.rooms.list_rooms()
        self.assertEqual(await a.rooms.list_rooms(), ["defaultRoom"])
        self.assertEqual(b.rooms.refused_rooms, 2)

    async def test_history_offsets_epochs_and_since_are_shared(self):
        a, b = await self.node("a"), await self.node("b")
        epoch = await a.history.create("r", max_messages=3)
        self.assertEqual(await b.history.position("r"), (0, epoch))
        for n in range(5):
            self.assertEqual(await a.history.publish_say("r", {"message": f"m{n}"}), (n + 1, epoch))
        await wait_for_in_reactor(lambda: len(b.events) == 5)
        self.assertEqual(
            [(e["payload"]["message"], e["offset"], e["epoch"]) for e in b.events],
            [(f"m{n}", n + 1, epoch) for n in range(5)],
        )
        # three kept: from offset 2 everything is there, from 1 not
        self.assertEqual(await b.history.since("r", 2, epoch),
                         (True, [(3, {"message": "m2"}), (4, {"message": "m3"}), (5, {"message": "m4"})], 5, epoch))
        recovered, missed, position, _ = await b.history.since("r", 1, epoch)
        self.assertEqual((recovered, [o for o, _ in missed], position), (False, [3, 4, 5], 5))
        self.assertEqual(await b.history.since("r", 5, epoch), (True, [], 5, epoch))
        self.assertEqual(await b.history.since("r", 6, epoch), (False, [], 5, epoch))
        self.assertEqual(await b.history.since("r", 2, "other"), (False, [], 5, epoch))
        self.assertEqual(await b.history.since("r", None, None), (True, [], 5, epoch))
        # re-created: a new epoch from offset 0; deleted: gone (a new epoch on next use)
        second = await b.history.create("r")
        self.assertNotEqual(second, epoch)
        self.assertEqual(await a.history.position("r"), (0, second))
        await a.history.destroy("r")
        third = (await a.history.position("r"))[1]
        self.assertNotIn(third, (epoch, second))

    async def test_a_burst_of_says_on_a_fresh_redis_is_stored_whole_and_in_order(self):
        """Redis without the scripts cached (a fresh or restarted server): 300
        says sent without waiting are all stored, with offsets in the order
        said.  (The overtaking this guards against shows with larger bursts:
        tests/e2e/test_cluster_history_e2e.py sends 10,000.)"""
        self.assertEqual(SERVER.call("SCRIPT", "FLUSH"), b"+OK\r\n")
        a, b = await self.node("a"), await self.node("b")
        said = []
        for n in range(300):  # says keep coming while the first replies arrive
            said.append(a.history.publish_say("r", {"message": f"m{n}"}))
            if n % 10 == 9:
                await sleep(0.001)
        results = [await d for d in said]
        epoch = results[0][1]
        self.assertEqual(results, [(n + 1, epoch) for n in range(300)])
        await wait_for_in_reactor(lambda: len(b.events) == 300)
        self.assertEqual([(e["payload"]["message"], e["offset"]) for e in b.events],
                         [(f"m{n}", n + 1) for n in range(300)])

    async def test_history_lost_with_redis_data_gets_a_new_epoch(self):
        a = await self.node("a")
        epoch = await a.history.create("r")
        await a.history.publish_say("r", {"message": "m0"})
        SERVER.flush()  # what a Redis restart without persistence does
        offset, new = await a.history.publish_say("r", {"message": "m1"})
        self.assertEqual(offset, 1)
        self.assertNotEqual(new, epoch)
        self.assertEqual(await a.history.since("r", 1, epoch), (False, [], 1, new))

    async def test_a_subscription_gap_is_filled_from_history_in_order_without_duplicates(self):
        """b's subscription stalls while a says: once b has resubscribed it
        reads what it missed from the stream and delivers it, in order, before
        the next live say; a say received twice is dropped."""
        lines = capture_log(self)
        a, b = await self.node("a"), await self.node("b")
        epoch = await a.history.create("r")
        await a.history.publish_say("r", {"message": "m0"})
        await wait_for_in_reactor(lambda: len(b.events) == 1)
        b.link.subscription_timeout = 1.0
        b.link.watch.start()
        b.link._subscriber.transport.stopReading()
        for n in range(1, 6):
            await a.history.publish_say("r", {"message": f"m{n}"})
        await wait_for_in_reactor(lambda: b.history.gaps_filled == 1, timeout=30)
        self.assertEqual(b.link.reconnects, 1)
        await a.history.publish_say("r", {"message": "m6"})
        await wait_for_in_reactor(lambda: len(b.events) == 7)
        await sleep(0.2)
        self.assertEqual([(e["payload"]["message"], e["offset"]) for e in b.events],
                         [(f"m{n}", n + 1) for n in range(7)])
        self.assertEqual((b.history.gaps_filled, b.history.messages_filled), (1, 5))
        self.assertIn("filled the subscription gap with 5 message(s) from history", lines)
        b.bus.message_received({"kind": "event", "event": dict(b.events[-1])})
        await sleep(0.05)
        self.assertEqual(len(b.events), 7)
        self.assertEqual(b.history.duplicates_dropped, 1)
        self.assertEqual(b.history.seen["r"], (7, epoch))

    async def test_says_made_while_redis_is_down_are_delivered_here_then_published_in_order(self):
        a, b = await self.node("a"), await self.node("b")
        epoch = await a.history.create("r")
        await a.history.publish_say("r", {"message": "m0"})
        await wait_for_in_reactor(lambda: len(b.events) == 1 and len(a.events) == 1)
        await a.link.stop()
        for n in range(1, 4):
            self.assertEqual(await a.history.publish_say("r", {"message": f"m{n}"}), (0, ""))
        await wait_for_in_reactor(lambda: len(a.events) == 4)
        # here at once, without an offset (none is assigned yet)
        self.assertEqual(a.events[1:], [{"type": "say", "room": "r", "payload": {"message": f"m{n}"}}
                                        for n in range(1, 4)])
        self.assertEqual(len(b.events), 1)
        a.link.start()
        await wait_for_in_reactor(lambda: len(b.events) == 4)
        self.assertEqual([(e["payload"]["message"], e["offset"], e["epoch"]) for e in b.events],
                         [(f"m{n}", n + 1, epoch) for n in range(4)])
        await a.history.publish_say("r", {"message": "m4"})
        await wait_for_in_reactor(lambda: len(b.events) == 5 and len(a.events) >= 5)
        await sleep(0.2)
        # a's members did not get the held says a second time
        self.assertEqual([e["payload"]["message"] for e in a.events], [f"m{n}" for n in range(5)])
        self.assertEqual((a.history.held, a.history.held_dropped), (3, 0))

    async def node_on(self, url: str, node_id: str, **kw) -> Node:
        node = Node(url, node_id, **kw)
        self.addCleanup(node.link.stop)
        self.addCleanup(node.bus.stop)
        return await node.start()


#: a script that keeps Redis busy for 150 ms
BUSY_150_MS = """
local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start >= 150000
return 'OK'
"""


class RedisBacklogTests(TestCase):
    """A Redis, or a node, that is busy is not a dead one; one that stops
    answering is (the link's watch, ahtwist/backends/redis/link.py); says go
    out in a bounded window, in order, and nothing is lost or doubled when
    the connection drops in the middle of a burst."""

    timeout = 90

    async def node_on(self, url: str, node_id: str, **kw) -> Node:
        node = Node(url, node_id, **kw)
        self.addCleanup(node.link.stop)
        self.addCleanup(node.bus.stop)
        return await node.start()

    async def test_a_burst_of_says_goes_out_in_a_window_and_survives_a_lost_connection(self):
        from ahtwist.backends.redis.history import SAY

        SERVER.flush()
        a, b = await self.node_on(SERVER.url, "a"), await self.node_on(SERVER.url, "b")
        epoch = await a.history.create("r")
        a.history.says.window = 8
        waiting, most = [0], [0]
        execute = a.link.execute

        def counting(*args):
            d = execute(*args)
            if args[:2] == ("EVALSHA", SAY.sha):
                waiting[0] += 1
                most[0] = max(most[0], waiting[0])

                def answered(result):
                    waiting[0] -= 1
                    return result

                d.addBoth(answered)
            return d

        a.link.execute = counting
        answers = [a.history.publish_say("r", {"n": n}) for n in range(200)]
        await wait_for_in_reactor(lambda: len(b.events) >= 60)
        a.link._command.transport.abortConnection()  # in the middle of the burst
        await wait_for_in_reactor(lambda: len(b.events) >= 200 and len(a.events) >= 200, timeout=60)
        await wait_for_in_reactor(lambda: not a.history.says)
        await b.history.publish_say("r", {"n": 200})  # after it: nothing more came before it
        await wait_for_in_reactor(lambda: len(b.events) == 201 and len(a.events) == 201)
        for node in (a, b):
            self.assertEqual([(e["payload"]["n"], e["offset"], e["epoch"]) for e in node.events],
                             [(n, n + 1, epoch) for n in range(201)])
        self.assertEqual(most[0], 8)
        self.assertEqual(a.link.reconnects, 1)
        self.assertTrue(all(d.called for d in answers))
        stored = [d.result for d in answers if d.result != (0, "")]
        self.assertEqual(stored, [(n + 1, epoch) for n in range(len(stored))])
        self.assertGreaterEqual(len(stored), 60)

    async def test_a_busy_redis_that_keeps_answering_is_not_dropped(self):
        """40 commands of 0.15 s each, each larger than what Redis reads from a
        client at a time (so it answers them one by one, not all at the end):
        the last is answered 6 s after it was sent, past any per-command
        deadline of 5 s, but replies keep coming, so the link stays up and
        nothing is sent twice."""
        server = RedisServer().start()
        self.addCleanup(server.stop)
        lines = capture_log(self)
        a = await self.node_on(server.url, "a", redis_settings="commandTimeout = 2\n")
        self.assertEqual(a.link.command_timeout, 2)
        epoch = await a.history.create("r")
        busy = [a.link.execute("EVAL", BUSY_150_MS, 0, "x" * 20000) for _ in range(40)]
        said = a.history.publish_say("r", {"message": "after the backlog"})
        replies = [await d for d in busy]
        self.assertEqual(replies, ["OK"] * 40)
        self.assertEqual(await said, (1, epoch))
        await wait_for_in_reactor(lambda: a.events)
        self.assertEqual([e["payload"] for e in a.events], [{"message": "after the backlog"}])
        self.assertEqual((a.link.connections, a.link.stalls), (1, 0))
        self.assertEqual([line for line in lines if "connection lost" in line], [])

    async def test_a_redis_that_stops_answering_is_dropped_and_found_again(self):
        server = RedisServer().start()
        self.addCleanup(server.stop)
        lines = capture_log(self)
        a = await self.node_on(
            server.url, "a", redis_settings="commandTimeout = 1\nsubscriptionTimeout = 1\n"
        )
        epoch = await a.history.create("r")
        os.kill(server.process.pid, signal.SIGSTOP)
        self.addCleanup(os.kill, server.process.pid, signal.SIGCONT)
        await wait_for_in_reactor(lambda: not a.link.up, timeout=30)
        lost = [line for line in lines if "connection lost" in line]
        self.assertEqual(len(lost), 1, lines)
        self.assertRegex(
            lost[0],
            rf"^Redis {server.url}: connection lost: no reply from Redis for \d+\.\d s "
            r"\(1 command\(s\) waiting\); reconnecting in 0\.5 s$",
        )
        self.assertEqual(a.link.stalls, 0)
        self.assertEqual(await a.history.publish_say("r", {"message": "held"}), (0, ""))
        os.kill(server.process.pid, signal.SIGCONT)
        await wait_for_in_reactor(lambda: a.link.reconnects == 1, timeout=60)
        await wait_for_in_reactor(lambda: not a.history.says, timeout=30)
        recovered, missed, position, current = await a.history.since("r", 0, epoch)
        self.assertEqual((recovered, position, current), (True, 1, epoch))
        self.assertEqual([payload for _, payload in missed], [{"message": "held"}])


class RedisTLSTests(TestCase):
    """``rediss://`` with a password against ``redis-server --tls-port``."""

    timeout = 60

    def setUp(self) -> None:
        from tests.e2e.servers import make_certificate

        directory = tempfile.mkdtemp(prefix="ahtwist-redis-tls-")
        self.key, self.cert = make_certificate(directory)
        self.server = RedisServer(password="s3cret", tls=(str(self.key), str(self.cert))).start()
        self.addCleanup(self.server.stop)
        self.base = f"rediss://:s3cret@127.0.0.1:{self.server.port}/0"

    async def connected_node(self, url: str, node_id: str) -> Node:
        node = Node(url, node_id)
        self.addCleanup(node.link.stop)
        return await node.start()

    async def test_verified_tls_with_a_password(self):
        a = await self.connected_node(f"{self.base}?ssl_ca_certs={self.cert}", "a")
        b = await self.connected_node(f"{self.base}?ssl_cert_reqs=none", "b")
        await a.cache.save("k", "tls", 5000)
        self.assertEqual((await b.cache.load("k"))["value"], "tls")
        await b.bus.publish({"type": "say", "room": "r", "payload": {}})
        await wait_for_in_reactor(lambda: a.events)

    async def test_wrong_password_and_untrusted_certificate_are_logged_and_retried(self):
        lines = capture_log(self)
        port = self.server.port
        bad_password = Node(f"rediss://:wrong@127.0.0.1:{port}/0?ssl_ca_certs={self.cert}", "p")
        untrusted = Node(f"rediss://:s3cret@127.0.0.1:{port}/0", "u")
        for node in (bad_password, untrusted):
            self.addCleanup(node.link.stop)
            node.link.start()
        await wait_for_in_reactor(lambda: len([line for line in lines if "cannot connect" in line]) >= 2)
        self.assertFalse(bad_password.link.up or untrusted.link.up)
        self.assertIn(
            f"Redis rediss://:****@127.0.0.1:{port}/0: cannot connect: could not auth: WRONGPASS "
            "invalid username-password pair or user is disabled.; retrying in 0.5 s",
            lines,
        )
        self.assertTrue(any("certificate verify failed" in line for line in lines), lines)


def destroys(events: list[dict], room: str) -> list[dict]:
    return [e for e in events if e["type"] == "destroy" and e["room"] == room]


def capture_log(test: TestCase) -> list[str]:
    """The text of every ahtwist.redis log event from now to the end of the test."""
    from twisted.logger import formatEvent

    lines: list[str] = []

    def observe(event):
        if event.get("log_namespace") == "ahtwist.redis":
            lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    test.addCleanup(globalLogPublisher.removeObserver, observe)
    return lines


class RedisSentinelTests(TestCase):
    """``redis+sentinel://`` against a real master, replica and Sentinel
    (``redis-server --sentinel``): the master is killed by PID, Sentinel
    promotes the replica, and the nodes carry on against it."""

    timeout = 120

    def setUp(self) -> None:
        from tests.redis_server import SentinelServer

        self.master = RedisServer().start()
        self.addCleanup(self.master.stop)
        self.replica = RedisServer(extra_args=("--replicaof", "127.0.0.1", str(self.master.port))).start()
        self.addCleanup(self.replica.stop)
        self.sentinel = SentinelServer(self.master.port).start()
        self.addCleanup(self.sentinel.stop)
        self.url = f"redis+sentinel://127.0.0.1:{free_port()},127.0.0.1:{self.sentinel.port}/mymaster/0"

    async def connected_node(self, node_id: str) -> Node:
        node = Node(self.url, node_id)
        self.addCleanup(node.link.stop)
        self.addCleanup(node.bus.stop)
        return await node.start()

    async def test_failover_to_the_promoted_replica(self):
        lines = capture_log(self)
        await wait_for_in_reactor(lambda: "master_link_status:up" in self.replica.info("replication"), 30,
                                  "the replica did not sync")
        await wait_for_in_reactor(
            lambda: f"port={self.replica.port}" in self.master.info("replication")
            and str(self.replica.port).encode() in self.sentinel.call("SENTINEL", "replicas", "mymaster"),
            60, "Sentinel did not find the replica")
        a, b = await self.connected_node("a"), await self.connected_node("b")
        self.assertEqual(a.link.master_address, ("127.0.0.1", self.master.port))
        # the first Sentinel listed is not running: the next one answered
        self.assertIn(f"Redis {self.url}: master mymaster is at "
                      f"127.0.0.1:{self.master.port} (from Sentinel)", lines)
        await a.rooms.add_room("kept")
        await a.cache.save("k", "before", 60000)
        self.assertEqual(await a.link.execute("WAIT", 1, 5000), 1)  # on the replica too

        self.master.stop(signal.SIGKILL)
        promoted = ("127.0.0.1", self.replica.port)
        await wait_for_in_reactor(
            lambda: a.link.up and b.link.up and a.link.master_address == promoted == b.link.master_address,
            60, "the nodes did not move to the promoted replica")
        self.assertTrue(self.replica.call("ROLE").startswith(b"*3\r\n$6\r\nmaster"))
        self.assertIn(f"Redis {self.url}: master mymaster is at 127.0.0.1:{self.replica.port} (from Sentinel)",
                      lines)
        self.assertEqual(await b.rooms.list_rooms(), ["defaultRoom", "kept"])
        self.assertEqual((await b.cache.load("k"))["value"], "before")
        await b.cache.save("k", "after", 60000)
        self.assertEqual((await a.cache.load("k"))["value"], "after")
        await b.bus.publish({"type": "say", "room": "kept", "payload": {"n": 1}})
        await wait_for_in_reactor(lambda: a.events)
        self.assertEqual(a.events, [{"type": "say", "room": "kept", "payload": {"n": 1}}])
