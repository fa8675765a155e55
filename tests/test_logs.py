"""ahtwist.logs.observer writes exactly what twistd's text observer writes."""

import io

from twisted.logger import Logger, LogPublisher, textFileLogObserver

from ahtwist.logs import observer


def test_same_lines_as_twistd_including_tracebacks_and_continuations():
    ours, theirs = io.StringIO(), io.StringIO()
    publisher = LogPublisher(observer(ours), textFileLogObserver(theirs))
    log = Logger(namespace="ahtwist.test", observer=publisher)
    log.info("plain {x}", x=1)
    log.warn("two\nlines")
    try:
        _ = 1 / 0
    except ZeroDivisionError:
        log.failure("it broke")
    log.debug("{{braces}} kept")
    log.info("")  # nothing to say: no line
    log.info(b"bytes format {x}", x=2)
    log.info("a {missing} field")  # unformattable: Twisted's generic text
    publisher({"log_format": "with a system", "log_system": "custom", "log_time": 1.5})
    publisher({"log_format": "no level, no namespace", "log_time": None})
    publisher({"log_format": "called {f()}", "f": lambda: "yes", "log_time": 2.0})
    publisher({"log_format": "{text}", "text": "pre-rendered {x}\nline", "log_time": 3.0})
    publisher({"log_format": "{text}", "text": 42, "log_time": 3.0})
    assert ours.getvalue() == theirs.getvalue()
    text = ours.getvalue()
    assert "[ahtwist.test#info] plain 1\n" in text
    assert "two\n\tlines" in text
    assert "ZeroDivisionError" in text
    assert "{braces} kept" in text


def test_the_timestamp_is_formatted_once_per_second(monkeypatch):
    import ahtwist.logs

    calls = []
    real = ahtwist.logs.formatTime
    monkeypatch.setattr(ahtwist.logs, "formatTime", lambda when: calls.append(when) or real(when))
    out = io.StringIO()
    obs = observer(out)
    for when in (1000.1, 1000.5, 1000.9, 1001.0, 1001.2):
        obs({"log_format": "x", "log_time": when, "log_namespace": "n", "log_level": None})
    assert calls == [1000, 1001]
    assert len(out.getvalue().splitlines()) == 5
