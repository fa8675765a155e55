"""Names of the request counters kept in :class:`~ahtwist.backends.interfaces.IStats`.

A leaf module: the transports count under these names and the ``status``
action reads them, without either importing the other or the node.
"""

from bisect import bisect_left

#: HTTP action requests
WEB_REQUESTS = "web:requests"
#: socket action requests
SOCKET_REQUESTS = "socket:requests"
#: websocket action requests
WEBSOCKET_REQUESTS = "websocket:requests"


#: upper bounds, in whole milliseconds, of the action duration histogram's
#: buckets (``ahtwist_action_duration_seconds``, docs/metrics.md): the
#: duration counted is the action log line's, rounded to the millisecond; one
#: more bucket (+Inf) follows the last
DURATION_BUCKETS_MS = (0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
#: bucket index by duration in ms, for 0 to the last bound (a list lookup on
#: the hot path instead of a search)
BUCKET_OF_MS = tuple(bisect_left(DURATION_BUCKETS_MS, ms) for ms in range(DURATION_BUCKETS_MS[-1] + 1))
#: the +Inf bucket's index
OVER_MS = len(DURATION_BUCKETS_MS)


class ActionCounts:
    """What the processor counts for one action (one version of it):
    finished requests by outcome (the ``action_status``) and their durations
    in fixed buckets.

    Kept on the hot path with no lock and no prometheus_client object (the
    reactor thread is the only writer): a dict lookup, a table lookup and
    three additions per action; the metrics collector reads and sums them
    at scrape time.  Successes are counted apart from the other outcomes
    (the common case costs no dict update).
    """

    __slots__ = ("name", "successes", "outcomes", "buckets", "ms")

    def __init__(self, name: str) -> None:
        self.name = name
        #: requests that ended with ``success``
        self.successes = 0
        #: every other action_status -> requests that ended with it
        self.outcomes: dict[str, int] = {}
        #: requests per bucket of :data:`DURATION_BUCKETS_MS` (not cumulative; the last is +Inf)
        self.buckets = [0] * (OVER_MS + 1)
        #: total duration of every request counted, in (rounded) milliseconds
        self.ms = 0

    def all_outcomes(self) -> dict[str, int]:
        """Every outcome with its count (successes included when any)."""
        out = dict(self.outcomes)
        if self.successes:
            out["success"] = out.get("success", 0) + self.successes
        return out
