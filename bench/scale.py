"""Scale benchmark (issue 14, item 4): a script, not a test.

One ``twistd ahtwist`` process (defaults, listeners on 127.0.0.1 with a
1024 backlog), one load-generator process (this one, a plain epoll loop):

1. 10,000 websocket connections (welcome read), then 10,000 TCP connections:
   server RSS at start, with the websockets idle, with all 20,000 idle;
2. all 20,000 join one room: RSS;
3. says to a 10,000-member room (websockets only, then TCP only): each
   member timestamps the arrival (``perf_counter`` when its socket is read),
   delay = arrival - the sender's send time; p50/p99/max per say and overall;
4. churn, on a fresh server: websocket connect + handshake (101 + welcome) +
   close handshake, as many per second as the server does, for 30 s; errors
   counted; RSS before and after (and 5 s later).

The file-descriptor limit is raised (``resource.setrlimit``) for this process
and the server it starts; connections come from 127.0.0.2, 127.0.0.3, ... so
ephemeral ports do not run out.  Results: ``bench/results/scale.json`` and
``scale.md``.

    .venv/bin/python bench/scale.py [--connections 10000] [--churn-seconds 30]
"""

import argparse
import base64
import contextlib
import errno
import json
import os
import resource
import select
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.common import RESULTS, VENV_BIN, Server, write_result  # noqa: E402
from bench.loadgen import percentile  # noqa: E402
from bench.websocket_load import parse_frames, text_frame  # noqa: E402

perf = time.perf_counter
LISTEN = "tcp:0:interface=127.0.0.1:backlog=1024"
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
CLOSE_FRAME = bytes((0x88, 0x82)) + b"\0\0\0\0" + b"\x03\xe8"  # masked (zero key) close 1000
PONG = 0x8A


def raise_fd_limit(wanted: int = 200_000) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(wanted, hard), max(wanted, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Sources:
    """Loopback source addresses, a new one every ``per_address`` connections."""

    def __init__(self, per_address: int = 20_000) -> None:
        self.count = 0
        self.per_address = per_address

    def socket(self) -> socket.socket:
        address = f"127.0.0.{2 + (self.count // self.per_address) % 250}"
        self.count += 1
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.bind((address, 0))
        return s


def handshake(port: int) -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (port, key))


class Member:
    __slots__ = ("sock", "ws", "buffer", "open", "frames")

    def __init__(self, sock: socket.socket, ws: bool) -> None:
        self.sock = sock
        self.ws = ws
        self.buffer = b""
        self.open = not ws
        self.frames: list[tuple[float, bytes]] = []  # (arrival, payload) of messages


class Crowd:
    """Many idle members in one epoll loop: answers pings, keeps messages."""

    def __init__(self) -> None:
        self.poller = select.epoll()
        self.members: dict[int, Member] = {}
        #: members whose frames went from none to some (see clear)
        self.answered = 0
        #: a say being timed: its text, and (arrival) per member that got it
        self.needle: bytes | None = None
        self.arrivals: list[float] = []

    def clear(self, members: list[Member]) -> None:
        for member in members:
            member.frames.clear()
        self.answered = 0

    def add(self, member: Member) -> None:
        member.sock.setblocking(False)
        self.members[member.sock.fileno()] = member
        self.poller.register(member.sock.fileno(), select.EPOLLIN)

    def pump(self, seconds: float = 0.0, until=None, timeout: float = 120.0) -> None:
        end = perf() + seconds
        give_up = perf() + timeout
        while True:
            now = perf()
            if until is not None and until():
                return
            if until is None and now >= end:
                return
            if now > give_up:
                raise RuntimeError("timed out waiting for the server")
            for fd, _ in self.poller.poll(0.05):
                member = self.members[fd]
                try:
                    data = member.sock.recv(262144)
                except BlockingIOError:
                    continue
                arrived = perf()
                if not data:
                    raise RuntimeError("the server closed a member")
                self.read(member, data, arrived)

    def read(self, member: Member, data: bytes, arrived: float) -> None:
        had = bool(member.frames)
        self._read(member, data, arrived)
        if member.frames and not had:
            self.answered += 1
        if self.needle is not None and self.needle in data:
            self.arrivals.append(arrived)

    def _read(self, member: Member, data: bytes, arrived: float) -> None:
        buffer = member.buffer + data if member.buffer else data
        if member.ws:
            if not member.open:
                head, sep, rest = buffer.partition(b"\r\n\r\n")
                if not sep:
                    member.buffer = buffer
                    return
                if not head.startswith(b"HTTP/1.1 101"):
                    raise RuntimeError(head.decode("latin-1"))
                member.open = True
                buffer = rest
            frames, member.buffer = parse_frames(buffer)
            for opcode, payload in frames:
                if opcode == 9:
                    member.sock.send(bytes((PONG, 0x80 | len(payload))) + b"\0\0\0\0" + payload)
                elif opcode == 1:
                    member.frames.append((arrived, payload))
        else:
            cut = buffer.rfind(b"\r\n") + 2
            member.buffer = buffer[cut:] if cut >= 2 else buffer
            if cut >= 2:
                member.frames.extend((arrived, line) for line in buffer[: cut - 2].split(b"\r\n"))

    def open_many(self, port: int, count: int, ws: bool, sources: Sources, batch: int = 200) -> list[Member]:
        """``count`` members, ``batch`` at a time, each welcomed."""
        opened: list[Member] = []
        for i in range(0, count, batch):
            group = []
            for _ in range(min(batch, count - i)):
                s = sources.socket()
                s.connect(("127.0.0.1", port))
                member = Member(s, ws)
                if ws:
                    s.sendall(handshake(port))
                self.add(member)
                group.append(member)
            self.answered = 0
            self.pump(until=lambda g=group: self.answered >= len(g) and all(m.frames for m in g))
            for member in group:
                assert b"welcome" in member.frames[0][1], member.frames[0][1]
            self.clear(group)
            opened += group
        return opened

    def request_all(self, members: list[Member], ws_frame: bytes, line: bytes, expect: bytes) -> None:
        """Send one request to each member and wait for every reply."""
        self.clear(members)
        for member in members:
            member.sock.sendall(text_frame(ws_frame) if member.ws else line)
        self.pump(until=lambda: self.answered >= len(members))
        for member in members:
            assert expect in member.frames[0][1], member.frames[0][1]
        self.clear(members)


def say_delays(crowd: Crowd, members: list[Member], room: str, says: int, server: "Server | None" = None) -> dict:
    """``says`` messages from the first member to ``room``, one after the other
    (with ``server``: its CPU time per say too, which the load on the shared
    machine changes less than the delays)."""
    sender = members[0]
    per_say = []
    every: list[float] = []
    cpu = own = 0.0
    for n in range(says):
        text = f"scale-{room}-{n}"
        crowd.needle = f'"message":"{text}"'.encode()
        crowd.arrivals = []
        cpu_before = server.cpu_seconds() if server is not None else 0.0
        own_before = time.process_time()
        sent = perf()
        if sender.ws:
            sender.sock.sendall(text_frame(json.dumps({"event": "say", "room": room, "message": text}).encode()))
        else:
            sender.sock.sendall(f"say {room} {text}\n".encode())
        crowd.pump(until=lambda: len(crowd.arrivals) >= len(members))
        own += time.process_time() - own_before
        if server is not None:
            cpu += server.cpu_seconds() - cpu_before
        delays = sorted((at - sent) * 1000 for at in crowd.arrivals)
        crowd.needle = None
        every += delays
        per_say.append({"p50_ms": round(percentile(delays, 50), 1), "p99_ms": round(percentile(delays, 99), 1),
                        "max_ms": round(delays[-1], 1)})
        crowd.pump(0.5)
        crowd.clear(members)
    every.sort()
    result = {"members": len(members), "says": says, "per_say": per_say,
              "p50_ms": round(percentile(every, 50), 1), "p99_ms": round(percentile(every, 99), 1),
              "max_ms": round(every[-1], 1)}
    # this process reads every member's socket in Python: its CPU competes with the server's
    result["loadgen_cpu_ms_per_say"] = round(own * 1000 / says, 1)
    if server is not None:
        result["server_cpu_ms_per_say"] = round(cpu * 1000 / says, 1)
    return result


#: another ahtwist tree (``--before DIR``, e.g. ``git archive main | tar -x -C DIR``) put first on the
#: server's PYTHONPATH, to measure the code before a change on the same machine
BEFORE: dict[str, str] = {}


def start_server(workdir: Path, name: str) -> tuple[Server, int, int]:
    log = workdir / f"{name}.log"
    server = Server(
        [str(VENV_BIN / "twistd"), "-n", "--pidfile=", "ahtwist", "--web", LISTEN, "--socket", LISTEN],
        cpu=None, log=log, port_log=r"web server listening on 127\.0\.0\.1:(\d+)", env=BEFORE,
    )
    import re

    deadline = time.monotonic() + 30
    while True:
        match = re.search(r"socket server listening on 127\.0\.0\.1:(\d+)", server.log_text())
        if match:
            return server, server.port, int(match.group(1))
        if time.monotonic() > deadline:
            raise RuntimeError(server.log_text())
        time.sleep(0.05)


def mib(kib: int) -> float:
    return round(kib / 1024, 1)


@contextlib.contextmanager
def crowded_server(workdir: Path, name: str) -> "Iterator[tuple[Server, int, int, Crowd]]":
    """A started server (settled for a second) and a crowd for it; every
    member's socket closed and the server stopped afterwards."""
    server, web, sock = start_server(workdir, name)
    crowd = Crowd()
    try:
        time.sleep(1)
        yield server, web, sock, crowd
    finally:
        for member in crowd.members.values():
            member.sock.close()
        server.stop()


def scale_section(workdir: Path, count: int, says: int, tcp_count: int) -> dict:
    sources = Sources()
    with crowded_server(workdir, "scale") as (server, web, sock, crowd):
        result: dict = {"rss_mib_start": mib(server.rss_kib())}
        began = perf()
        websockets = crowd.open_many(web, count, True, sources)
        result["websocket_open_seconds"] = round(perf() - began, 1)
        crowd.pump(2)
        result["rss_mib_websockets_idle"] = mib(server.rss_kib())
        began = perf()
        tcps = crowd.open_many(sock, tcp_count, False, sources)
        result["tcp_open_seconds"] = round(perf() - began, 1)
        crowd.pump(2)
        result["rss_mib_all_idle"] = mib(server.rss_kib())
        result["kib_per_websocket_idle"] = round(
            (result["rss_mib_websockets_idle"] - result["rss_mib_start"]) * 1024 / count, 2)
        result["kib_per_tcp_idle"] = round(
            (result["rss_mib_all_idle"] - result["rss_mib_websockets_idle"]) * 1024 / tcp_count, 2)
        print(json.dumps(result), flush=True)
        crowd.request_all(websockets + tcps, b'{"event":"roomAdd","room":"defaultRoom"}',
                          b"roomAdd defaultRoom\n", b'"data":true')
        crowd.pump(2)
        result["rss_mib_all_in_one_room"] = mib(server.rss_kib())
        print(json.dumps(result), flush=True)
        crowd.request_all(websockets, b'{"event":"roomAdd","room":"otherRoom"}', b"", b'"data":true')
        result["say_websocket_room"] = say_delays(crowd, websockets, "otherRoom", says, server)
        print(json.dumps(result["say_websocket_room"]), flush=True)
        result["say_mixed_room_20k"] = say_delays(crowd, websockets + tcps, "defaultRoom", max(1, says // 2), server)
        print(json.dumps(result["say_mixed_room_20k"]), flush=True)
        result["rss_mib_after_says"] = mib(server.rss_kib())
        result["server_cpu_seconds"] = round(server.cpu_seconds(), 1)
        return result


def tcp_section(workdir: Path, count: int, says: int) -> dict:
    """``count`` socket clients alone in a fresh server (the mixed section
    cannot hold 10,000 of each at once under a 20,000 descriptor limit):
    RSS idle and all in one room, and says to all of them."""
    with crowded_server(workdir, "scale-tcp") as (server, _web, sock, crowd):
        result: dict = {"connections": count, "rss_mib_start": mib(server.rss_kib())}
        began = perf()
        tcps = crowd.open_many(sock, count, False, Sources())
        result["tcp_open_seconds"] = round(perf() - began, 1)
        crowd.pump(2)
        result["rss_mib_idle"] = mib(server.rss_kib())
        result["kib_per_tcp_idle"] = round((result["rss_mib_idle"] - result["rss_mib_start"]) * 1024 / count, 2)
        crowd.request_all(tcps, b"", b"roomAdd defaultRoom\n", b'"data":true')
        crowd.pump(2)
        result["rss_mib_in_one_room"] = mib(server.rss_kib())
        result["say_tcp_room"] = say_delays(crowd, tcps, "defaultRoom", says, server)
        result["server_cpu_seconds"] = round(server.cpu_seconds(), 1)
        return result


def churn(port: int, seconds: float, sources: Sources, in_flight: int = 64) -> dict:
    """Websocket connect + 101 + welcome + close handshake, ``in_flight`` at a time."""
    poller = select.epoll()
    states: dict[int, list] = {}  # fd -> [sock, stage, buffer]
    done_at: list[float] = []
    errors: list[str] = []
    request = handshake(port)

    def start() -> None:
        s = sources.socket()
        s.setblocking(False)
        code = s.connect_ex(("127.0.0.1", port))
        if code not in (0, errno.EINPROGRESS):
            errors.append(os.strerror(code))
            s.close()
            return
        states[s.fileno()] = [s, "connecting", b""]
        poller.register(s.fileno(), select.EPOLLOUT)

    def finish(fd: int, error: str | None) -> None:
        s = states.pop(fd)[0]
        poller.unregister(fd)
        s.close()
        if error:
            errors.append(error)
        else:
            done_at.append(perf())

    began = perf()
    end = began + seconds
    for _ in range(in_flight):
        start()
    while states:
        for fd, _ in poller.poll(1.0):
            state = states.get(fd)
            if state is None:
                continue
            s, stage, buffer = state
            if stage == "connecting":
                error = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    finish(fd, os.strerror(error))
                else:
                    s.send(request)
                    state[1] = "handshake"
                    poller.modify(fd, select.EPOLLIN)
                continue
            try:
                data = s.recv(65536)
            except OSError as e:
                finish(fd, str(e))
                continue
            if stage == "handshake":
                buffer += data
                head, sep, rest = buffer.partition(b"\r\n\r\n")
                if not sep:
                    state[2] = buffer
                    if not data:
                        finish(fd, "closed during the handshake")
                    continue
                if not head.startswith(b"HTTP/1.1 101"):
                    finish(fd, head.split(b"\r\n")[0].decode("latin-1"))
                    continue
                frames, _ = parse_frames(rest)
                if frames:
                    s.send(CLOSE_FRAME)
                    state[1], state[2] = "closing", b""
                else:
                    state[2] = buffer
                continue
            if stage == "closing" and not data:
                finish(fd, None)
        while perf() < end and len(states) < in_flight:
            start()
    elapsed = perf() - began
    per_second = [0] * int(seconds + 1)
    for t in done_at:
        second = int(t - began)
        if second < len(per_second):
            per_second[second] += 1
    full = per_second[: int(seconds)]
    return {
        "seconds": round(elapsed, 1),
        "completed": len(done_at),
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
        "per_second_mean": round(len(done_at) / elapsed),
        "per_second_min": min(full) if full else 0,
        "per_second_max": max(full) if full else 0,
        "in_flight": in_flight,
    }


def churn_section(workdir: Path, seconds: float) -> dict:
    server, web, _ = start_server(workdir, "churn")
    sources = Sources(per_address=25_000)
    try:
        time.sleep(1)
        warm = churn(web, 3, sources)
        time.sleep(1)
        before = server.rss_kib()
        cpu_before = server.cpu_seconds()
        result = churn(web, seconds, sources)
        result["server_cpu_share"] = round((server.cpu_seconds() - cpu_before) / result["seconds"], 2)
        time.sleep(1)
        result["rss_mib_before"] = mib(before)
        result["rss_mib_after"] = mib(server.rss_kib())
        time.sleep(5)
        result["rss_mib_after_5s"] = mib(server.rss_kib())
        result["warmup"] = {k: warm[k] for k in ("completed", "errors", "per_second_mean")}
        return result
    finally:
        server.stop()


def _load(values: list[float] | None) -> str:
    return ", ".join(f"{v:.1f}" for v in values) if values else "?"


def markdown(data: dict) -> str:
    s, c = data["scale"], data["churn"]
    ws, mixed = s["say_websocket_room"], s["say_mixed_room_20k"]
    rows = [
        ("server RSS at start", f"{s['rss_mib_start']} MiB", ""),
        (f"{data['connections']:,} websockets idle", f"{s['rss_mib_websockets_idle']} MiB "
         f"({s['kib_per_websocket_idle']} KiB each)", "≤ 100 MB"),
        (f"+ {data['tcp_connections']:,} TCP idle", f"{s['rss_mib_all_idle']} MiB ({s['kib_per_tcp_idle']} KiB each)", ""),
        ("all in one room", f"{s['rss_mib_all_in_one_room']} MiB", ""),
        (f"say to {ws['members']:,} websocket members", f"p50 {ws['p50_ms']} ms, p99 {ws['p99_ms']} ms, "
         f"max {ws['max_ms']} ms ({ws['says']} says; CPU a say: server {ws.get('server_cpu_ms_per_say', '?')} ms, "
         f"load generator {ws.get('loadgen_cpu_ms_per_say', '?')} ms)",
         "p99 ≤ 250 ms"),
        (f"say to {mixed['members']:,} members (ws + TCP)", f"p50 {mixed['p50_ms']} ms, p99 {mixed['p99_ms']} ms, "
         f"max {mixed['max_ms']} ms ({mixed['says']} says; CPU a say: server {mixed.get('server_cpu_ms_per_say', '?')} "
         f"ms, load generator {mixed.get('loadgen_cpu_ms_per_say', '?')} ms)", ""),
        (f"websocket churn, {c['seconds']} s", f"{c['per_second_mean']}/s mean, {c['per_second_min']}/s slowest "
         f"second, {c['errors']} errors", "≥ 2,000/s"),
        ("churn RSS", f"{c['rss_mib_before']} → {c['rss_mib_after']} MiB ({c['rss_mib_after_5s']} 5 s later)", "flat"),
    ]
    return _table(data, rows)


def _tcp_rows(t: dict) -> list[tuple[str, str, str]]:
    say = t["say_tcp_room"]
    return [
        ("fresh server: RSS at start", f"{t['rss_mib_start']} MiB", ""),
        (f"{t['connections']:,} TCP clients idle", f"{t['rss_mib_idle']} MiB ({t['kib_per_tcp_idle']} KiB each)", ""),
        ("all in one room", f"{t['rss_mib_in_one_room']} MiB", ""),
        (f"say to {say['members']:,} TCP members", f"p50 {say['p50_ms']} ms, p99 {say['p99_ms']} ms, "
         f"max {say['max_ms']} ms ({say['says']} says; CPU a say: server {say.get('server_cpu_ms_per_say', '?')} ms, "
         f"load generator {say.get('loadgen_cpu_ms_per_say', '?')} ms)", ""),
    ]


def _table(data: dict, rows: list[tuple[str, str, str]]) -> str:
    if "tcp_alone" in data:
        rows = rows + _tcp_rows(data["tcp_alone"])
    lines = [f"# Scale benchmark ({data['recorded_at']})", "",
             "One `twistd ahtwist` process with the default configuration; one load-generator process "
             "(bench/scale.py); shared 2-core machine, nothing pinned. Load average (1, 5, 15 min) at the start "
             f"{_load(data.get('loadavg_at_start'))}, at the end {_load(data.get('loadavg_at_end'))}; "
             f"code: {data.get('code', 'this checkout')}.", "",
             "| measure | result | goal |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {g} |" for a, b, g in rows]
    if "tcp_alone" in data:
        lines += ["", "The rows from \"fresh server\" on are a second server holding only socket clients (10,000 of "
                  "each transport at once would need more than this container's 20,000 descriptors per process)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--says", type=int, default=10)
    parser.add_argument("--churn-seconds", type=float, default=30)
    parser.add_argument("--name", default="scale")
    parser.add_argument("--churn-port", type=int, help="only run churn against this port; print JSON")
    parser.add_argument("--before", type=Path, help="run the servers from this ahtwist tree instead")
    parser.add_argument("--say-port", type=int, help="only open --connections websockets to this web port, "
                        "print 'joined', then time --says says to them; print JSON")
    parser.add_argument("--tcp-only", action="store_true",
                        help="only the TCP section: --connections socket clients alone in a fresh server")
    args = parser.parse_args()
    limit = raise_fd_limit()
    if args.before:
        BEFORE["PYTHONPATH"] = str(args.before.resolve())
    if args.churn_port:
        print(json.dumps(churn(args.churn_port, args.churn_seconds, Sources(per_address=25_000))), flush=True)
        return
    if args.say_port:
        crowd = Crowd()
        websockets = crowd.open_many(args.say_port, args.connections, True, Sources())
        crowd.request_all(websockets, b'{"event":"roomAdd","room":"defaultRoom"}', b"", b'"data":true')
        print("joined", flush=True)
        print(json.dumps(say_delays(crowd, websockets, "defaultRoom", args.says)), flush=True)
        return
    workdir = Path(tempfile.mkdtemp(prefix="ahtwist-scale-"))
    if args.tcp_only:
        data = {"connections": args.connections, "loadavg_at_start": os.getloadavg(),
                "code": str(args.before) if args.before else "this checkout",
                "tcp_alone": tcp_section(workdir, args.connections, args.says)}
        data["loadavg_at_end"] = os.getloadavg()
        path = write_result(args.name, data)
        (RESULTS / f"{args.name}.md").write_text(_table(json.loads(path.read_text()), []))
        print("->", path)
        return
    # each process may hold ``limit`` descriptors (a hard limit this script
    # cannot raise without CAP_SYS_RESOURCE): the server needs a few of its own
    tcp_count = min(args.connections, limit - args.connections - 100)
    data = {"connections": args.connections, "tcp_connections": tcp_count, "fd_limit": limit,
            "loadavg_at_start": os.getloadavg(), "code": str(args.before) if args.before else "this checkout",
            "scale": scale_section(workdir, args.connections, args.says, tcp_count)}
    print(json.dumps(data["scale"]), flush=True)
    data["churn"] = churn_section(workdir, args.churn_seconds)
    data["loadavg_at_end"] = os.getloadavg()
    print(json.dumps(data["churn"]), flush=True)
    data["tcp_alone"] = tcp_section(workdir, args.connections, args.says)
    print(json.dumps(data["tcp_alone"]), flush=True)
    path = write_result(args.name, data)
    data = json.loads(path.read_text())
    (RESULTS / f"{args.name}.md").write_text(markdown(data))
    print("->", path)


if __name__ == "__main__":
    main()
