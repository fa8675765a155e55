"""A faster text log observer for ``twistd --logger=ahtwist.logs.observer``.

twistd's default text observer formats the timestamp of every event from
scratch (time zone lookup and ``strftime``), which costs more than serving a
small action.  This one writes the same lines -- ``<time> [<system>] <text>``,
continuation lines indented, tracebacks included -- to the standard output
twistd started with, formatting the timestamp once per second.  Use it when
the per-action log line shows up in a profile::

    twistd -n --logger=ahtwist.logs.observer ahtwist

It replaces ``--logfile``/``--syslog`` (twistd's rule for ``--logger``); run
under systemd, the journal collects standard output.
"""

import sys
from typing import IO, Any

from twisted.logger import FileLogObserver, formatEventAsClassicLogText, formatTime
from twisted.logger._format import formatWithCall


class _SecondClock:
    """``formatTime`` with the text cached per whole second."""

    __slots__ = ("second", "text")

    def __init__(self) -> None:
        self.second: int | None = None
        self.text = "-"

    def __call__(self, when: float | None, timeFormat: str | None = None) -> str:
        if when is None:
            return "-"
        second = int(when)
        if second != self.second:
            self.text = formatTime(second)
            self.second = second
        return self.text


def observer(out: IO[str] | None = None) -> Any:
    """The observer twistd's ``--logger`` option asks for (a factory)."""
    clock = _SecondClock()
    stream = out if out is not None else sys.stdout

    def format_event(event: dict[str, Any]) -> str | None:
        """Twisted's classic line for an ordinary event, without the runtime
        ``typing`` subscriptions Twisted's formatter evaluates per event;
        failures and unusual events go through Twisted's own formatter."""
        form = event.get("log_format")
        if type(form) is not str or "log_failure" in event or "log_flattened" in event:
            return formatEventAsClassicLogText(event, formatTime=clock)
        try:
            if form == "{text}" and type(event.get("text")) is str:
                text = event["text"]  # already rendered (the action log line)
            else:
                text = formatWithCall(form, event)
            system = event.get("log_system")
            if system is None:
                level = event.get("log_level")
                system = f"{event.get('log_namespace', '-')}#{'-' if level is None else level.name}"
            else:
                system = str(system)
        except BaseException:
            return formatEventAsClassicLogText(event, formatTime=clock)
        if not text:
            return None
        return f"{clock(event.get('log_time'))} [{system}] {text.replace(NEWLINE, CONTINUATION)}\n"

    return FileLogObserver(stream, format_event)


NEWLINE = "\n"
CONTINUATION = "\n\t"
