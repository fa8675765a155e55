"""Websocket load generator for bench/websocket_bench.py (a script, not a test).

Plain asyncio with hand-made RFC 6455 framing (zero mask keys, which RFC 6455
allows) so the client spends as little CPU per frame as possible; it runs
pinned to the other core than the server.  Prints one JSON object.

  python bench/websocket_load.py rtt    PORT --clients 50 --seconds 10 [--echo]
  python bench/websocket_load.py fanout PORT --members 500 --seconds 10 --window 2
  python bench/websocket_load.py idle   PORT --clients 2000   (prints "ready", waits for stdin EOF)
"""

import argparse
import asyncio
import base64
import json
import os
import re
import socket
import struct
import sys
import time

perf = time.perf_counter


def text_frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x81, 0x80 | n)) + b"\0\0\0\0" + payload
    if n < 65536:
        return bytes((0x81, 0xFE)) + struct.pack("!H", n) + b"\0\0\0\0" + payload
    return bytes((0x81, 0xFF)) + struct.pack("!Q", n) + b"\0\0\0\0" + payload


class Client(asyncio.Protocol):
    """One websocket connection; ``on_frame(client, payload)`` per text frame."""

    def __init__(self, port: int, on_frame) -> None:
        self.port = port
        self.on_frame = on_frame
        self.buffer = b""
        self.open = False
        self.opened = asyncio.get_running_loop().create_future()
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16))
        transport.write(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (self.port, key)
        )

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        if not self.open:
            head, sep, rest = buffer.partition(b"\r\n\r\n")
            if not sep:
                self.buffer = buffer
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(RuntimeError(head.decode("latin-1")))
                return
            self.open = True
            self.opened.set_result(self)
            buffer = rest
        frames, self.buffer = parse_frames(buffer)
        for opcode, payload in frames:
            if opcode == 1:
                self.on_frame(self, payload)
            elif opcode == 9:  # ping -> pong
                self.transport.write(bytes((0x8A, 0x80 | len(payload))) + b"\0\0\0\0" + payload)

    def send(self, payload: bytes) -> None:
        self.transport.write(text_frame(payload))


async def connect(port: int, on_frame) -> Client:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: Client(port, on_frame), "127.0.0.1", port)
    return await client.opened


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def connect_many(port: int, count: int, on_frame, batch: int = 100) -> list[Client]:
    clients: list[Client] = []
    for i in range(0, count, batch):
        clients += await asyncio.gather(*(connect(port, on_frame) for _ in range(min(batch, count - i))))
    return clients


# --- one request in flight per client ------------------------------------------


RANDOM_NUMBER = b'{"event":"action","params":{"action":"randomNumber"},"messageId":%d}'


async def rtt(port: int, clients: int, seconds: float, warmup: float, echo: bool,
              template: bytes = RANDOM_NUMBER) -> dict:
    state: dict = {}
    latencies: list[float] = []
    counter = [0]
    sent_at: dict[Client, float] = {}

    def send(client: Client) -> None:
        counter[0] += 1
        sent_at[client] = perf()
        client.send(template % counter[0])

    def on_frame(client: Client, payload: bytes) -> None:
        if client not in sent_at:
            return  # the welcome
        now = perf()
        if now >= state["start"]:
            latencies.append(now - sent_at[client])
        if now < state["end"]:
            send(client)
        else:
            del sent_at[client]

    state["start"] = state["end"] = float("inf")
    group = await connect_many(port, clients, on_frame)
    await asyncio.sleep(0.2)  # let the welcomes arrive
    cpu0 = time.process_time()
    begin = perf()
    state["start"] = begin + warmup
    state["end"] = state["start"] + seconds
    for client in group:
        send(client)
    await asyncio.sleep(warmup + seconds + 0.5)
    cpu = time.process_time() - cpu0
    for client in group:
        client.transport.close()
    return {
        "clients": clients,
        "seconds": seconds,
        "replies": len(latencies),
        "replies_per_sec": round(len(latencies) / seconds, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 99) * 1000, 3),
        "client_cpu_share": round(cpu / (warmup + seconds + 0.5), 3),
        "server": "echo" if echo else "ahtwist",
        "frame": template.decode(),
    }


# --- a room fan-out -----------------------------------------------------------------
#
# Receiving 50,000+ frames a second on 500 sockets is more than asyncio can do
# on one core in Python, so this mode uses blocking handshakes and then one
# plain epoll loop: a read costs a few microseconds instead of ~10.


def open_blocking(port: int) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16))
    sock.sendall(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
        % (port, key)
    )
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, rest = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(head.decode("latin-1"))
    sock.setblocking(False)
    return sock, rest


def parse_frames(buffer: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Complete (opcode, payload) frames at the front of ``buffer`` (unmasked
    server frames) and the incomplete rest."""
    frames, at, size = [], 0, len(buffer)
    while size - at >= 2:
        n = buffer[at + 1] & 0x7F
        start = at + 2
        if n == 126:
            if size - at < 4:
                break
            n = (buffer[at + 2] << 8) | buffer[at + 3]
            start = at + 4
        elif n == 127:
            if size - at < 10:
                break
            n = struct.unpack_from("!Q", buffer, at + 2)[0]
            start = at + 10
        if start + n > size:
            break
        frames.append((buffer[at] & 0x0F, buffer[start : start + n]))
        at = start + n
    return frames, buffer[at:]


def split_frames(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Text payloads at the front of ``buffer`` and the incomplete rest."""
    frames, rest = parse_frames(buffer)
    return [payload for opcode, payload in frames if opcode == 1], rest


def fanout(
    port: int, members: int, seconds: float, warmup: float, window: int,
    join: bytes = b'{"event":"roomAdd","room":"defaultRoom"}',
) -> dict:
    import select

    opened = [open_blocking(port) for _ in range(members)]
    socks = [s for s, _ in opened]
    by_fd = {s.fileno(): s for s in socks}
    buffers = {s.fileno(): rest for s, rest in opened}
    poller = select.epoll()
    for s in socks:
        poller.register(s.fileno(), select.EPOLLIN)
    joined = 0
    for s in socks:  # join in order: the sender joins last, so it hears each say last
        s.send(text_frame(join))
    sender = socks[-1]
    sender_fd = sender.fileno()
    received: list[tuple[float, int, bytes]] = []
    record = received.append
    sent: dict[int, float] = {}
    seq = 0
    deadline = perf() + 30
    while joined < members and perf() < deadline:
        for fd, _ in poller.poll(0.5):
            frames, buffers[fd] = split_frames(buffers[fd] + by_fd[fd].recv(65536))
            joined += sum(1 for f in frames if f.startswith(b'{"status"'))

    def say() -> None:
        nonlocal seq
        seq += 1
        sent[seq] = perf()
        sender.send(text_frame(b'{"event":"say","room":"defaultRoom","message":"m%d"}' % seq))

    cpu0 = time.process_time()
    begin = perf()
    start_at, end_at = begin + warmup, begin + warmup + seconds
    stop_at = end_at + 1.0
    for _ in range(window):
        say()
    poll = poller.poll
    while True:
        now = perf()
        if now >= stop_at:
            break
        for fd, _ in poll(0.05):
            data = by_fd[fd].recv(262144)
            now = perf()
            buffer = buffers[fd] + data if buffers[fd] else data
            frames, buffers[fd] = split_frames(buffer)
            for frame in frames:
                if frame.startswith(b'{"message"'):
                    record((now, fd, frame))
                    if fd == sender_fd and now < end_at:
                        say()
    cpu = time.process_time() - cpu0
    pattern = re.compile(rb'"message":"m(\d+)"')
    delays = []
    for at, _, payload in received:
        if start_at <= at <= end_at:
            delays.append(at - sent[int(pattern.search(payload).group(1))])
    for s in socks:
        s.close()
    return {
        "members": members,
        "window": window,
        "seconds": seconds,
        "says": sum(1 for t in sent.values() if start_at <= t <= end_at),
        "deliveries": len(delays),
        "deliveries_per_sec": round(len(delays) / seconds, 1),
        "p50_delay_ms": round(percentile(delays, 50) * 1000, 3),
        "p99_delay_ms": round(percentile(delays, 99) * 1000, 3),
        "max_delay_ms": round(max(delays) * 1000, 3) if delays else None,
        "client_cpu_share": round(cpu / (stop_at - begin), 3),
    }


# --- idle connections ---------------------------------------------------------------


async def idle(port: int, clients: int, echo: bool) -> dict:
    welcomes = [0]

    def on_frame(client: Client, payload: bytes) -> None:
        welcomes[0] += 1

    group = await connect_many(port, clients, on_frame)
    deadline = perf() + 30
    while not echo and welcomes[0] < clients and perf() < deadline:
        await asyncio.sleep(0.05)  # the echo server sends no welcome
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    for client in group:
        client.transport.close()
    return {"clients": clients, "welcomed": welcomes[0]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["rtt", "fanout", "idle"])
    parser.add_argument("port", type=int)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--window", type=int, default=1)
    parser.add_argument("--echo", action="store_true")
    parser.add_argument("--frame", default=RANDOM_NUMBER.decode(), help="request frame; %%d = messageId")
    parser.add_argument("--join", default='{"event":"roomAdd","room":"defaultRoom"}', help="fanout: the join frame")
    args = parser.parse_args()
    if args.mode == "rtt":
        result = asyncio.run(
            rtt(args.port, args.clients, args.seconds, args.warmup, args.echo, args.frame.encode())
        )
    elif args.mode == "fanout":
        result = fanout(args.port, args.members, args.seconds, args.warmup, args.window, args.join.encode())
    else:
        result = asyncio.run(idle(args.port, args.clients, args.echo))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
