"""The Python part of delivering one chat message to one websocket member: a tool, not a benchmark.

Opens N in-memory websocket clients (the test harness: no sockets, the
transport is Twisted's StringTransport, so ``write_now`` ends in a list
append) and times ``connection.send_message`` of one shared room message to
all of them, best of 7.  What a real say costs on top of this per member is
the ``send()`` system call (``bench/profile_server.py say``).

    .venv/bin/python bench/say_path.py [members]
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ahtwist.testing import make_node  # noqa: E402
from ahtwist.testing.websocket_client import WSHarness  # noqa: E402


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    node = make_node()
    harness = WSHarness(node)
    for _ in range(count):
        harness.client()
    connections = list(node.connections.values())
    message = {"message": "hello", "room": "r", "from": "x", "context": "user", "sentAt": 1}
    best = float("inf")
    for _ in range(7):
        for connection in connections:
            connection.transport.transport.clear()
        began = time.perf_counter()
        for connection in connections:
            connection.send_message(message)
        best = min(best, time.perf_counter() - began)
    print(f"{count} websocket members: {best / count * 1e6:.2f} µs each (Python only, best of 7)")


if __name__ == "__main__":
    main()
