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
#: bucket index by duration in ms, for 0 to the last bound
BUCKET_OF_MS = tuple(bisect_left(DURATION_BUCKETS_MS, ms) for ms in range(DURATION_BUCKETS_MS[-1] + 1))
#: the +Inf bucket's index
OVER_MS = len(DURATION_BUCKETS_MS)
#: successes shorter than this many ms take the processor's fast path
FAST_MS = 1000


class ActionCounts:
    """What the processor counts for one action (one version of it):
    finished requests by outcome (the ``action_status``) and their durations.

    Kept on the hot path with no lock and no prometheus_client object (the
    reactor thread is the only writer); the metrics collector turns them
    into counts and histogram buckets at scrape time.  The common case, a
    success in under :data:`FAST_MS` ms, is one list increment: ``fast[ms]``
    counts the successes that took ``ms`` milliseconds (rounded).  Every
    other request goes through :meth:`add`.
    """

    __slots__ = ("name", "fast", "outcomes", "buckets", "ms")

    def __init__(self, name: str) -> None:
        self.name = name
        #: successes by duration in whole milliseconds, below FAST_MS
        self.fast = [0] * FAST_MS
        #: the other requests: by action_status, by bucket of
        #: :data:`DURATION_BUCKETS_MS` (the last is +Inf), their total ms
        self.outcomes: dict[str, int] = {}
        self.buckets = [0] * (OVER_MS + 1)
        self.ms = 0

    def add(self, status: str, duration: int) -> None:
        """A request the fast path does not count."""
        self.outcomes[status] = self.outcomes.get(status, 0) + 1
        self.buckets[BUCKET_OF_MS[duration] if duration < len(BUCKET_OF_MS) else OVER_MS] += 1
        self.ms += duration

    def totals(self) -> tuple[dict[str, int], list[int], int]:
        """Every outcome with its count, the count per bucket (not
        cumulative) and the total duration in ms."""
        outcomes = dict(self.outcomes)
        buckets = list(self.buckets)
        total_ms = self.ms
        successes = 0
        for ms, count in enumerate(self.fast):
            if count:
                successes += count
                buckets[BUCKET_OF_MS[ms]] += count
                total_ms += ms * count
        if successes:
            outcomes["success"] = outcomes.get("success", 0) + successes
        return outcomes, buckets, total_ms
