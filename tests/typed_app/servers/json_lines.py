"""A custom server: one JSON message per line, in the same rooms and actions."""

import json
from typing import Any

from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver
from zope.interface import implementer

from ahtwist import Connection, Server
from ahtwist.connection import IConnectionTransport


@implementer(IConnectionTransport)
class JsonLinesProtocol(LineOnlyReceiver):
    delimiter = b"\n"

    def __init__(self, server: "JsonLinesServer") -> None:
        self.server = server
        self.connection: Connection | None = None

    def connectionMade(self) -> None:
        assert self.transport is not None
        peer = self.transport.getPeer()
        accepted = self.server.connect(self, getattr(peer, "host", "unix"), getattr(peer, "port", 0))
        if isinstance(accepted, Connection):
            self.connection = accepted
        else:
            accepted.addCallback(self._accepted)

    def _accepted(self, connection: Connection) -> None:
        self.connection = connection

    def lineReceived(self, line: bytes) -> None:
        if self.connection is not None:
            self.server.receive(self.connection, json.loads(line))

    def connectionLost(self, reason: Any = None) -> None:
        if self.connection is not None:
            self.server.disconnected(self.connection)

    def send_message(self, message: dict[str, Any]) -> None:
        assert self.transport is not None
        self.transport.write(json.dumps(message).encode() + self.delimiter)

    def send_file(self, path: str) -> None:
        if self.connection is not None:
            self.send_message(self.server.file_message(path, self.connection.message_count, None))

    def close(self) -> None:
        assert self.transport is not None
        self.transport.loseConnection()


class JsonLinesFactory(Factory):
    def __init__(self, server: "JsonLinesServer") -> None:
        self.server = server

    def buildProtocol(self, addr: Any) -> JsonLinesProtocol:
        return JsonLinesProtocol(self.server)


class JsonLinesServer(Server):
    type = "jsonLines"
    sends_welcome = False

    def build_factory(self) -> JsonLinesFactory:
        return JsonLinesFactory(self)
