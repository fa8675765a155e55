"""twistd's own text log observer, for comparing against ahtwist's (bench only):
``twistd --logger=bench.servers.twistd_default_log.observer ahtwist``."""

import sys

from twisted.logger import textFileLogObserver


def observer():
    return textFileLogObserver(sys.stdout)
