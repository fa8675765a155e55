"""Backends provide their interfaces (the cluster providers must fit the same seams)."""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from ahtwist.backends.interfaces import IBus, ICache, IPeers, IRoomBackend, IStats
from ahtwist.backends.memory import (
    MemoryBus,
    MemoryCache,
    MemoryPeers,
    MemoryRoomBackend,
    MemoryStats,
)
from ahtwist.connection import Connection, IConnection


class InterfaceTests(SynchronousTestCase):
    def test_memory_providers(self):
        clock = Clock()
        self.assertTrue(verifyObject(ICache, MemoryCache(clock)))
        self.assertTrue(verifyObject(IStats, MemoryStats()))
        self.assertTrue(verifyObject(IPeers, MemoryPeers("n1")))
        self.assertTrue(verifyObject(IRoomBackend, MemoryRoomBackend(clock)))
        self.assertTrue(verifyObject(IBus, MemoryBus(clock)))
        self.assertTrue(verifyObject(IConnection, Connection("socket", "127.0.0.1", 1, 0)))

    def test_memory_stats(self):
        stats = MemoryStats()
        stats.increment("a")
        stats.increment("a", 4)
        self.assertEqual(stats.local("a"), 5)
        self.assertEqual(stats.local("b"), 0)
        self.assertEqual(self.successResultOf(stats.global_counts()), {"a": 5})

    def test_room_events_are_never_delivered_synchronously(self):
        clock = Clock()
        bus = MemoryBus(clock)
        seen = []
        bus.subscribe(seen.append)
        bus.publish({"type": "say"})
        self.assertEqual(seen, [])
        clock.advance(0)
        self.assertEqual(seen, [{"type": "say"}])

    def test_bus_handlers_hear_every_event_in_subscription_order(self):
        clock = Clock()
        bus = MemoryBus(clock)
        seen = []
        bus.subscribe(lambda event: seen.append(("first", event)))
        bus.subscribe(lambda event: seen.append(("second", event)))
        bus.publish({"n": 1})
        bus.publish({"n": 2})
        self.assertEqual(seen, [])
        clock.advance(0)
        self.assertEqual(
            seen,
            [("first", {"n": 1}), ("second", {"n": 1}), ("first", {"n": 2}), ("second", {"n": 2})],
        )
