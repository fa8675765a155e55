"""The ceiling: a raw Twisted JSON-line server doing the same round trip.

A ``LineOnlyReceiver`` that parses each request line as JSON and answers the
reply an ahtwist ``randomNumber`` request gets -- same keys, a fresh random
number, the line count and a uuid4 ``messageId`` -- as compact JSON + CRLF.
No actions, no middleware, no logging: what Twisted and the JSON codec cost.

    python bench/raw_echo_server.py PORTFILE
"""

import random
import sys
import uuid

import orjson
from twisted.internet import reactor
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver


class JSONLineEcho(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 1048576
    count = 0

    def lineReceived(self, line: bytes) -> None:
        self.count += 1
        request = orjson.loads(line)
        number = random.random()
        reply = {
            "randomNumber": number,
            "stringRandomNumber": f"Your random number is {number!r}",
            "context": "response",
            "messageCount": self.count,
            "messageId": request.get("messageId") or str(uuid.uuid4()),
        }
        self.transport.write(orjson.dumps(reply) + b"\r\n")


def main() -> None:
    factory = Factory.forProtocol(JSONLineEcho)
    port = reactor.listenTCP(0, factory, backlog=4096, interface="127.0.0.1")
    with open(sys.argv[1], "w") as f:
        f.write(str(port.getHost().port))
    reactor.run()


if __name__ == "__main__":
    main()
