"""A custom ahtwist server: JSON lines over any stream endpoint (a unix socket, say).

Each line a client sends is one JSON message in the websocket's format
(``{"event": "action", "params": {...}, "messageId": 1}``, ``roomAdd``,
``say``...); each reply is one JSON line.  Its connections are in the same
rooms, actions and stats as everyone else's.  Enable it with::

    [general.paths]
    servers = ["examples/jsonlines_server"]

    [servers.jsonLines]
    endpoints = ["unix:/tmp/ahtwist-jsonlines.sock"]
"""

import json

from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver
from zope.interface import implementer

from ahtwist import Server
from ahtwist.connection import IConnectionTransport
from ahtwist.errors import ConnectionRefused
from ahtwist.replies import goodbye, refusal


@implementer(IConnectionTransport)
class JsonLinesProtocol(LineOnlyReceiver):
    """One client: lines in -> ``server.receive``; messages out -> lines."""

    delimiter = b"\n"
    MAX_LENGTH = 1048576
    connection = None

    def connectionMade(self):
        server = self.factory.server
        peer = self.transport.getPeer()
        self.transport.pauseProducing()  # nothing is read until middleware has decided
        result = server.connect(self, getattr(peer, "host", None) or "unix", getattr(peer, "port", 0) or 0)
        if hasattr(result, "addCallbacks"):
            result.addCallbacks(self._accepted, self._refused)
        else:
            self._accepted(result)

    def _accepted(self, connection):
        self.connection = connection
        self.transport.resumeProducing()

    def _refused(self, failure):
        failure.trap(ConnectionRefused)
        self.send_message(refusal(failure.value.error))
        self.transport.loseConnection()

    def lineReceived(self, line):
        try:
            message = json.loads(line)
        except ValueError:
            return  # not JSON: ignored, as on the websocket
        self.factory.server.receive(self.connection, message)

    def lineLengthExceeded(self, line):
        self.transport.loseConnection()

    def connectionLost(self, reason):
        if self.connection is not None:
            self.factory.server.disconnected(self.connection)

    # --- IConnectionTransport: what the core pushes ---------------------------

    def send_message(self, message):
        self.sendLine(json.dumps(message, separators=(",", ":")).encode())

    def send_file(self, path):
        self.send_message(self.factory.server.file_message(path, self.connection.message_count, None))

    def close(self):
        if self.transport.disconnecting:
            return  # goodbye said already
        self.send_message(goodbye())
        self.transport.loseConnection()


class JsonLinesServer(Server):
    """``[servers.jsonLines]``: JSON lines on every endpoint listed there."""

    type = "jsonLines"
    can_chat = True
    sends_welcome = True
    logs_connections = True

    def build_factory(self):
        factory = Factory.forProtocol(JsonLinesProtocol)
        factory.server = self
        return factory
