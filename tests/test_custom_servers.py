"""Users' servers: found in ``general.paths.servers``, started by a
``[servers.<name>]`` table, validated at start-up with one-line errors."""

import json
from pathlib import Path

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from ahtwist import Server
from ahtwist.errors import ConfigError
from ahtwist.servers.base import Listener
from ahtwist.servers.loader import load_servers
from ahtwist.tap import Options, build_service
from tests.helpers import REPO, config_from, make_node

EXAMPLE = REPO / "examples" / "jsonlines_server"


def write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "ahtwist.toml"
    path.write_text(text)
    return str(path)


def test_a_servers_table_starts_the_users_server_with_its_endpoints_and_options(tmp_path):
    config = config_from(
        f'[general.paths]\nservers = ["{EXAMPLE}"]\n'
        f'[servers.jsonLines]\nendpoints = ["unix:{tmp_path}/a.sock", "tcp:0:interface=127.0.0.1"]\ncolour = "blue"\n',
        web=("none",),
        socket=("none",),
    )
    reactor = MemoryReactorClock()
    top = build_service(config, reactor)
    [server] = [s for s in top if isinstance(s, Server)]
    assert (type(server).__name__, server.type, server.options) == ("JsonLinesServer", "jsonLines", {"colour": "blue"})
    top.startService()
    listeners = [s for s in server if isinstance(s, Listener)]
    assert [listener.description for listener in listeners] == [f"unix:{tmp_path}/a.sock", "tcp:0:interface=127.0.0.1"]
    assert [u[0] for u in reactor.unixServers] == [f"{tmp_path}/a.sock"]
    assert [(t[0], t[3]) for t in reactor.tcpServers] == [(0, "127.0.0.1")]
    assert config.warnings == ()


def test_a_disabled_table_starts_nothing():
    config = config_from(
        f'[general.paths]\nservers = ["{EXAMPLE}"]\n[servers.jsonLines]\nenabled = false\nendpoints = ["tcp:0"]\n',
        web=("none",),
        socket=("none",),
    )
    assert [s for s in build_service(config, MemoryReactorClock()) if isinstance(s, Server)] == []


def test_an_unknown_server_name_stops_start_up_naming_the_key(tmp_path):
    config = config_from(f'[general.paths]\nservers = ["{EXAMPLE}"]\n[servers.jsonLine]\nendpoints = ["tcp:0"]\n')
    with pytest.raises(ConfigError) as e:
        build_service(config, MemoryReactorClock())
    assert str(e.value) == f"{config.source}: servers.jsonLine: no server named 'jsonLine' in general.paths.servers"


def test_a_bad_endpoint_is_one_line_naming_the_key(tmp_path):
    path = write_config(tmp_path, f'[general.paths]\nservers = ["{EXAMPLE}"]\n[servers.jsonLines]\nendpoints = ["bogus:1"]\n')
    with pytest.raises(SystemExit) as e:
        Options().parseOptions(["--config", path])
    assert str(e.value) == "ahtwist: servers.jsonLines.endpoints 'bogus:1': invalid endpoint: Unknown endpoint type: 'bogus'"


@pytest.mark.parametrize(
    "table,message",
    [
        ('endpoints = "tcp:0"', "servers.x.endpoints: expected a list of endpoint strings, got 'tcp:0'"),
        ("enabled = 1", "servers.x.enabled: expected true or false, got 1"),
    ],
)
def test_a_bad_table_is_one_line_naming_the_key(tmp_path, table, message):
    path = write_config(tmp_path, f"[servers.x]\n{table}\n")
    with pytest.raises(SystemExit) as e:
        Options().parseOptions(["--config", path])
    assert str(e.value) == f"ahtwist: {path}: {message}"


def _example_server(node):
    return load_servers([str(EXAMPLE)])["jsonLines"](node, node.reactor)


def test_drain_waits_for_a_pending_action_then_says_goodbye_once():
    """The base Server's stop: goodbye once the last pending action answered."""
    node = make_node()
    clock = node.reactor
    server = _example_server(node)
    protocol = server.build_factory().buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 4000))
    protocol.makeConnection(transport)
    protocol.dataReceived(
        b'{"event":"action","params":{"action":"sleepTest","sleepDuration":1000},"messageId":1}\n'
    )
    drained = server.drain(5)

    def lines():
        out = [json.loads(line) for line in transport.value().splitlines()]
        transport.clear()
        return out

    assert lines() == [{"welcome": "Hello! Welcome to the actionhero api", "context": "api"}]
    clock.advance(0.5)
    assert lines() == [] and not transport.disconnecting  # still working on the action
    clock.advance(0.6)
    [reply] = lines()
    assert (reply["messageId"], reply["sleepDuration"]) == (1, 1000)
    clock.advance(0.05)  # the drain looks again
    assert lines() == [{"status": "Bye!", "context": "api"}]
    assert transport.disconnecting
    clock.advance(0.2)
    assert lines() == []  # one goodbye, however often the drain looks
    protocol.connectionLost(None)
    clock.advance(0.1)
    assert drained.called and server.connections == {} and node.connections == {}
