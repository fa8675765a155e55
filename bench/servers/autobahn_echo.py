"""The ceiling for ahtwist's websocket numbers: a bare Autobahn JSON echo server.

Same stack as ahtwist (Twisted's epoll reactor, Autobahn, orjson) with no
routing, no actions, no connection bookkeeping: every text frame is parsed as
JSON and the same value is serialized and sent back.  Usage:
``python bench/servers/autobahn_echo.py PORT``.
"""

import sys

from twisted.internet import epollreactor

epollreactor.install()

import orjson  # noqa: E402
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol  # noqa: E402
from twisted.internet import reactor  # noqa: E402


class Echo(WebSocketServerProtocol):
    def onMessage(self, payload, isBinary):
        if not isBinary:
            self.sendMessage(orjson.dumps(orjson.loads(payload)))


def main() -> None:
    factory = WebSocketServerFactory(server=None)
    factory.protocol = Echo
    factory.setProtocolOptions(webStatus=False)
    reactor.listenTCP(int(sys.argv[1]), factory, interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main()
