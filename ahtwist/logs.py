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
        # set lookups: comparing LogLevel constants is a Python-level call
        self._accepted = frozenset(level for level in LogLevel.iterconstants() if level >= min_level)
        self.json = json
        self.clock = clock
        self.flush_interval = flush_interval
        self._buffer: list[str] = []
        self._pending = None
        self._second = -1
        self._stamp = ""
        self._systems: dict[tuple[str, LogLevel], str] = {}

    def __call__(self, event: dict[str, Any]) -> None:
        level = event.get("log_level", LogLevel.info)
        if level not in self._accepted:
            return
        line = self._json(event) if self.json else self._text(event, level)
        if line is None:
            return
        self._buffer.append(line)
        if level in _IMMEDIATE or self.clock is None or len(self._buffer) > 512:
            self.flush()
        elif self._pending is None:
            self._pending = self.clock.callLater(self.flush_interval, self.flush)

    def _time(self, when: float) -> str:
        second = int(when)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(second))
        return self._stamp

    def _text(self, event: dict[str, Any], level: LogLevel) -> str | None:
        text = self._text_only(event)
        failure = event.get("log_failure")
        if failure is not None:
            text = f"{text}\n{failure.getTraceback()}"
        if not text:
            return None
        system = event.get("log_system")
        if system is None:
            key = (event.get("log_namespace", "-"), level)
            system = self._systems.get(key)
            if system is None:
                system = self._systems[key] = f"{self._tag}{key[0]}#{level.name}"
        elif self._tag:
            system = f"{self._tag}{system}"
        text = text.replace("\n", "\n\t")
        return f"{self._time(event.get('log_time', time.time()))} [{system}] {text}\n"

    def _json(self, event: dict[str, Any]) -> str | None:
        """One JSON object: time, level, namespace, the formatted message and
        the event's own fields (kept structured; what JSON has no type for
        becomes text)."""
        level = event.get("log_level", LogLevel.info)
        record: dict[str, Any] = {
            "time": self._time(event.get("log_time", time.time())),
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
        self._buffer.append(text)
        if self.clock is None:
            self.flush()
        elif self._pending is None:
            self._pending = self.clock.callLater(self.flush_interval, self.flush)

    def flush(self) -> None:
        self._pending = None
        if not self._buffer:
            return
        data = "".join(self._buffer)
        self._buffer.clear()
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
