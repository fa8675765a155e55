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


def run_actions(toml: str, requests) -> None:
    node = make_node(toml, plugins=[Quiet])
    connection = Connection("socket", "10.1.2.3", 1, node.now_ms())
    node.add_connection(connection)
    for params in requests:
        node.processor.process(connection, params, "m", 1)


def action_events(toml: str, *requests):
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        run_actions(toml, requests)
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


def test_a_sole_text_observer_gets_the_same_lines_without_the_event():
    """With ahtwist's text observer the only one listening, the line reaches
    it as text (no event is built); the bytes are those the event gives it."""
    from twisted.internet.task import Clock

    from ahtwist.actions import processor
    from ahtwist.logs import LineLogObserver

    class Out:
        def __init__(self):
            self.text = ""

        def write(self, data):
            self.text += data

        def flush(self):
            pass

    requests = [{"action": "randomNumber"}, {"action": "cacheTest", "key": "k"}, {"action": "quiet"}]
    toml = "[general]\nlogLevel = 'debug'\n"
    outputs = []
    for sole in (True, False):
        out = Out()
        observer = LineLogObserver(out, LogLevel.info, clock=Clock(), worker=2)
        kept = list(processor._OBSERVERS)
        processor._OBSERVERS[:] = [observer] if sole else [observer, lambda event: None]
        try:
            run_actions(toml, requests)
            observer.flush()
        finally:
            processor._OBSERVERS[:] = kept
        outputs.append(re.sub(r"duration=\d+ ", "duration=0 ", re.sub(r"^\S+ ", "T ", out.text, flags=re.M)))
    assert outputs[0] == outputs[1]
    assert outputs[0] == (
        "T [worker-2 ahtwist.action#info] [ action @ socket ] to=10.1.2.3 action=randomNumber "
        'params={"action":"randomNumber","apiVersion":1} duration=0 error=\n'
        "T [worker-2 ahtwist.action#info] [ action @ socket ] to=10.1.2.3 action=cacheTest "
        'params={"action":"cacheTest","key":"k","apiVersion":1} duration=0 '
        'error="value is a required parameter for this action"\n'
    )


def test_params_json_of_each_shape_whatever_was_logged_before():
    """The JSON of bare {action, apiVersion} params is remembered per action:
    other shapes, key orders and values are each encoded as they are."""
    from ahtwist.actions.data import ActionData
    from ahtwist.actions.processor import LINE_KEYS, _log_json, log_action

    connection = Connection("socket", "10.1.2.3", 1, 0)
    shapes = [
        {"action": "randomNumber", "apiVersion": 1},
        {"action": "randomNumber", "apiVersion": 1},
        {"apiVersion": 1, "action": "randomNumber"},
        {"action": "randomNumber", "other": 1},
        {"action": "randomNumber", "more": 2},
        {"action": "randomNumber", "apiVersion": 1.0},
        {"action": "randomNumber", "apiVersion": True},
        {"action": "randomNumber", "apiVersion": 2},
        {"action": "randomNumber", "apiVersion": 1},
        {"action": 1, "apiVersion": 1},
        {"action": True, "apiVersion": 1},
    ]
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        for params in shapes:
            data = ActionData(None, connection, params, "m", 1)
            log_action(data, LINE_KEYS[LogLevel.info], frozenset(), 0)
    finally:
        globalLogPublisher.removeObserver(events.append)
    shown = [re.search(r" params=(.*) duration=", e["text"]).group(1) for e in events]
    assert shown == [
        '{"action":"randomNumber","apiVersion":1}',
        '{"action":"randomNumber","apiVersion":1}',
        '{"apiVersion":1,"action":"randomNumber"}',
        '{"action":"randomNumber","other":1}',
        '{"action":"randomNumber","more":2}',
        '{"action":"randomNumber","apiVersion":1.0}',
        '{"action":"randomNumber","apiVersion":true}',
        '{"action":"randomNumber","apiVersion":2}',
        '{"action":"randomNumber","apiVersion":1}',
        '{"action":1,"apiVersion":1}',
        '{"action":true,"apiVersion":1}',
    ]
    assert shown == [_log_json(p) for p in shapes]


def test_line_of_every_end_and_middle_as_formatted_in_full():
    """The line's remembered parts (the bare params' middle, the end of a
    short request without an error) give the text formatting every field
    gives, on the event and through a sole text observer alike; the middle
    is not used for an action that is not its params' (middleware changed
    one of them) nor for params without an apiVersion."""
    from twisted.internet.task import Clock

    from ahtwist.actions import processor
    from ahtwist.actions.data import ActionData
    from ahtwist.logs import LineLogObserver

    connection = Connection("socket", "10.1.2.3", 1, 0)
    cases = []
    for duration in (0, 1, 99, 100, 2500):
        for error in (None, "boom", {"code": 1}):
            cases.append(({"action": "randomNumber", "apiVersion": 1}, None, duration, error))
    cases += [
        ({"action": "randomNumber", "apiVersion": 1}, "status", 0, None),
        ({"action": "status", "apiVersion": 1}, "status", 3, None),
        ({"action": "status", "apiVersion": None}, None, 0, None),
        ({"action": "status", "other": None}, None, 0, None),
        ({"action": "status", "apiVersion": None}, None, 0, None),
    ]
    expected = [
        f"[ action @ socket ] to=10.1.2.3 action={action or params['action']} "
        f"params={processor._log_json(params)} duration={duration} "
        f"error={'' if error is None else processor._log_json(error)}"
        for params, action, duration, error in cases
    ]

    def log_all():
        for params, action, duration, error in cases:
            data = ActionData(None, connection, dict(params), "m", 1)
            if action is not None:
                data.action = action
            data.error = error
            processor.log_action(data, processor.LINE_KEYS[LogLevel.info], frozenset(), duration)

    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        log_all()
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert [e["text"] for e in events if e.get("log_namespace") == "ahtwist.action"] == expected

    lines = []
    observer = LineLogObserver(type("Out", (), {"write": lambda self, d: lines.append(d), "flush": lambda self: None})(),
                               LogLevel.info, clock=Clock())
    kept = list(processor._OBSERVERS)
    processor._OBSERVERS[:] = [observer]
    try:
        log_all()
        observer.flush()
    finally:
        processor._OBSERVERS[:] = kept
    assert [line.split("#info] ", 1)[1] for line in "".join(lines).splitlines()] == expected
