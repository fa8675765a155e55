"""Workers (``--workers N``, ``general.workers``): options, the Redis rule, what a
child inherits, and how its log lines are told apart.  The processes
themselves are tested end to end in tests/e2e/test_workers_e2e.py."""

import io
import json
import os
import socket
import tempfile

from twisted.internet.endpoints import AdoptedStreamServerEndpoint, TCP4ServerEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from twisted.logger import Logger, LogPublisher
from twisted.trial.unittest import SynchronousTestCase

from ahtwist import workers
from ahtwist.config import Overrides, load_config
from ahtwist.errors import ConfigError
from ahtwist.logs import LineLogObserver
from ahtwist.tap import Options
from ahtwist.workers import ENVIRONMENT_KEY, WorkerInfo, server_endpoint
from tests.e2e.servers import make_certificate

NEED_REDIS = (
    "ahtwist: general.workers: 2 workers need the Redis backend (--redis URL or redis.url): "
    "the in-memory backend cannot share rooms and cache between processes"
)


def parse(*args):
    options = Options()
    options.parseOptions(list(args))
    return options


class OptionTests(SynchronousTestCase):
    def test_default_is_one_process(self):
        self.assertEqual(parse().config.general.workers, 1)

    def test_workers_need_redis(self):
        with self.assertRaises(SystemExit) as e:
            parse("--workers", "2")
        self.assertEqual(e.exception.code, NEED_REDIS)

    def test_workers_with_redis_keep_the_arguments_for_the_children(self):
        args = ["--workers", "2", "--redis", "redis://127.0.0.1:1/0", "--web", "tcp:0"]
        options = parse(*args)
        self.assertEqual(options.config.general.workers, 2)
        self.assertEqual(options.argv, args)

    def test_zero_workers_is_a_command_line_error(self):
        with self.assertRaises(SystemExit) as e:
            parse("--workers", "0")
        self.assertEqual(e.exception.code, "ahtwist: command line: --workers: must be greater than 0, got 0")

    def test_config_key(self):
        with self.assertRaises(ConfigError) as e:
            load_config(_toml(self, "[general]\nworkers = 0\n"), environ={})
        self.assertTrue(str(e.exception).endswith(": general.workers: must be greater than 0, got 0"))
        config = load_config(_toml(self, "[general]\nworkers = 3\n"), environ={})
        self.assertEqual(config.general.workers, 3)
        overridden = load_config(_toml(self, "[general]\nworkers = 3\n"), environ={}, overrides=Overrides(workers=1))
        self.assertEqual(overridden.general.workers, 1)


def _toml(case, text):
    path = os.path.join(tempfile.mkdtemp(prefix="ahtwist-test-"), "ahtwist.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


def _environment(listeners, number=2):
    return {ENVIRONMENT_KEY: json.dumps({"worker": number, "listeners": listeners})}


class InheritedListenerTests(SynchronousTestCase):
    def setUp(self):
        self.patch(workers, "_ADOPTED", set())

    def test_not_a_worker(self):
        self.assertIsNone(WorkerInfo.from_environment({}))
        self.patch(workers.os, "environ", {})
        self.assertIsInstance(server_endpoint(MemoryReactor(), "web", "tcp:0"), TCP4ServerEndpoint)

    def test_same_description_twice_gets_each_socket_once_in_order(self):
        info = WorkerInfo.from_environment(_environment(
            [["web", "tcp:0", 4, "INET"], ["socket", "tcp:0", 5, "INET"], ["web", "tcp:0", 6, "INET6"]]
        ))
        self.assertEqual(info.number, 2)
        self.assertEqual(info.inherited("socket", "tcp:0"), (5, "INET"))
        self.assertEqual(info.inherited("web", "tcp:0"), (4, "INET"))
        self.assertEqual(info.inherited("web", "tcp:0"), (6, "INET6"))
        self.assertIsNone(info.inherited("web", "tcp:0"))  # a new listener binds itself

    def test_worker_adopts_and_wraps_tls(self):
        key, cert = make_certificate(tempfile.mkdtemp(prefix="ahtwist-test-"))
        tls = f"ssl:0:privateKey={key}:certKey={cert}"
        self.patch(workers.os, "environ", _environment([["web", "tcp:0", 4, "INET"], ["web", tls, 5, "INET6"]]))
        plain = server_endpoint(MemoryReactor(), "web", "tcp:0")
        self.assertIsInstance(plain, AdoptedStreamServerEndpoint)
        self.assertEqual((plain.fileno, plain.addressFamily), (4, socket.AF_INET))
        wrapped = server_endpoint(MemoryReactor(), "web", tls)
        self.assertIsInstance(wrapped, workers._TLSAdoptedEndpoint)
        self.assertEqual((wrapped.adopted.fileno, wrapped.adopted.addressFamily), (5, socket.AF_INET6))
        self.assertIsNotNone(wrapped.context.getContext())

    def test_a_configured_id_gets_the_worker_number(self):
        info = WorkerInfo(number=2, listeners=())
        config = load_config(_toml(self, '[general]\nid = "api"\n'), environ={})
        self.assertEqual(info.configure(config).general.id, "api-worker2")
        default = load_config(None, environ={})
        self.assertEqual(info.configure(default).general.id, default.general.id)


class WorkerLogTests(SynchronousTestCase):
    def setUp(self):
        self.out = io.StringIO()
        self.clock = Clock()

    def log(self, **kw):
        self.observer = LineLogObserver(self.out, clock=self.clock, **kw)
        return Logger(namespace="ahtwist.test", observer=LogPublisher(self.observer))

    def test_text_lines_name_the_worker(self):
        log = self.log(worker=2)
        log.info("hello")
        log.error("with a system", log_system="HTTPChannel,0,127.0.0.1")
        lines = [line.split(" ", 1)[1] for line in self.out.getvalue().splitlines()]
        self.assertEqual(lines, ["[worker-2 ahtwist.test#info] hello",
                                 "[worker-2 HTTPChannel,0,127.0.0.1] with a system"])

    def test_json_lines_carry_the_worker(self):
        self.log(worker=3, json=True).error("x")
        self.assertEqual(json.loads(self.out.getvalue())["worker"], 3)

    def test_relayed_lines_keep_their_place(self):
        log = self.log()
        log.info("parent first")
        self.observer.relay("2026-12-04T17:00:00+0000 [worker-1 ahtwist.test#info] child\n")
        log.info("parent last")
        self.assertEqual(self.out.getvalue(), "")
        self.clock.advance(0.2)
        self.assertEqual([line.split(" ", 1)[1] for line in self.out.getvalue().splitlines()], [
            "[ahtwist.test#info] parent first",
            "[worker-1 ahtwist.test#info] child",
            "[ahtwist.test#info] parent last",
        ])
