"""Load generators for the socket benchmarks (a script helper, not a test).

Single-threaded epoll clients written for low per-message overhead, so that
one core of load can saturate one core of server:

* :func:`request_reply` -- N connections, each keeping ``depth`` JSON
  requests in flight; replies/s and latency percentiles;
* :func:`fan_out` -- M room members, one sender keeping ``window`` ``say``
  messages in flight; deliveries/s and delivery-delay percentiles;
* :func:`fan_out_c` -- the same measurement by bench/fanout.c (compiled on
  first use into bench/.build/), for when the Python loop reading 500
  sockets, not the server, would set the delays;
* :func:`idle_clients` -- open N connections and leave them idle.

Times come from ``time.perf_counter_ns`` (CLOCK_MONOTONIC on Linux).
"""

import hashlib
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REQUEST = b'{"action":"randomNumber"}\n'


def _connect(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(s)
    for s in socks:  # the welcome line (ahtwist) or nothing (raw echo: see below)
        s.settimeout(30)
    return socks


def _skip_welcome(socks: list[socket.socket], expect: bool) -> None:
    if not expect:
        return
    for s in socks:
        data = b""
        while not data.endswith(b"\r\n"):
            data += s.recv(4096)


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def request_reply(
    port: int, clients: int, depth: int, seconds: float, warmup: float, welcome: bool = True
) -> dict[str, Any]:
    """Closed-loop request/reply load: every reply is answered by a new request."""
    socks = _connect(port, clients)
    _skip_welcome(socks, welcome)
    poller = select.epoll()
    state: dict[int, tuple[socket.socket, list[int], list[bytes]]] = {}
    for s in socks:
        s.setblocking(False)
        poller.register(s.fileno(), select.EPOLLIN)
        state[s.fileno()] = (s, [], [b""])
    now = time.perf_counter_ns
    for s in socks:
        sent = state[s.fileno()][1]
        t = now()
        for _ in range(depth):
            sent.append(t)
        s.sendall(REQUEST * depth)
    latencies: list[int] = []
    replies = 0
    start = now()
    measure_from = start + int(warmup * 1e9)
    stop_at = measure_from + int(seconds * 1e9)
    measuring = False
    while True:
        t = now()
        if not measuring and t >= measure_from:
            measuring = True
            replies = 0
            latencies = []
            measured_start = t
        if t >= stop_at:
            break
        for fd, _ in poller.poll(0.5):
            s, sent, pending = state[fd]
            try:
                data = s.recv(262144)
            except BlockingIOError:
                continue
            if not data:
                raise RuntimeError("server closed a connection")
            data = pending[0] + data
            n = data.count(b"\n")
            if n == 0:
                pending[0] = data
                continue
            cut = data.rfind(b"\n") + 1
            pending[0] = data[cut:]
            t = now()
            if measuring:
                replies += n
                latencies.extend(t - sent[i] for i in range(n))
            del sent[:n]
            sent.extend([t] * n)
            s.sendall(REQUEST * n)
    elapsed = (now() - measured_start) / 1e9
    for s in socks:
        s.close()
    poller.close()
    latencies.sort()
    return {
        "clients": clients,
        "in_flight_per_connection": depth,
        "seconds": round(elapsed, 2),
        "replies": replies,
        "replies_per_s": round(replies / elapsed),
        "latency_ms_p50": round(percentile(latencies, 50) / 1e6, 3),
        "latency_ms_p99": round(percentile(latencies, 99) / 1e6, 3),
        "latency_ms_max": round(latencies[-1] / 1e6, 3) if latencies else None,
    }


def fan_out(
    port: int | list[int],
    members: int,
    window: int,
    seconds: float,
    warmup: float,
    sampled: int = 100,
    join: bytes = b"roomAdd defaultRoom\n",
) -> dict[str, Any]:
    """One sender (a member) keeps ``window`` says in flight (a say is done
    when the sender receives its own copy); every member counts deliveries;
    ``sampled`` members also measure each delivery's delay from the send.
    With several ports (cluster nodes) the members are spread evenly over
    them, the sender is on the first, and the sampled ones are split too.
    ``join`` is the line each member joins with (``roomAdd defaultRoom since``:
    offsets on)."""
    ports = [port] if isinstance(port, int) else list(port)
    socks: list[socket.socket] = []
    sampled_fds: set[int] = set()
    for each in ports:
        group = _connect(each, members // len(ports))
        sampled_fds.update(s.fileno() for s in group[: sampled // len(ports)])
        socks += group
    _skip_welcome(socks, True)
    for s in socks:
        s.sendall(join)
    for s in socks:
        data = b""
        while not data.endswith(b"\r\n"):
            data += s.recv(4096)
        assert b'"status":"OK"' in data, data
    sender = socks[0]
    poller = select.epoll()
    for s in socks:
        s.setblocking(False)
        poller.register(s.fileno(), select.EPOLLIN)
    by_fd = {s.fileno(): s for s in socks}
    pending = {s.fileno(): b"" for s in socks}
    now = time.perf_counter_ns
    outstanding = 0
    said = 0

    def say() -> None:
        nonlocal outstanding, said
        sender.sendall(b"say defaultRoom %d\n" % now())
        outstanding += 1
        said += 1

    for _ in range(window):
        say()
    delays: list[int] = []
    deliveries = 0
    start = now()
    measure_from = start + int(warmup * 1e9)
    stop_at = measure_from + int(seconds * 1e9)
    measuring = False
    sender_fd = sender.fileno()
    prefix = b'{"message":"'
    while True:
        t = now()
        if not measuring and t >= measure_from:
            measuring = True
            deliveries = 0
            delays = []
            measured_start = t
            said_at_start = said
        if t >= stop_at:
            break
        for fd, _ in poller.poll(0.5):
            s = by_fd[fd]
            try:
                data = s.recv(1048576)
            except BlockingIOError:
                continue
            if not data:
                raise RuntimeError("server closed a member")
            data = pending[fd] + data
            cut = data.rfind(b"\n") + 1
            pending[fd] = data[cut:]
            if fd in sampled_fds or fd == sender_fd:
                t = now()
                n = 0
                for line in data[:cut].split(b"\r\n"):
                    if line.startswith(prefix):
                        n += 1
                        if measuring and fd in sampled_fds:
                            delays.append(t - int(line[12 : line.index(b'"', 12)]))
                if fd == sender_fd:
                    # the sender's own copies complete its says: keep the window full
                    for _ in range(n):
                        outstanding -= 1
                        say()
            else:
                n = data.count(b'"context":"user"', 0, cut)
            if measuring:
                deliveries += n
    elapsed = (now() - measured_start) / 1e9
    for s in socks:
        s.close()
    poller.close()
    delays.sort()
    return {
        "members": len(socks),
        "nodes": len(ports),
        "says_in_flight": window,
        "seconds": round(elapsed, 2),
        "says": said - said_at_start,
        "deliveries": deliveries,
        "deliveries_per_s": round(deliveries / elapsed),
        "delay_ms_p50": round(percentile(delays, 50) / 1e6, 3),
        "delay_ms_p99": round(percentile(delays, 99) / 1e6, 3),
        "delay_ms_max": round(delays[-1] / 1e6, 3) if delays else None,
    }


FANOUT_C = Path(__file__).resolve().parent / "fanout.c"
BUILD = FANOUT_C.parent / ".build"


def c_compiler() -> str | None:
    """``$CC``, else the first of cc, gcc, clang on the PATH."""
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def build_fanout() -> Path | None:
    """bench/fanout.c compiled with ``-O2`` into bench/.build/ (named by the
    source's hash, so an edit rebuilds it), or None without a C compiler."""
    source = FANOUT_C.read_bytes()
    binary = BUILD / f"fanout-{hashlib.sha256(source).hexdigest()[:12]}"
    if binary.exists():
        return binary
    compiler = c_compiler()
    if compiler is None:
        return None
    BUILD.mkdir(exist_ok=True)
    partial = binary.with_name(f"{binary.name}.{os.getpid()}")
    subprocess.run([compiler, "-O2", "-Wall", "-o", str(partial), str(FANOUT_C), "-lm"], check=True)
    partial.replace(binary)  # whole or not at all, should two runs build at once
    return binary


def fan_out_c(
    port: int | list[int],
    members: int,
    window: int,
    seconds: float,
    warmup: float,
    sampled: int = 100,
    join: bytes = b"roomAdd defaultRoom\n",
    *,
    cpu: int | None = None,
    rate: float = 0,
) -> dict[str, Any]:
    """:func:`fan_out` measured by bench/fanout.c (same arguments, same keys,
    plus ``generator``: ``"c"``), run on ``cpu`` when given.  ``rate`` > 0
    makes it open-loop: that many says a second on a fixed schedule instead
    of ``window`` in flight (C only).  Without a C compiler it says so on
    stderr and measures with :func:`fan_out` (``generator``:
    ``"python (no C compiler)"``)."""
    binary = build_fanout()
    if binary is None and rate > 0:
        raise RuntimeError("an open-loop fan-out needs bench/fanout.c, and no C compiler was found")
    if binary is None:
        print("bench/loadgen.py: no C compiler (cc, gcc, clang or $CC) found: "
              "fan-out measured by the Python generator", file=sys.stderr, flush=True)
        result = fan_out(port, members, window, seconds, warmup, sampled, join)
        result["generator"] = "python (no C compiler)"
        return result
    ports = [port] if isinstance(port, int) else list(port)
    command = [str(binary), ",".join(map(str, ports)), str(members), str(window), str(seconds), str(warmup),
               str(sampled), join.decode(), str(rate)]
    if cpu is not None and (os.cpu_count() or 1) > 1 and shutil.which("taskset"):
        command = ["taskset", "-c", str(cpu), *command]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"bench/fanout.c exited {out.returncode}: {out.stderr.strip()}")
    result: dict[str, Any] = json.loads(out.stdout)
    result["generator"] = "c"
    return result


def idle_clients(port: int, count: int, welcome: bool = True) -> list[socket.socket]:
    """``count`` connected, idle clients (welcome read, when the server sends
    one); the caller closes them."""
    socks = _connect(port, count)
    _skip_welcome(socks, welcome)
    return socks
