"""Memory under issue 12's attacks (items 4-6): RSS before, peak and after.

A benchmark, not a test: it starts one ``twistd ahtwist`` on loopback with
default limits and a probe action (``bench/memory_probe``), and runs

* ``amplification`` -- 8 websocket clients each send 5,000 ``file`` requests
  (65 bytes in, ~19 KB out) and never read; run three times in a row to see
  whether RSS ratchets;
* ``chat`` -- a websocket member of a room that does not read while 50,000
  messages are said to the room;
* ``rooms`` -- ``createChatRoom`` with a 20 MiB name (three times), then
  rooms with 1 KB names until the room quota refuses;
* ``sleepers`` -- 1,000 websocket connections x 5 ``sleepTest`` (10 s),
  closed while the actions sleep.

For each: RSS before, the peak (sampled every 20 ms) and after the clients
went away; then the probe's gc object count, and RSS after glibc's
``malloc_trim(0)``, to tell an allocator that keeps freed memory from a leak
that keeps objects.  Results: ``bench/results/memory_limits.json``.
"""

import base64
import json
import os
import socket
import struct
import threading
import time
import urllib.request
from pathlib import Path

from bench.common import BENCH, PYTHON, REPO, Server, free_port, twistd, write_result

FILE = "javascript/actionheroClient.js"


def mask_frame(payload: bytes) -> bytes:
    head = bytes([0x81])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def ws_connect(port: int, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    assert b" 101 " in head.split(b"\r\n")[0], head
    return sock


def http(port: int, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


class PeakSampler:
    """Samples the server's RSS every 20 ms in a thread; ``peak`` in KiB."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.peak = server.rss_kib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.server.rss_kib())
            time.sleep(0.02)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.server.rss_kib())
        return self.peak


def settle(server: Server, port: int, seconds: float = 2.0) -> dict:
    """Wait for the server to finish closing, then probe (gc first)."""
    time.sleep(seconds)
    return http(port, "/api/memoryProbe")


def amplification(server: Server, port: int, clients: int = 8, requests: int = 5000) -> dict:
    frame = mask_frame(json.dumps({"event": "file", "file": FILE}).encode())
    before = http(port, "/api/memoryProbe")
    sampler = PeakSampler(server)
    socks = [ws_connect(port, rcvbuf=4096) for _ in range(clients)]
    started = time.monotonic()

    def flood(sock: socket.socket) -> None:
        sock.settimeout(10)
        try:
            for _ in range(requests // 100):
                sock.sendall(frame * 100)
        except OSError:
            pass  # dropped by the server (that is the point), or input paused

    threads = [threading.Thread(target=flood, args=(s,)) for s in socks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flooded = time.monotonic() - started
    time.sleep(1.5)
    for s in socks:
        s.close()
    after = settle(server, port, 5.0)  # past the server's malloc_trim, 3 s after the last drop
    peak = sampler.stop()
    return {"seconds_flooding": round(flooded, 2), **_numbers(before, peak, after)}


def chat(server: Server, port: int, messages: int = 50000) -> dict:
    before = http(port, "/api/memoryProbe")
    sampler = PeakSampler(server)
    slow = ws_connect(port, rcvbuf=4096)
    slow.sendall(mask_frame(json.dumps({"event": "roomAdd", "room": "defaultRoom"}).encode()))
    talker = ws_connect(port)
    talker.sendall(mask_frame(json.dumps({"event": "roomAdd", "room": "defaultRoom"}).encode()))
    say = mask_frame(json.dumps({"event": "say", "room": "defaultRoom", "message": "x" * 1000}).encode())
    reader = threading.Thread(target=_drain, args=(talker,), daemon=True)
    reader.start()
    for _ in range(messages // 500):
        talker.sendall(say * 500)
    time.sleep(1.5)
    for sock in (slow, talker):
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes the reader thread; close() alone would not send the FIN
        except OSError:
            pass  # the server dropped it already
        sock.close()
    after = settle(server, port, 5.0)
    peak = sampler.stop()
    return _numbers(before, peak, after)


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(1 << 20):
            pass
    except OSError:
        pass


def rooms(server: Server, port: int, most: int = 50000) -> dict:
    """Three 20 MiB names, a 1 KB name, then 250-character names until refused
    (or ``most`` rooms, for a server without a quota)."""
    before = http(port, "/api/memoryProbe")
    sampler = PeakSampler(server)
    huge = [http(port, "/api/createChatRoom", {"name": "r" * (20 << 20)}).get("error") for _ in range(3)]
    kilobyte = http(port, "/api/createChatRoom", {"name": "k" * 1024}).get("error")
    created = 0
    refusal = None
    while created < most:
        reply = http(port, "/api/createChatRoom", {"name": f"{created:08d}" + "n" * 242})
        if reply.get("error"):
            refusal = reply["error"]
            break
        created += 1
    after = settle(server, port, 0.5)
    peak = sampler.stop()
    return {
        "huge_name_errors": huge,
        "one_kb_name_error": kilobyte,
        "rooms_created": created,
        "refusal": refusal,
        **_numbers(before, peak, after),
    }


def sleepers(server: Server, port: int, clients: int = 1000, each: int = 5) -> dict:
    before = http(port, "/api/memoryProbe")
    sampler = PeakSampler(server)
    frame = mask_frame(json.dumps({"event": "action", "params": {"action": "sleepTest", "sleepDuration": 10000}}).encode())
    socks = [ws_connect(port) for _ in range(clients)]
    for s in socks:
        s.sendall(frame * each)
    time.sleep(1.0)
    during = http(port, "/api/memoryProbe")
    for s in socks:
        s.close()
    after = settle(server, port)
    peak = sampler.stop()
    return {"in_flight_while_connected": during["inFlight"], **_numbers(before, peak, after)}


def _commit(checkout: Path) -> str:
    import subprocess

    done = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "(not a git checkout)"


def _numbers(before: dict, peak: int, after: dict) -> dict:
    return {
        "rss_before_kib": before["rssKiB"],
        "rss_peak_kib": peak,
        "rss_after_kib": after["rssKiB"],
        "after_over_before": round(after["rssKiB"] / before["rssKiB"], 3),
        "gc_objects_before": before["gcObjects"],
        "gc_objects_after": after["gcObjects"],
        "connections_after": after["connections"],
        "malloc_trims_so_far": after.get("memoryTrims"),
        "in_flight_after": after["inFlight"],
    }


def main(argv: list[str] | None = None) -> None:
    """``--checkout DIR`` measures another checkout (with its own ``.venv``),
    e.g. the code before issue 12, written as ``memory_limits_<NAME>.json``
    with ``--name NAME``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkout", default=str(REPO))
    parser.add_argument("--name", default="")
    args = parser.parse_args(argv)
    checkout = Path(args.checkout).resolve()
    port = free_port()
    config = BENCH / "results" / "memory_limits.toml"
    config.parent.mkdir(exist_ok=True)
    config.write_text(
        "[general.paths]\n"
        f'actions = ["{checkout / "actions"}", "{BENCH / "memory_probe"}"]\n'
    )
    log = BENCH / "results" / "memory_limits.log"
    results: dict = {"checkout": str(checkout), "commit": _commit(checkout), "python": PYTHON}
    command = twistd(port, "--socket", "none", "--config", str(config))
    command[0] = str(checkout / ".venv" / "bin" / "twistd")
    with Server(command, port=port, cpu=None, log=log, cwd=checkout) as server:
        http(port, "/api/memoryProbe")  # warm up
        baseline = http(port, "/api/memoryProbe")
        results["baseline_kib"] = baseline["rssKiB"]
        results["amplification"] = [amplification(server, port) for _ in range(3)]
        results["chat"] = chat(server, port)
        results["sleepers"] = sleepers(server, port)
        results["rooms"] = rooms(server, port)
        final = http(port, "/api/memoryProbe")
        trimmed = http(port, "/api/memoryProbe?trim=1")
        results["end"] = {
            "rss_kib": final["rssKiB"],
            "gc_objects": final["gcObjects"],
            "top_types": final["topTypes"],
            "rss_after_malloc_trim_kib": trimmed["rssAfterTrimKiB"],
        }
        results["slow_clients_dropped_log_lines"] = server.log_text().count("dropping websocket client")
    config.unlink()
    path = write_result("memory_limits" + (f"_{args.name}" if args.name else ""), results)
    print(json.dumps(results, indent=2))
    print(f"written to {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
