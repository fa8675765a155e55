"""ahtwist's log observer: one line per event, text (twistd's layout) or JSON.

twistd's default observer formats and flushes every event synchronously,
which costs more than serving a small action (about 25 us per event here).
This observer filters by level first, caches the timestamp per second,
formats with ``str.format`` when it can, and buffers writes for at most
``flush_interval`` seconds (warnings and errors are written at once, and the
buffer is flushed when the reactor stops).

It is installed as the application's ``ILogObserver`` component, the
mechanism twistd documents for custom logging; ``twistd --logger`` still
overrides it, and ``--syslog`` keeps twistd's own observer.  Destination
follows twistd's rules: ``--logfile PATH`` (rotated like twistd's), ``-`` or
foreground without ``--logfile`` is stdout.
"""

import sys
import time
from typing import IO, Any

from twisted.logger import ILogObserver, LogLevel, formatEvent
from twisted.python.components import Componentized
from twisted.python.logfile import LogFile
from zope.interface import implementer

from ahtwist.encoding import dumps

LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
    "critical": LogLevel.critical,
}

_INFO = LogLevel.info

#: The ``log_format`` of an event whose ``text`` is its final message, a
#: non-empty ``str`` (rendered by its emitter: the action line), with
#: ``log_time``, ``log_level`` and ``log_namespace`` and no ``log_system`` or
#: ``log_failure``: this observer makes its line when it writes the buffer.
#: (Other observers see the ordinary format ``"{text}"``.)
RENDERED = "{text}"

#: levels written at once rather than batched
_IMMEDIATE = frozenset(level for level in LogLevel.iterconstants() if level >= LogLevel.warn)


@implementer(ILogObserver)
class LineLogObserver:
    """Buffered one-line-per-event observer with a minimum level."""

    def __init__(
        self,
        out: IO[str],
        min_level: LogLevel = LogLevel.info,
        json: bool = False,
        clock: Any = None,
        flush_interval: float = 0.2,
        worker: int | None = None,
    ) -> None:
        self.out = out
        #: the worker number (``--workers``): shown on every line of a worker
        self.worker = worker
        self._tag = "" if worker is None else f"worker-{worker} "
        self.min_level = min_level
        #: accepted level -> whether it is written at once (a dict lookup:
        #: comparing LogLevel constants is a Python-level call)
        self._accepted = {
            level: level in _IMMEDIATE for level in LogLevel.iterconstants() if level >= min_level
        }
        self.json = json
        self.clock = clock
        self.flush_interval = flush_interval
        #: the lines not written yet
        self._buffer: list[str] = []
        self._pending = None
        self._second = 0.0
        self._next_second = 0.0
        self._stamp = ""
        #: the start of a text line by (namespace, level), for the current second
        self._heads: dict[tuple[str, LogLevel], str] = {}

    def __call__(self, event: dict[str, Any]) -> None:
        level = event.get("log_level", _INFO)
        immediate = self._accepted.get(level)
        if immediate is None:
            return
        if event.get("log_format") is RENDERED and not self.json:
            # the text is final: only the time and system go before it
            self._add(self._rendered(event["log_time"], (event["log_namespace"], level), event["text"]), immediate)
            return
        line = self._json(event) if self.json else self._text(event, level)
        if line is not None:
            self._add(line, immediate)

    def _add(self, line: str, immediate: bool) -> None:
        """Buffer a line; write now or soon."""
        buffer = self._buffer
        buffer.append(line)
        if immediate or len(buffer) > 512 or self._pending is None:
            self._settle(immediate)

    def _settle(self, immediate: bool) -> None:
        """After a line was buffered: write now (a warning or worse, a full
        buffer, no clock) or in ``flush_interval`` seconds."""
        if immediate or len(self._buffer) > 512:
            self.flush()
        elif self._pending is None:
            if self.clock is None:
                self.flush()
            else:
                self._pending = self.clock.callLater(self.flush_interval, self.flush)

    def _time(self, when: float | None) -> str:
        """The line's timestamp (to the second: made once per second)."""
        if when is None:
            when = time.time()
        if not self._second <= when < self._next_second:
            second = int(when)
            self._second, self._next_second = float(second), float(second + 1)
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(second))
            self._heads.clear()
        return self._stamp

    def _text(self, event: dict[str, Any], level: LogLevel) -> str | None:
        text = self._text_only(event)
        failure = event.get("log_failure")
        if failure is not None:
            text = f"{text}\n{failure.getTraceback()}"
        return self._line(event, level, text) if text else None

    def _rendered(self, when: float, key: tuple[str, LogLevel], text: str) -> str:
        """The line of a RENDERED event of ``key``, ``(namespace, level)``
        (as :meth:`_line` makes it; a new head is kept under ``key``)."""
        if self._second <= when < self._next_second and "\n" not in text:
            head = self._heads.get(key)
            if head is not None:
                return f"{head}{text}\n"
        return self._line({"log_time": when, "log_namespace": key[0]}, key[1], text, key)

    def _line(
        self, event: dict[str, Any], level: LogLevel, text: str, key: tuple[str, LogLevel] | None = None
    ) -> str:
        """``<time> [<system>] <text>``: the system is ``<namespace>#<level>``
        unless the event names one; continuation lines start with a tab.
        A new head is kept under ``key`` (the event's namespace and level),
        the caller's tuple when it gives one."""
        if "\n" in text:
            text = text.replace("\n", "\n\t")
        when = event.get("log_time")
        stamp = self._stamp if when is not None and self._second <= when < self._next_second else self._time(when)
        system = event.get("log_system")
        if system is not None:
            return f"{stamp} [{self._tag}{system}] {text}\n"
        if key is None:
            key = (event.get("log_namespace", "-"), level)
        head = self._heads.get(key)
        if head is None:
            head = self._heads[key] = f"{stamp} [{self._tag}{key[0]}#{level.name}] "
        return f"{head}{text}\n"

    def _json(self, event: dict[str, Any]) -> str | None:
        """One JSON object: time, level, namespace, the formatted message and
        the event's own fields (kept structured; what JSON has no type for
        becomes text)."""
        level = event.get("log_level", LogLevel.info)
        record: dict[str, Any] = {
            "time": self._time(event.get("log_time")),
            "level": level.name,
            "namespace": event.get("log_namespace", "-"),
            "message": self._text_only(event),
        }
        if self.worker is not None:
            record["worker"] = self.worker
        for key, value in event.items():
            if not key.startswith("log_") and key not in record and key != "text":
                record[key] = value
        failure = event.get("log_failure")
        if failure is not None:
            record["traceback"] = failure.getTraceback()
        return dumps(record, default=_json_default).decode("utf-8", "replace") + "\n"

    def _text_only(self, event: dict[str, Any]) -> str:
        fmt = event.get("log_format")
        if fmt == "{text}" and type(event.get("text")) is str:
            return event["text"]  # rendered by its emitter (the action line)
        if fmt is not None:
            try:
                return fmt.format(**event)
            except Exception:
                pass
        return formatEvent(event)

    def relay(self, text: str) -> None:
        """Add lines formatted elsewhere (a worker's), in order with ours."""
        self._add(text, False)

    def flush(self) -> None:
        self._pending = None
        buffer = self._buffer
        if not buffer:
            return
        data = "".join(buffer)
        buffer.clear()
        try:
            self.out.write(data)
            self.out.flush()
        except Exception:
            pass  # a log destination that fails must not take the server down

    def stop(self) -> None:
        """The reactor is stopping: flush, and write later events at once."""
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self.clock = None
        self.flush()


def emit_rendered(observers: list[Any], key: tuple[str, LogLevel], text: str) -> bool:
    """Hand a RENDERED line of ``key`` (its ``(namespace, level)``: best the
    same tuple for every such line, which the observer's heads find without
    comparing it) to the text :class:`LineLogObserver` when it is the only
    one in ``observers`` (a :class:`~twisted.logger.LogPublisher`'s list) --
    nobody else would see the event -- and say True; False when any other
    observer listens (JSON, twistd's, a test's): the emitter then builds and
    sends the event.  The line is made and buffered as the event's would be
    (``__call__``'s steps, without the calls: this runs once per action)."""
    if len(observers) != 1:
        return False
    observer = observers[0]
    if type(observer) is not LineLogObserver or observer.json:
        return False
    immediate = observer._accepted.get(key[1])
    if immediate is not None:
        when = time.time()
        head = None
        if observer._second <= when < observer._next_second and "\n" not in text:
            head = observer._heads.get(key)
        buffer = observer._buffer
        if head is not None:
            buffer.append(f"{head}{text}\n")
        else:
            buffer.append(observer._rendered(when, key, text))
        if immediate or len(buffer) > 512 or observer._pending is None:
            observer._settle(immediate)
    return True


def _json_default(value: Any) -> Any:
    return str(value)


def install_observer(application: Any, observer: Any) -> None:
    """Make ``observer`` the application's ``ILogObserver`` component, how
    twistd is told to log through it (unless one is set already)."""
    if observer is not None and isinstance(application, Componentized):
        if application.getComponent(ILogObserver, None) is None:
            application.setComponent(ILogObserver, observer)


def observer_for_twistd(
    parent_options: Any, level: str, log_format: str, reactor: Any, worker: int | None = None
) -> LineLogObserver | None:
    """The observer for a twistd run, or None to keep twistd's (``--syslog``,
    ``--logger``)."""
    if parent_options is None:
        return None
    get = parent_options.get if hasattr(parent_options, "get") else lambda k, d=None: d
    if get("syslog") or get("logger"):
        return None
    filename = get("logfile")
    nodaemon = get("nodaemon")
    out: IO[str]
    if filename == "-" or (nodaemon and not filename):
        out = sys.__stdout__ or sys.stdout
    else:
        out = LogFile.fromFullPath(filename or "twistd.log")
    observer = LineLogObserver(
        out, LEVELS[level], json=log_format == "json", clock=reactor, worker=worker
    )
    reactor.addSystemEventTrigger("after", "shutdown", observer.stop)
    return observer
