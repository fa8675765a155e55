"""The one log line per action (docs/python-api.md, 'Processing order'): text, level, fields."""

import re

from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from ahtwist import Action
from ahtwist.connection import Connection
from tests.helpers import make_node


class Quiet(Action):
    name = "quiet"
    description = "logs at debug"
    log_level = "debug"

    def run(self, data):
        pass


def action_events(toml: str, *requests):
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        node = make_node(toml, plugins=[Quiet])
        connection = Connection("socket", "10.1.2.3", 1, node.now_ms())
        node.add_connection(connection)
        for params in requests:
            node.processor.process(connection, params, "m", 1)
    finally:
        globalLogPublisher.removeObserver(events.append)
    return [e for e in events if e.get("log_namespace") == "ahtwist.action"]


def test_action_log_line_text_level_and_fields():
    events = action_events(
        "[general]\nfilteredParams = ['key']\nlogLevel = 'debug'\n",
        {"action": "cacheTest", "key": "{secret}", "value": "x}"},
        {"action": "randomNumber"},
        {"action": "quiet"},
    )
    # duration is real elapsed time (0 ms, or 1 on a loaded machine)
    texts = [re.sub(r"duration=\d+ ", "duration=0 ", formatEvent(e)) for e in events]
    assert texts == [
        '[ action @ socket ] to=10.1.2.3 action=cacheTest params={"action":"cacheTest",'
        '"key":"[FILTERED]","value":"x}","apiVersion":1} duration=0 '
        'error="inputs should be at least 3 letters long"',
        '[ action @ socket ] to=10.1.2.3 action=randomNumber params={"action":"randomNumber",'
        '"apiVersion":1} duration=0 error=',
        '[ action @ socket ] to=10.1.2.3 action=quiet params={"action":"quiet","apiVersion":1} '
        "duration=0 error=",
    ]
    assert [e["log_level"] for e in events] == [LogLevel.info, LogLevel.info, LogLevel.debug]
    first = events[0]
    assert first["action"] == "cacheTest" and first["type"] == "socket"
    assert first["params"]["key"] == "[FILTERED]"
    assert first["error"] == "inputs should be at least 3 letters long"


def test_lines_below_the_configured_level_are_not_emitted():
    events = action_events("", {"action": "quiet"}, {"action": "randomNumber"})
    assert [e["action"] for e in events] == ["randomNumber"]


def test_params_json_has_no_type_for_are_logged_as_text():
    class Opaque:
        def __str__(self):
            return "opaque!"

    events = action_events("", {"action": "randomNumber", "apiVersion": Opaque()})
    assert formatEvent(events[0]).startswith(
        '[ action @ socket ] to=10.1.2.3 action=randomNumber params={"action":"randomNumber","apiVersion":"opaque!"}'
    )
