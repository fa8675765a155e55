"""Prometheus metrics of one node, read at scrape time (docs/metrics.md).

Nothing here runs per request.  The code counts what it counts anyway --
the processor's :class:`~ahtwist.counters.ActionCounts`, the node's
connection tables, the rooms' deliveries, the limits' slow-client drops, the
resume counters, the Redis link, bus and history counters in cluster mode --
and :class:`NodeCollector` turns those plain integers into metric families
when Prometheus asks.  No ``prometheus_client`` Counter or Histogram (each
takes a lock per update) is on the hot path.

Each node has its own :class:`~prometheus_client.CollectorRegistry`
(:func:`registry_for`), not the library's global one, so several nodes in one
process (tests, embedding) do not clash; the process-wide collectors
(``process_*``, ``python_*``) are left out for the same reason.
"""

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from ahtwist._version import __version__
from ahtwist.counters import (
    DURATION_BUCKETS_MS,
    SOCKET_REQUESTS,
    WEB_REQUESTS,
    WEBSOCKET_REQUESTS,
    ActionCounts,
)
from ahtwist.limits import RATE_LIMITED
from ahtwist.rooms import DROPPED_BY_ERROR, DROPPED_BY_MIDDLEWARE

__all__ = ["CONTENT_TYPE", "NodeCollector", "registry_for", "render"]

#: the Content-Type of the text exposition format this serves
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: the HTTP server's connections are counted under this transport label
HTTP_TRANSPORT = "http"

_REQUEST_COUNTERS = (("web", WEB_REQUESTS), ("websocket", WEBSOCKET_REQUESTS), ("socket", SOCKET_REQUESTS))
#: label values shown (as 0) before anything was counted under them
_SLOW_SEEN = {"socket": 0, "websocket": 0}
_DROP_SEEN = {DROPPED_BY_MIDDLEWARE: 0, DROPPED_BY_ERROR: 0}
_BOUNDS = [*(repr(ms / 1000) for ms in DURATION_BUCKETS_MS), "+Inf"]


class NodeCollector(Collector):
    """Every ``ahtwist_*`` family of one node (the table in docs/metrics.md)."""

    def __init__(self, node: Any) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        yield from self._node()
        yield from self._connections()
        yield from self._actions()
        yield from self._chat()
        cluster = self.node.cluster
        if cluster is not None:
            yield from self._cluster(cluster)

    def _node(self) -> Iterator[Metric]:
        node = self.node
        info = GaugeMetricFamily("ahtwist_node_info", "This node: its id and the ahtwist version.",
                                 labels=["node", "version"])
        info.add_metric([node.id, __version__], 1)
        yield info
        yield GaugeMetricFamily("ahtwist_uptime_seconds", "Seconds since the node started.",
                                value=node.uptime_ms() / 1000)
        yield GaugeMetricFamily("ahtwist_event_loop_delay_seconds",
                                "How long a zero-delay call last waited for the reactor (sampled every second).",
                                value=node.event_loop_delay / 1000)

    def _connections(self) -> Iterator[Metric]:
        node = self.node
        current = GaugeMetricFamily("ahtwist_connections", "Connections open now, by transport.",
                                    labels=["transport"])
        opened = CounterMetricFamily("ahtwist_connections_opened", "Connections accepted since start, by transport.",
                                     labels=["transport"])
        if node.web_sites:
            current.add_metric([HTTP_TRANSPORT], sum(len(site.channels) for site in node.web_sites))
            opened.add_metric([HTTP_TRANSPORT], sum(site.opened for site in node.web_sites))
        for transport in sorted(node.opened_by_type):
            current.add_metric([transport], node.active_by_type[transport])
            opened.add_metric([transport], node.opened_by_type[transport])
        yield current
        yield opened
        slow = CounterMetricFamily("ahtwist_slow_client_disconnects",
                                   "Clients dropped for leaving more output unread than their limit, by transport.",
                                   labels=["transport"])
        for transport, count in sorted({**_SLOW_SEEN, **node.limits.slow_clients_dropped}.items()):
            slow.add_metric([transport], count)
        yield slow
        yield CounterMetricFamily("ahtwist_rate_limited", "Messages refused by limits.messagesPerSecond.",
                                  value=node.stats.local(RATE_LIMITED))

    def _actions(self) -> Iterator[Metric]:
        processor = self.node.processor
        requests = CounterMetricFamily("ahtwist_requests", "Action requests received, by transport.",
                                       labels=["transport"])
        for transport, key in _REQUEST_COUNTERS:
            requests.add_metric([transport], self.node.stats.local(key))
        yield requests
        yield GaugeMetricFamily("ahtwist_actions_in_flight", "Actions running now.", value=processor.in_flight)
        actions = CounterMetricFamily("ahtwist_actions", "Actions finished, by action name and outcome.",
                                      labels=["action", "outcome"])
        durations = HistogramMetricFamily("ahtwist_action_duration_seconds",
                                          "Time from receiving an action request to its reply being ready.",
                                          labels=["action"])
        for name, (outcomes, buckets, seconds) in sorted(_by_name(processor.counts.values()).items()):
            for outcome, count in sorted(outcomes.items()):
                actions.add_metric([name, outcome], count)
            cumulative, total = [], 0
            for bound, count in zip(_BOUNDS, buckets, strict=True):
                total += count
                cumulative.append((bound, total))
            durations.add_metric([name], cumulative, seconds)
        yield actions
        yield durations

    def _chat(self) -> Iterator[Metric]:
        rooms = self.node.rooms
        yield CounterMetricFamily("ahtwist_chat_messages_delivered",
                                  "Chat messages handed to this node's members' transports (one per member).",
                                  value=rooms.delivered)
        dropped = CounterMetricFamily("ahtwist_chat_messages_dropped", "Chat messages not delivered, by reason.",
                                      labels=["reason"])
        reasons = {**_DROP_SEEN, **rooms.dropped}
        cluster = self.node.cluster
        if cluster is not None:
            reasons["duplicate"] = cluster.history.duplicates_dropped
            reasons["redis_backlog_full"] = cluster.history.held_dropped
        for reason, count in sorted(reasons.items()):
            dropped.add_metric([reason], count)
        yield dropped
        resumes = rooms.resumes
        yield CounterMetricFamily("ahtwist_resume_hits", "Joins with an offset that got every missed message.",
                                  value=resumes.resume_hits)
        yield CounterMetricFamily("ahtwist_resume_misses",
                                  "Joins with an offset that could not get every missed message (recovered: false).",
                                  value=resumes.resume_misses)

    def _cluster(self, cluster: Any) -> Iterator[Metric]:
        link, bus, history = cluster.link, cluster.bus, cluster.history
        yield GaugeMetricFamily("ahtwist_redis_up", "1 while the node's Redis link is up, else 0.",
                                value=1 if link.up else 0)
        for name, text, value in (
            ("ahtwist_redis_reconnects", "Times the Redis link came back up after being up.", link.reconnects),
            ("ahtwist_redis_subscription_stalls", "Subscriptions found stalled (nothing received).", link.stalls),
            ("ahtwist_redis_subscription_gaps", "Subscription gaps closed by a resubscription.", link.gaps),
            ("ahtwist_redis_subscription_gap_seconds", "Total length of the subscription gaps.", link.gap_seconds),
            ("ahtwist_bus_published", "Cluster messages published to Redis.", bus.published),
            ("ahtwist_bus_local_only", "Cluster messages handled on this node only (Redis out of reach).",
             bus.local_only),
            ("ahtwist_bus_received", "Cluster messages received from Redis.", bus.received),
            ("ahtwist_bus_rpc_timeouts", "Calls to another node that got no answer in time.", bus.rpc_timeouts),
            ("ahtwist_bus_gaps_filled", "Subscription gaps filled from the room histories.", history.gaps_filled),
            ("ahtwist_bus_gap_messages_filled", "Chat messages delivered from history to fill subscription gaps.",
             history.messages_filled),
        ):
            yield CounterMetricFamily(name, text, value=value)


def _by_name(all_counts: Iterable[ActionCounts]) -> dict[str, tuple[Counter[str], list[int], float]]:
    """The processor's counts (one per action version) summed by action
    name: outcomes, bucket counts, total seconds."""
    out: dict[str, tuple[Counter[str], list[int], float]] = {}
    for counts in all_counts:
        outcomes, buckets, seconds = out.get(counts.name) or (Counter(), [0] * len(counts.buckets), 0.0)
        more_outcomes, more_buckets, ms = counts.totals()
        outcomes.update(more_outcomes)
        out[counts.name] = (
            outcomes,
            [a + b for a, b in zip(buckets, more_buckets, strict=True)],
            seconds + ms / 1000,
        )
    return out


def registry_for(node: Any) -> CollectorRegistry:
    """A registry of its own holding the node's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition (format 0.0.4) of every family in ``registry``."""
    return generate_latest(registry)
