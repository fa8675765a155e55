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
        return formatEventAsClassicLogText(event, formatTime=clock)

    return FileLogObserver(stream, format_event)
