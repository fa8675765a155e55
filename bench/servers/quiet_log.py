"""A twistd ``--logger`` for benchmarks: warnings and errors only, to stderr.

``PYTHONPATH=bench/servers twistd --logger quiet_log.observer ahtwist ...``
measures the transport and the core without the per-action info line (whose
cost depends on the log observer, not on the websocket server).
"""

import sys

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    textFileLogObserver,
)


def observer():
    return FilteringLogObserver(
        textFileLogObserver(sys.stderr), [LogLevelFilterPredicate(LogLevel.warn)]
    )
