"""CPU per request, in process, for the HTTP, socket and websocket action paths.

The wall-clock benchmarks (http_api.py, socket_bench.py) need a quiet
machine; this one does not: it feeds complete requests to the real protocol
objects of a service built from the checkout it runs in (real HTTP parsing,
the real socket line framing, real websocket frames after a real upgrade, the real processor, a StringTransport
underneath) and reports the best of several rounds in microseconds per
request.  Log events go to the observer twistd uses (ahtwist.logs.LineLogObserver,
buffered, writing to /dev/null), so the action log line costs what it costs in
production.  Run it in two checkouts, alternating, to compare them
(bench/ab_checkouts.py does that, with ``--checkout``):

    .venv/bin/python bench/cpu_per_request.py [--requests 20000] [--rounds 7] [--checkout DIR]

Writes bench/results/cpu_per_request.json.
"""

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport


def _checkout() -> str:
    """The checkout whose code is measured: ``--checkout DIR``, else this one."""
    if "--checkout" in sys.argv:
        return str(Path(sys.argv[sys.argv.index("--checkout") + 1]).resolve())
    return str(Path(__file__).resolve().parent.parent)


sys.path.insert(0, _checkout())

from twisted.logger import globalLogBeginner  # noqa: E402

from ahtwist.config import Overrides, load_config  # noqa: E402
from ahtwist.logs import LineLogObserver  # noqa: E402
from ahtwist.tap import build_service  # noqa: E402

HERE = Path(__file__).resolve().parent
HTTP_REQUEST = b"GET /api/randomNumber HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\n\r\n"
SOCKET_REQUEST = b"randomNumber\n"
WS_UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def masked_text_frame(payload: bytes, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    """One client-to-server websocket text frame (clients must mask)."""
    assert len(payload) < 126
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + body


WS_REQUEST = masked_text_frame(b'{"event":"action","params":{"action":"randomNumber"},"messageId":1}')


def services(root: Any) -> list[Any]:
    """Every service below ``root`` (the web and socket servers among them)."""
    found = [root]
    for child in getattr(root, "services", []):
        found.extend(services(child))
    return found


def connect(factory: Any) -> tuple[Any, StringTransport]:
    protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    transport.protocol = protocol  # as a real transport has (Autobahn's upgrade replaces it)
    protocol.makeConnection(transport)
    return protocol, transport


def per_request(protocol: Any, transport: StringTransport, request: bytes, n: int, marker: bytes) -> float:
    """Seconds per request for ``n`` requests, each answered before the next."""
    transport.clear()
    gc.collect()
    started = time.perf_counter()
    for _ in range(n):
        protocol.dataReceived(request)
    elapsed = time.perf_counter() - started
    answered = transport.value().count(marker)
    if answered != n:
        raise SystemExit(f"expected {n} replies, saw {answered}")
    return elapsed / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--config", default=None, help="a config file (default: the built-in defaults)")
    parser.add_argument("--checkout", default=None, help="measure the code of this checkout (default: this one)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/results alone")
    parser.add_argument("--only", choices=("http", "socket", "websocket"), default=None,
                        help="measure one path only (bench/instructions_ab.py counts instructions per path)")
    options = parser.parse_args()
    devnull = open(os.devnull, "w")  # noqa: SIM115 -- for the life of the process
    globalLogBeginner.beginLoggingTo(
        [LineLogObserver(devnull, clock=Clock())], discardBuffer=True, redirectStandardIO=False
    )
    clock = Clock()
    config = load_config(
        options.config, overrides=Overrides(web=("tcp:0:interface=127.0.0.1",), socket=("tcp:0:interface=127.0.0.1",))
    )
    service = build_service(config, clock)
    site = next(s.site for s in services(service) if hasattr(s, "site"))
    socket_factory = next(s.factory for s in services(service) if getattr(s, "kind", None) == "socket")
    http = connect(site)
    sock = connect(socket_factory)
    sock[1].clear()
    upgrade_channel, ws_transport = connect(site)
    upgrade_channel.dataReceived(WS_UPGRADE)
    if b"101 Switching Protocols" not in ws_transport.value():
        raise SystemExit(f"websocket upgrade failed: {ws_transport.value()[:200]!r}")
    ws = (ws_transport.protocol, ws_transport)
    results: dict[str, list[float]] = {"http_us": [], "socket_us": [], "websocket_us": []}
    paths = {
        "http_us": (http, HTTP_REQUEST, b"HTTP/1.1 200"),
        "socket_us": (sock, SOCKET_REQUEST, b'"randomNumber"'),
        "websocket_us": (ws, WS_REQUEST, b'"randomNumber"'),
    }
    if options.only:
        results = {f"{options.only}_us": []}
    for _ in range(options.rounds):
        for name in results:
            (protocol, transport), request, marker = paths[name]
            results[name].append(per_request(protocol, transport, request, options.requests, marker) * 1e6)
    best = {name: round(min(values), 2) for name, values in results.items()}
    out = {"checkout": _checkout(), "requests": options.requests, "best": best,
           "rounds": {k: [round(v, 2) for v in vs] for k, vs in results.items()}}
    if not options.no_write:
        (HERE / "results" / "cpu_per_request.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(best))


if __name__ == "__main__":
    main()
