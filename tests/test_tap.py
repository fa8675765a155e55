"""The twistd plugin: options, validation, and the service tree it builds."""

import tempfile
from pathlib import Path

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from ahtwist.service import AhtwistService, WebService
from ahtwist.tap import Options, makeService


def parse(*args):
    options = Options()
    options.parseOptions(list(args))
    return options


class OptionsTests(SynchronousTestCase):
    def test_repeatable_listeners(self):
        options = parse("--web", "tcp:0:interface=127.0.0.1", "--web", "tcp:0", "--socket", "none",
                        "--public", "a", "--public", "b", "--redis", "redis://127.0.0.1:1/0")
        config = options.config
        self.assertEqual(config.web_endpoints, ("tcp:0:interface=127.0.0.1", "tcp:0"))
        self.assertEqual(config.socket_endpoints, ())
        self.assertEqual(len(config.general.paths.public), 2)
        self.assertEqual(config.redis.url, "redis://127.0.0.1:1/0")

    def test_defaults(self):
        config = parse().config
        self.assertEqual(config.web_endpoints, ("tcp:8080:interface=0.0.0.0",))
        self.assertEqual(config.socket_endpoints, ("tcp:5000:interface=0.0.0.0",))

    def test_invalid_endpoint_is_one_line(self):
        with self.assertRaises(SystemExit) as e:
            parse("--web", "bogus:1")
        self.assertTrue(str(e.exception.code).startswith("ahtwist: --web 'bogus:1': invalid endpoint: "))
        self.assertNotIn("\n", str(e.exception.code))
        with self.assertRaises(SystemExit) as e:
            parse("--socket", "ssl:0:privateKey=/nonexistent.pem")
        self.assertTrue(str(e.exception.code).startswith("ahtwist: --socket 'ssl:0:privateKey=/nonexistent.pem': invalid endpoint: "))

    def test_bad_config_is_one_line(self):
        path = Path(tempfile.mkdtemp(), "bad.toml")
        path.write_text("[servers.web]\npadding = \"two\"\n")
        with self.assertRaises(SystemExit) as e:
            parse("--config", str(path))
        self.assertEqual(e.exception.code, f"ahtwist: {path}: servers.web.padding: expected an integer, got 'two'")

    def test_bad_endpoint_in_config(self):
        path = Path(tempfile.mkdtemp(), "c.toml")
        path.write_text('[servers.web]\nendpoints = ["nope:1"]\n')
        with self.assertRaises(SystemExit) as e:
            parse("--config", str(path))
        self.assertTrue(str(e.exception.code).startswith("ahtwist: servers.web 'nope:1': invalid endpoint"))


class ServiceTests(SynchronousTestCase):
    def test_service_tree_listens_on_each_web_endpoint(self):
        reactor = MemoryReactorClock()
        options = parse("--web", "tcp:8081:interface=127.0.0.1", "--web", "tcp:8082", "--socket", "none")
        service = makeService(options, reactor)
        self.assertIsInstance(service, AhtwistService)
        web = [s for s in service if isinstance(s, WebService)]
        self.assertEqual(len(web), 1)
        listeners = [s for s in web[0] if isinstance(s, StreamServerEndpointService)]
        self.assertEqual(len(listeners), 2)
        service.privilegedStartService()
        service.startService()
        self.assertEqual(
            [(port, interface) for port, _, _, interface in reactor.tcpServers],
            [(8081, "127.0.0.1"), (8082, "")],
        )
        self.assertTrue(self.successResultOf(service.node.rooms.exists("defaultRoom")))
        d = service.stopService()
        reactor.advance(6)
        self.successResultOf(d)
        self.assertTrue(service.node.stopping)

    def test_web_none_has_no_web_service(self):
        service = makeService(parse("--web", "none", "--socket", "none"), MemoryReactorClock())
        self.assertEqual([s for s in service if isinstance(s, WebService)], [])

    def test_broken_action_folder_stops_start_up(self):
        directory = Path(tempfile.mkdtemp())
        (directory / "actions").mkdir()
        (directory / "actions" / "x.py").write_text("import nonexistent_module_xyz\n")
        (directory / "c.toml").write_text('[general.paths]\nactions = ["actions"]\n')
        with self.assertRaises(SystemExit) as e:
            makeService(parse("--config", str(directory / "c.toml")), MemoryReactorClock())
        self.assertEqual(
            e.exception.code,
            f"ahtwist: {directory.resolve()}/actions/x.py (line 1): failed to load action file: "
            "ModuleNotFoundError: No module named 'nonexistent_module_xyz'",
        )


class ClusterWiringTests(SynchronousTestCase):
    """--redis gives the node the Redis providers and the service a cluster
    part; without it everything stays in memory (README.md, 'Running a cluster')."""

    def test_redis_url_selects_the_redis_providers(self):
        from ahtwist.backends.redis import ClusterService, RedisCache, RedisRoomBackend, RedisStats

        options = parse("--web", "tcp:0", "--socket", "none", "--redis", "redis://:pw@127.0.0.1:1/3")
        service = makeService(options, reactor=MemoryReactorClock())
        self.assertIsInstance(service.cluster, ClusterService)
        node = service.node
        self.assertIsInstance(node.cache, RedisCache)
        self.assertIsInstance(node.stats, RedisStats)
        self.assertIsInstance(node.rooms.backend, RedisRoomBackend)
        self.assertIs(node.peers, service.cluster.peers)
        self.assertEqual(service.cluster.target.masked, "redis://:****@127.0.0.1:1/3")
        self.assertEqual(node.health_problems(), ["Redis unavailable"])  # not connected

    def test_no_redis_url_keeps_everything_in_memory(self):
        from ahtwist.backends.memory import MemoryCache, MemoryRoomBackend

        service = makeService(parse("--web", "tcp:0", "--socket", "none"), reactor=MemoryReactorClock())
        self.assertIsNone(service.cluster)
        self.assertIsInstance(service.node.cache, MemoryCache)
        self.assertIsInstance(service.node.rooms.backend, MemoryRoomBackend)
        self.assertEqual(service.node.health_problems(), [])


class ListeningLogTests(SynchronousTestCase):
    def test_each_listener_logs_its_address_once(self):
        from twisted.logger import globalLogPublisher

        events = []
        globalLogPublisher.addObserver(events.append)
        try:
            reactor = MemoryReactorClock()
            service = makeService(
                parse("--web", "tcp:8081:interface=127.0.0.1", "--socket", "tcp:5001:interface=127.0.0.1"), reactor
            )
            service.privilegedStartService()
            service.startService()
        finally:
            globalLogPublisher.removeObserver(events.append)
        lines = sorted(
            e["log_format"].format(**e) for e in events if e.get("log_namespace") == "ahtwist.service"
            and "listening" in e.get("log_format", "")
        )
        # (the memory reactor's fake ports report 0.0.0.0 as their host)
        self.assertEqual(
            lines,
            [
                "socket server listening on 0.0.0.0:5001 (tcp:5001:interface=127.0.0.1)",
                "web server listening on 0.0.0.0:8081 (tcp:8081:interface=127.0.0.1)",
            ],
        )
