"""The ceiling for fan-out: one chat room on bare Twisted (TCP lines) or bare Autobahn (websocket).

The same conversation ahtwist has with bench/loadgen.py's and
bench/websocket_load.py's fan-out clients, with nothing else: a welcome, a
``roomAdd`` answered OK, a ``say`` answered OK (messageCount, a uuid4
messageId) and the message -- message, room, from, context "user", sentAt --
encoded once as compact JSON and handed to every member in join order (the
TCP server writes the same bytes to each transport; the websocket server
calls Autobahn's ``sendMessage`` per member, as a plain Autobahn program
does).  No actions, rooms API, limits or logging.

    python bench/servers/raw_rooms.py socket PORT
    python bench/servers/raw_rooms.py websocket PORT
"""

import sys
import time
import uuid

from twisted.internet import epollreactor

epollreactor.install()

import orjson  # noqa: E402
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol  # noqa: E402
from twisted.internet import reactor  # noqa: E402
from twisted.internet.protocol import Factory  # noqa: E402
from twisted.protocols.basic import LineOnlyReceiver  # noqa: E402

WELCOME = {"welcome": "Hello! Welcome to the actionhero api", "context": "api"}


class Member:
    """What both transports share: the count, the id, the room, the replies."""

    members: list["Member"] = []
    count = 0

    def joined(self) -> None:
        self.id = str(uuid.uuid4())

    def ok(self, data: bool = False) -> bytes:
        self.count += 1
        reply = {"status": "OK", "context": "response", "data": True} if data else {
            "status": "OK", "context": "response"}
        reply["messageCount"] = self.count
        reply["messageId"] = str(uuid.uuid4())
        return orjson.dumps(reply)

    def message(self, text: str) -> bytes:
        return orjson.dumps({"message": text, "room": "defaultRoom", "from": self.id, "context": "user",
                             "sentAt": int(time.time() * 1000)})

    def left(self) -> None:
        if self in self.members:
            self.members.remove(self)


class LineMember(LineOnlyReceiver, Member):
    delimiter = b"\n"

    def connectionMade(self) -> None:
        self.joined()
        self.transport.write(orjson.dumps(WELCOME) + b"\r\n")

    def lineReceived(self, line: bytes) -> None:
        verb, _, rest = line.rstrip(b"\r").decode().partition(" ")
        if verb == "roomAdd":
            self.members.append(self)
            self.transport.write(self.ok(True) + b"\r\n")
        elif verb == "say":
            self.transport.write(self.ok() + b"\r\n")
            data = self.message(rest.partition(" ")[2]) + b"\r\n"
            for member in self.members:
                member.transport.write(data)

    def connectionLost(self, reason: object = None) -> None:
        self.left()


class SocketMember(WebSocketServerProtocol, Member):
    def onOpen(self) -> None:
        self.joined()
        self.sendMessage(orjson.dumps(WELCOME))

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        request = orjson.loads(payload)
        event = request.get("event")
        if event == "roomAdd":
            self.members.append(self)
            self.sendMessage(self.ok(True))
        elif event == "say":
            self.sendMessage(self.ok())
            data = self.message(request["message"])
            for member in self.members:
                member.sendMessage(data)

    def onClose(self, wasClean: bool, code: object, reason: object) -> None:
        self.left()


def main() -> None:
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "socket":
        factory = Factory.forProtocol(LineMember)
    else:
        factory = WebSocketServerFactory(server=None)
        factory.protocol = SocketMember
        factory.setProtocolOptions(webStatus=False)
    reactor.listenTCP(port, factory, backlog=4096, interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main()
