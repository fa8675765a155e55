"""Names of the request counters kept in :class:`~ahtwist.backends.interfaces.IStats`.

A leaf module: the transports count under these names and the ``status``
action reads them, without either importing the other or the node.
"""

from collections import Counter

#: HTTP action requests
WEB_REQUESTS = "web:requests"
#: socket action requests
SOCKET_REQUESTS = "socket:requests"
#: websocket action requests
WEBSOCKET_REQUESTS = "websocket:requests"


#: upper bounds (seconds) of the action latency histogram's buckets
#: (``ahtwist_action_duration_seconds``, docs/metrics.md); the last bucket is +Inf
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ActionCounts:
    """What the processor counts for one action (one version of it):
    finished requests by outcome (the ``action_status``) and their durations
    in fixed buckets.

    Kept on the hot path with no lock and no prometheus_client object: a
    dict lookup, one ``bisect`` and three additions per action (the reactor
    thread is the only writer); the metrics collector reads and sums them at
    scrape time.
    """

    __slots__ = ("name", "outcomes", "buckets", "seconds")

    def __init__(self, name: str) -> None:
        self.name = name
        #: action_status -> requests that ended with it
        self.outcomes: Counter[str] = Counter()
        #: requests per bucket of :data:`DURATION_BUCKETS` (not cumulative; one more for +Inf)
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)
        #: total duration of every request counted, in seconds
        self.seconds = 0.0
