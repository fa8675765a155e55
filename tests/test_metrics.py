"""The Prometheus metrics (docs/metrics.md): what the collector reports after
real actions and chat through the in-memory transports, the endpoint on the
web server, and the ``[metrics]`` config checks."""

import json
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from ahtwist import Action, ActionError, ChatMiddleware
from ahtwist.config import ConfigError
from ahtwist.connection import Connection, IConnectionTransport
from ahtwist.counters import BUCKET_OF_MS, DURATION_BUCKETS_MS
from ahtwist.metrics import registry_for, render
from ahtwist.testing import AppTester
from tests.helpers import config_from, make_node


def scrape(node: Any) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of the node's metrics: sample name -> {sorted labels: value}."""
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(render(registry_for(node)).decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def families(text: str) -> dict[str, str]:
    """Family name -> type."""
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def app(tmp_path, text: str = "") -> AppTester:
    path = tmp_path / "ahtwist.toml"
    path.write_text(text, "utf-8")
    return AppTester(str(path))


def test_actions_are_counted_by_name_outcome_and_transport_with_their_durations(tmp_path, monkeypatch):
    tester = app(tmp_path)
    # action durations read time.monotonic: make it the test's clock, so they are exact
    monkeypatch.setattr(time, "monotonic", tester.clock.seconds)
    http = tester.http()
    assert http.get("/api/randomNumber").status == 200
    assert http.get("/api/randomNumber").status == 200
    assert http.get("/api/cacheTest").status == 422  # missing params
    assert http.get("/api/noSuchAction").status == 404
    socket = tester.socket()
    socket.send("randomNumber\r\n")
    ws = tester.websocket()
    ws.request({"event": "action", "params": {"action": "randomNumber"}})
    ws.send({"event": "action", "params": {"action": "sleepTest", "sleepDuration": 30}})
    tester.clock.advance(0.03)  # the action's timer, on the node's clock
    ws.pump()
    assert [m.get("sleepDuration") for m in ws.messages()] == [30]
    got = scrape(tester.node)
    assert got["ahtwist_actions_total"] == {
        (("action", "(unknown)"), ("outcome", "unknown_action")): 1,
        (("action", "cacheTest"), ("outcome", "missing_params")): 1,
        (("action", "randomNumber"), ("outcome", "success")): 4,
        (("action", "sleepTest"), ("outcome", "success")): 1,
    }
    assert got["ahtwist_requests_total"] == {
        (("transport", "web"),): 4, (("transport", "websocket"),): 2, (("transport", "socket"),): 1,
    }
    assert got["ahtwist_action_duration_seconds_count"] == {
        (("action", "(unknown)"),): 1, (("action", "cacheTest"),): 1,
        (("action", "randomNumber"),): 4, (("action", "sleepTest"),): 1,
    }
    assert got["ahtwist_action_duration_seconds_sum"][(("action", "sleepTest"),)] == 0.03
    assert got["ahtwist_action_duration_seconds_sum"][(("action", "randomNumber"),)] == 0
    buckets = got["ahtwist_action_duration_seconds_bucket"]
    bounds = ["0.0", "0.001", "0.002", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5",
              "5.0", "10.0", "+Inf"]
    assert [buckets[(("action", "sleepTest"), ("le", le))] for le in bounds] == [0] * 6 + [1] * 9
    assert [buckets[(("action", "randomNumber"), ("le", le))] for le in bounds] == [4] * 15
    assert got["ahtwist_actions_in_flight"] == {(): 0}


def test_versions_of_an_action_are_summed_under_its_name(monkeypatch):
    class V1(Action):
        name = "twice"
        description = "v1"
        version = 1

        def run(self, data):
            data.response["v"] = 1

    class V2(V1):
        version = 2

        def run(self, data):
            raise ActionError("nope")

    tester_node = make_node(plugins=[V1, V2])
    clock = tester_node.reactor
    monkeypatch.setattr(time, "monotonic", clock.seconds)
    for version in (1, 2, 2):
        connection = Connection("web", "127.0.0.1", 40000, tester_node.now_ms())
        tester_node.add_connection(connection)
        tester_node.processor.process(connection, {"action": "twice", "apiVersion": version})
    got = scrape(tester_node)
    assert got["ahtwist_actions_total"] == {
        (("action", "twice"), ("outcome", "success")): 1, (("action", "twice"), ("outcome", "action_error")): 2,
    }
    assert got["ahtwist_action_duration_seconds_count"] == {(("action", "twice"),): 3}
    assert len(tester_node.processor.counts) == 2  # counted apart, shown together


def test_connections_by_transport_now_and_since_start(tmp_path):
    tester = app(tmp_path)
    http = tester.http()
    protocol, transport = http.connect()
    protocol.dataReceived(b"GET /api/randomNumber HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 200 OK\r\n")
    protocol.connectionLost(Failure(ConnectionDone()))
    assert http.get("/api/randomNumber").status == 200  # a keep-alive connection, left open
    first, second = tester.socket(), tester.socket()
    tester.websocket()
    second.drop()
    got = scrape(tester.node)
    # an upgraded HTTP connection counts as opened on http, then open as a websocket
    assert got["ahtwist_connections"] == {
        (("transport", "http"),): 1, (("transport", "socket"),): 1, (("transport", "websocket"),): 1,
    }
    assert got["ahtwist_connections_opened_total"] == {
        (("transport", "http"),): 3, (("transport", "socket"),): 2, (("transport", "websocket"),): 1,
    }
    assert not first.closed


def test_chat_deliveries_drops_and_resumes(tmp_path):
    class NotToSecond(ChatMiddleware):
        name = "notToSecond"

        def say(self, connection, room, payload):
            if connection.remote_port == 46811:
                raise ActionError("not you")

    node = make_node(plugins=[NotToSecond])
    from ahtwist.socket import SocketFactory
    from ahtwist.testing.socket_client import connect

    a, b, c = connect(SocketFactory(node, node.reactor), 3)
    for client in (a, b, c):
        [reply] = client.ask("roomAdd defaultRoom\r\n")
        assert json.loads(reply)["data"] is True
    a.send("say defaultRoom hello\r\n")
    a.send("say defaultRoom again\r\n")
    got = scrape(node)
    assert got["ahtwist_chat_messages_delivered_total"] == {(): 4}  # a and c, twice
    assert got["ahtwist_chat_messages_dropped_total"] == {
        (("reason", "error"),): 0, (("reason", "middleware"),): 2,
    }
    d, e = connect(SocketFactory(node, node.reactor), 2)
    data = json.loads(d.ask("roomAdd defaultRoom since 1 not-the-epoch\r\n")[0])["data"]
    assert (data["recovered"], data["offset"]) == (False, 2)
    reply = e.ask(f"roomAdd defaultRoom since 1 {data['epoch']}\r\n")[0]
    assert json.loads(reply)["data"] == {"recovered": True, "offset": 2, "epoch": data["epoch"]}
    got = scrape(node)
    assert got["ahtwist_resume_misses_total"] == {(): 1}
    assert got["ahtwist_resume_hits_total"] == {(): 1}


def test_slow_client_disconnects_by_transport():
    node = make_node()
    policy = node.limits.output_policy("websocket", 10, node.stats, _NoLog())
    closed = []
    policy.drop("abc", 11, lambda: closed.append(True))
    got = scrape(node)
    assert closed == [True]
    assert got["ahtwist_slow_client_disconnects_total"] == {
        (("transport", "socket"),): 0, (("transport", "websocket"),): 1,
    }


class _NoLog:
    def info(self, *args, **kw):
        pass


def test_every_family_has_its_type_and_no_cluster_families_without_redis():
    node = make_node()
    assert families(render(registry_for(node)).decode()) == {
        "ahtwist_node_info": "gauge",
        "ahtwist_uptime_seconds": "gauge",
        "ahtwist_event_loop_delay_seconds": "gauge",
        "ahtwist_connections": "gauge",
        "ahtwist_connections_opened": "counter",
        "ahtwist_slow_client_disconnects": "counter",
        "ahtwist_rate_limited": "counter",
        "ahtwist_requests": "counter",
        "ahtwist_actions_in_flight": "gauge",
        "ahtwist_actions": "counter",
        "ahtwist_action_duration_seconds": "histogram",
        "ahtwist_chat_messages_delivered": "counter",
        "ahtwist_chat_messages_dropped": "counter",
        "ahtwist_resume_hits": "counter",
        "ahtwist_resume_misses": "counter",
    }
    got = scrape(node)
    assert got["ahtwist_node_info"] == {(("node", node.id), ("version", __import__("ahtwist").__version__)): 1}


def test_two_nodes_in_one_process_count_apart(tmp_path):
    first, second = app(tmp_path), app(tmp_path)
    first.run_action("randomNumber")
    first.run_action("randomNumber")
    second.run_action("status")
    assert scrape(first.node)["ahtwist_actions_total"] == {(("action", "randomNumber"), ("outcome", "success")): 2}
    assert scrape(second.node)["ahtwist_actions_total"] == {(("action", "status"), ("outcome", "success")): 1}


# --- the endpoint on the web server -----------------------------------------------


def test_metrics_are_served_at_the_configured_path_when_enabled(tmp_path):
    tester = app(tmp_path, '[metrics]\nenabled = true\npath = "/internal/metrics"\n')
    http = tester.http()
    assert http.get("/api/randomNumber").status == 200
    response = http.get("/internal/metrics")
    assert response.status == 200
    assert response.header("content-type") == "text/plain; version=0.0.4; charset=utf-8"
    assert response.header("cache-control") == "no-store"
    text = response.body.decode()
    assert 'ahtwist_actions_total{action="randomNumber",outcome="success"} 1.0\n' in text
    assert "ahtwist_action_duration_seconds_bucket" in text
    assert http.get("/metrics").status == 404
    assert http.request("POST", "/internal/metrics").status == 405


def test_metrics_are_off_by_default(tmp_path):
    tester = app(tmp_path)
    response = tester.http().get("/metrics")
    assert response.status == 404


# --- config -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('path = "metrics"', """metrics.path: must start with "/" and name a path (no ? or #), got 'metrics'"""),
        ('path = "/"', """metrics.path: must start with "/" and name a path (no ? or #), got '/'"""),
        ('path = "/api/metrics"', "metrics.path: '/api/metrics' is under /api, which is servers.web.urlPathForActions"),
        ('path = "/public/m"', "metrics.path: '/public/m' is under /public, which is servers.web.urlPathForFiles"),
        ('path = "/healthz"', "metrics.path: '/healthz' collides with '/healthz' (servers.web.health.livenessPath)"),
        ('path = "/ws/metrics"', "metrics.path: '/ws/metrics' collides with '/ws' (servers.websocket.path)"),
        ('path = "/docs"', "metrics.path: '/docs' collides with '/docs' (servers.web.docs.path)"),
        ("path = 3", "metrics.path: expected a string, got 3"),
        ('enabled = "yes"', "metrics.enabled: expected true or false, got 'yes'"),
    ],
)
def test_bad_metrics_config_names_the_key(text, error):
    with pytest.raises(ConfigError) as caught:
        config_from(f"[metrics]\nenabled = true\n{text}\n".replace("enabled = true\nenabled", "enabled"))
    assert str(caught.value).endswith(error)


def test_a_path_of_a_web_mount_is_refused_and_an_own_endpoint_may_use_any_path():
    with pytest.raises(ConfigError) as caught:
        config_from('[metrics]\nenabled = true\npath = "/hooks/m"\n'
                    '[[servers.web.mounts]]\npath = "/hooks"\napp = "mod:app"\n')
    assert str(caught.value).endswith("metrics.path: '/hooks/m' collides with '/hooks' "
                                      "(a servers.web.mounts path (mod:app))")
    config = config_from('[metrics]\nenabled = true\npath = "/api/metrics"\nendpoint = "tcp:0"\n')
    assert (config.metrics.path, config.metrics.endpoint) == ("/api/metrics", "tcp:0")


def test_metrics_need_the_web_server_or_an_endpoint():
    with pytest.raises(ConfigError) as caught:
        config_from("[metrics]\nenabled = true\n[servers.web]\nenabled = false\n")
    assert str(caught.value).endswith(
        "metrics.enabled: the web server is off: set metrics.endpoint to serve the metrics on their own")
    assert config_from("[metrics]\nenabled = false\n[servers.web]\nenabled = false\n").metrics.enabled is False


def test_defaults():
    metrics = config_from("").metrics
    assert (metrics.enabled, metrics.path, metrics.endpoint) == (False, "/metrics", "")


def test_a_transport_that_raises_counts_as_an_error_drop():
    @implementer(IConnectionTransport)
    class Broken:
        def send_message(self, message):
            raise RuntimeError("broken pipe")

        def send_file(self, path):
            pass

        def close(self):
            pass

    node = make_node()
    broken = Connection("socket", "127.0.0.1", 40000, node.now_ms(), transport=Broken())
    node.add_connection(broken)
    node.rooms.add_member(broken.id, "defaultRoom")
    node.rooms.broadcast(None, "defaultRoom", "hello")
    node.reactor.advance(0)
    got = scrape(node)
    assert got["ahtwist_chat_messages_delivered_total"] == {(): 0}
    assert got["ahtwist_chat_messages_dropped_total"] == {(("reason", "error"),): 1, (("reason", "middleware"),): 0}


def test_the_bucket_of_a_duration_is_the_first_bound_not_below_it():
    assert len(BUCKET_OF_MS) == 10001
    assert [BUCKET_OF_MS[ms] for ms in (0, 1, 2, 3, 5, 6, 10, 11, 9999, 10000)] == [0, 1, 2, 3, 3, 4, 4, 5, 13, 13]
    assert [DURATION_BUCKETS_MS[BUCKET_OF_MS[ms]] for ms in (0, 3, 26, 10000)] == [0, 5, 50, 10000]


def test_a_bad_metrics_endpoint_stops_start_up_naming_the_key(tmp_path):
    from ahtwist.tap import Options

    path = tmp_path / "ahtwist.toml"
    path.write_text('[metrics]\nenabled = true\nendpoint = "bogus:9100"\n', "utf-8")
    with pytest.raises(SystemExit) as e:
        Options().parseOptions(["--config", str(path)])
    assert str(e.value) == "ahtwist: metrics.endpoint 'bogus:9100': invalid endpoint: Unknown endpoint type: 'bogus'"


def test_the_own_endpoint_listens_as_a_metrics_listener(tmp_path):
    from twisted.internet.testing import MemoryReactorClock

    from ahtwist.servers.base import Listener
    from ahtwist.tap import build_service
    from ahtwist.web.metrics import MetricsApp

    config = config_from('[metrics]\nenabled = true\nendpoint = "tcp:9100:interface=127.0.0.1"\n')
    service = build_service(config, MemoryReactorClock())
    listeners = [s for s in service if isinstance(s, Listener)]
    assert [(s.kind, s.description) for s in listeners] == [("metrics", "tcp:9100:interface=127.0.0.1")]
    site = listeners[0].factory
    assert isinstance(site.resource, type(MetricsApp(service.node).app.resource()))
