"""The twistd log observer: one line per event, level filter, JSON lines, buffering."""

import io
import json

from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, LogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from ahtwist.connection import Connection
from ahtwist.logs import LineLogObserver
from tests.helpers import make_node


class ObserverTests(SynchronousTestCase):
    def setUp(self):
        self.out = io.StringIO()
        self.clock = Clock()
        self.clock.advance(1795627006)

    def logger(self, **kw):
        self.observer = LineLogObserver(self.out, clock=self.clock, **kw)
        return Logger(namespace="ahtwist.test", observer=LogPublisher(self.observer))

    def test_text_line_and_buffering(self):
        log = self.logger()
        log.info("hello {who}", who="world")
        self.assertEqual(self.out.getvalue(), "")  # buffered
        self.clock.advance(0.2)
        line = self.out.getvalue()
        self.assertRegex(line, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \[ahtwist\.test#info\] hello world\n$")

    def test_warnings_are_written_at_once(self):
        log = self.logger()
        log.info("first")
        log.warn("second")
        self.assertEqual([line.split("] ")[1] for line in self.out.getvalue().splitlines()], ["first", "second"])

    def test_level_filter(self):
        log = self.logger(min_level=LogLevel.warn)
        log.info("dropped")
        log.error("kept")
        self.assertIn("kept", self.out.getvalue())
        self.assertNotIn("dropped", self.out.getvalue())

    def test_failure_traceback(self):
        log = self.logger()
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            log.failure("it broke", Failure())
        text = self.out.getvalue()
        self.assertIn("it broke\n\tTraceback", text)
        self.assertIn("ZeroDivisionError", text)

    def test_json_lines(self):
        log = self.logger(json=True)
        log.error("bad {thing}", thing="x", count=3)
        record = json.loads(self.out.getvalue())
        self.assertEqual(
            {k: record[k] for k in ("level", "namespace", "message", "thing", "count")},
            {"level": "error", "namespace": "ahtwist.test", "message": "bad x", "thing": "x", "count": 3},
        )

    def test_action_line(self):
        observer = LineLogObserver(self.out, json=True, clock=None)
        from ahtwist.actions import processor

        original = processor.log.observer
        processor.log.observer = observer
        try:
            node = make_node('[general]\nfilteredParams = ["value"]\n')
            node.processor.process(Connection("socket", "10.0.0.1", 1, 0), {"action": "cacheTest", "key": "abc", "value": "secret"})
        finally:
            processor.log.observer = original
        record = json.loads(self.out.getvalue())
        self.assertEqual(record["type"], "socket")
        self.assertEqual(record["remoteIP"], "10.0.0.1")
        self.assertEqual(record["params"], {"key": "abc", "value": "[FILTERED]", "action": "cacheTest", "apiVersion": 1})
        self.assertTrue(record["message"].startswith('[ action @ socket ] to=10.0.0.1 action=cacheTest params={"action":"cacheTest","key":"abc","value":"[FILTERED]"'))


def test_rendered_and_event_lines_of_one_namespace_and_level_share_the_head():
    """An emitter's rendered line keeps its head under the emitter's own key
    tuple (found again by identity); a RENDERED event and an ordinary event
    of the same namespace and level in that second are written with the
    same head, in order; with another observer listening nothing is added."""
    from ahtwist.logs import RENDERED, emit_rendered

    out = io.StringIO()
    observer = LineLogObserver(out, clock=None)
    key = ("ahtwist.test", LogLevel.info)
    assert emit_rendered([observer], key, "emitted")
    assert list(observer._heads) == [key] and next(iter(observer._heads)) is key
    when = observer._second + 0.25  # the emitted line's second
    observer({"log_time": when, "log_namespace": "ahtwist.test", "log_level": LogLevel.info,
              "log_format": "{what}", "what": "event"})
    observer({"log_time": when, "log_namespace": "ahtwist.test", "log_level": LogLevel.info,
              "log_format": RENDERED, "text": "rendered event"})
    assert not emit_rendered([observer, print], key, "not here")
    lines = out.getvalue().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == ["emitted", "event", "rendered event"]
    heads = {line.split("] ", 1)[0] for line in lines}
    assert len(heads) == 1 and heads.pop().endswith(" [ahtwist.test#info")
