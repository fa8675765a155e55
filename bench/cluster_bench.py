"""Cluster-mode benchmarks (part of ``make bench``): a script, not a test.

In one run, on this machine, with a ``redis-server`` started here (free port,
no persistence) and stopped by PID:

1. HTTP ``GET /api/randomNumber`` (wrk, 50 connections) against one node
   without ``--redis`` and one node with ``--redis``, alternating for
   ``--rounds`` rounds; the ratio is the cost of cluster mode on the action
   path (stats are counted locally and flushed once a second, so no request
   waits for Redis).  Server pinned to CPU 0, wrk and Redis to CPU 1.
2. Chat fan-out: a room of 500 socket members, one sender keeping a few says
   in flight (``--windows``; ``bench/loadgen.py``'s method): 500 members on
   one standalone node, then 250 + 250 members on two nodes of a cluster (the
   sender on node A).  Deliveries/s and delivery delay percentiles.  Nothing
   is pinned here: two nodes, Redis and the load generator share 2 cores.
3. A Redis restart in the middle of a chat: a socket user on node A says a
   numbered message every 10 ms; a socket user on node B records what
   arrives.  Redis is killed (SIGKILL) and restarted on the same port 2 s
   later.  Reported: messages lost for B, how long B received nothing, when
   the nodes were back.

The machine is shared and has 2 cores for two nodes, Redis and the load
generator: compare numbers within one run, not across runs.
Results: ``bench/results/cluster.json``.
"""

import argparse
import json
import re
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from common import VENV_BIN, Server, free_port, machine, write_result, wrk  # noqa: E402

from bench import loadgen  # noqa: E402

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def redis_server(port: int, workdir: Path, cpu: int | None = 1) -> Server:
    cmd = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
           "--dir", str(workdir), "--loglevel", "warning"]
    return Server(cmd, port, cpu, log=workdir / f"redis-{port}.log", timeout=30)


def node(workdir: Path, name: str, web: int, sock: int | None, redis_url: str | None,
         cpu: int | None = 0) -> Server:
    config = workdir / f"{name}.toml"
    config.write_text('[general]\nid = "%s"\nserverToken = "bench"\n' % name)
    cmd = [str(VENV_BIN / "twistd"), "-n", "--pidfile=", "ahtwist", "--config", str(config),
           "--web", f"tcp:{web}:interface=127.0.0.1",
           "--socket", f"tcp:{sock}:interface=127.0.0.1:backlog=1024" if sock else "none"]
    if redis_url:
        cmd += ["--redis", redis_url]
    return Server(cmd, web, cpu, ports=[sock] if sock else [], log=workdir / f"{name}.log", timeout=30)


def wait_peers(web_ports: list[int], count: int, timeout: float = 20) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ok = True
            for port in web_ports:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=5) as r:
                    status = json.loads(r.read())
                ok = ok and len(status["stats"]["peers"]) >= count
                ok = ok and "Redis unavailable" not in status["problems"]
            if ok:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the cluster did not form")


# --- 1. HTTP -------------------------------------------------------------------------


def http_rounds(workdir: Path, rounds: int, seconds: int) -> dict[str, Any]:
    redis_port = free_port()
    redis = redis_server(redis_port, workdir)
    url = f"redis://127.0.0.1:{redis_port}/0"
    results: dict[str, list[dict]] = {"standalone": [], "redis": []}
    try:
        for n in range(rounds):
            for label, redis_url in (("standalone", None), ("redis", url)):
                port = free_port()
                server = node(workdir, f"http-{label}-{n}", port, None, redis_url)
                try:
                    if redis_url:
                        wait_peers([port], 1)
                    target = f"http://127.0.0.1:{port}/api/randomNumber"
                    wrk(target, seconds=2)  # warm-up
                    result = wrk(target, seconds=seconds)
                    print(f"http {label} round {n + 1}: {result['requests_per_sec']:.0f} req/s "
                          f"p99 {result['p99_ms']} ms", flush=True)
                    results[label].append(result)
                finally:
                    server.stop()
    finally:
        redis.stop()
    standalone = statistics.median(r["requests_per_sec"] for r in results["standalone"])
    with_redis = statistics.median(r["requests_per_sec"] for r in results["redis"])
    ratios = [r["requests_per_sec"] / s["requests_per_sec"]
              for s, r in zip(results["standalone"], results["redis"], strict=True)]
    return {
        "benchmark": "GET /api/randomNumber, wrk 50 connections, one node, alternating rounds",
        "rounds": results,
        "median_req_per_s_standalone": round(standalone),
        "median_req_per_s_redis": round(with_redis),
        "ratio_of_medians": round(with_redis / standalone, 3),
        "per_round_ratios": [round(x, 3) for x in ratios],
        "loss_percent": round((1 - with_redis / standalone) * 100, 1),
    }


# --- 2. fan-out -------------------------------------------------------------------------


def fan_out_runs(workdir: Path, seconds: float, windows: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {"standalone_500_on_1_node": [], "cluster_250_plus_250_on_2_nodes": []}
    web, sock = free_port(), free_port()
    single = node(workdir, "fan-standalone", web, sock, None, cpu=None)
    try:
        for window in windows:
            result = loadgen.fan_out([sock], 500, window, seconds, 2)
            print("fan-out standalone:", json.dumps(result), flush=True)
            out["standalone_500_on_1_node"].append(result)
    finally:
        single.stop()
    redis_port = free_port()
    redis = redis_server(redis_port, workdir, cpu=None)
    url = f"redis://127.0.0.1:{redis_port}/0"
    ports = [(free_port(), free_port()) for _ in range(2)]
    nodes = [node(workdir, f"fan-{i}", w, s, url, cpu=None) for i, (w, s) in enumerate(ports)]
    try:
        wait_peers([w for w, _ in ports], 2)
        for window in windows:
            result = loadgen.fan_out([s for _, s in ports], 500, window, seconds, 2)
            print("fan-out cluster:", json.dumps(result), flush=True)
            out["cluster_250_plus_250_on_2_nodes"].append(result)
    finally:
        for n in nodes:
            n.stop()
        redis.stop()
    return out


# --- 3. Redis restart -------------------------------------------------------------------


def restart_run(workdir: Path, outage: float = 2.0, interval: float = 0.01) -> dict[str, Any]:
    redis_port = free_port()
    redis = redis_server(redis_port, workdir, cpu=None)
    url = f"redis://127.0.0.1:{redis_port}/0"
    ports = [(free_port(), free_port()) for _ in range(2)]
    nodes = [node(workdir, f"restart-{i}", w, s, url, cpu=None) for i, (w, s) in enumerate(ports)]
    try:
        wait_peers([w for w, _ in ports], 2)
        sender = socket.create_connection(("127.0.0.1", ports[0][1]), timeout=10)
        receiver = socket.create_connection(("127.0.0.1", ports[1][1]), timeout=10)
        for s in (sender, receiver):
            s.recv(4096)
            s.sendall(b"roomAdd defaultRoom\n")
            s.recv(4096)
        receiver.setblocking(False)
        sender.setblocking(False)
        received: list[tuple[int, float]] = []
        sent: dict[int, float] = {}
        buffer = b""
        number = 0
        t0 = time.monotonic()
        killed_at = restarted_at = None
        while True:
            now = time.monotonic() - t0
            if killed_at is None and now >= 2.0:
                redis.stop(signal.SIGKILL)
                killed_at = now
            if killed_at is not None and restarted_at is None and now >= killed_at + outage:
                redis = redis_server(redis_port, workdir, cpu=None)
                restarted_at = time.monotonic() - t0
            if now >= 2.0 + outage + 6.0:
                break
            sender.sendall(b"say defaultRoom m%d\n" % number)
            sent[number] = now
            number += 1
            try:
                sender.recv(1 << 20)  # replies and echoes: drained, not needed
            except BlockingIOError:
                pass
            try:
                buffer += receiver.recv(1 << 20)
            except BlockingIOError:
                pass
            *lines, buffer = buffer.split(b"\r\n")
            for line in lines:
                match = re.match(rb'\{"message":"m(\d+)"', line)
                if match:
                    received.append((int(match.group(1)), time.monotonic() - t0))
            time.sleep(interval)
        time.sleep(0.5)
        try:
            buffer += receiver.recv(1 << 20)
        except BlockingIOError:
            pass
        for line in buffer.split(b"\r\n"):
            match = re.match(rb'\{"message":"m(\d+)"', line)
            if match:
                received.append((int(match.group(1)), time.monotonic() - t0))
        got = [n for n, _ in received]
        lost = sorted(set(sent) - set(got))
        gaps = [(b[1] - a[1], a[0], b[0]) for a, b in zip(received, received[1:], strict=False)]
        longest = max(gaps) if gaps else (0, 0, 0)
        reconnected = [
            float(m.group(1))
            for n in nodes
            for m in re.finditer(r"reconnected after ([\d.]+) s", n.log_path.read_text())
        ]
        return {
            "scenario": f"say every {interval * 1000:.0f} ms on A, received on B; Redis SIGKILLed, "
                        f"restarted {outage} s later on the same port (empty)",
            "messages_sent": len(sent),
            "messages_received_on_b": len(got),
            "duplicates_on_b": len(got) - len(set(got)),
            "lost_on_b": len(lost),
            "lost_range": [lost[0], lost[-1]] if lost else None,
            "lost_sent_between_s": [round(sent[lost[0]] - killed_at, 3), round(sent[lost[-1]] - killed_at, 3)]
            if lost else None,
            "longest_silence_on_b_s": round(longest[0], 3),
            "redis_down_s": round(restarted_at - killed_at, 3),
            "nodes_reconnected_after_s": reconnected,
            "b_received_again_after_restart_s": round(
                min((t for n, t in received if t > restarted_at), default=float("nan")) - restarted_at, 3
            ),
            "order_kept": got == sorted(got),
        }
    finally:
        for n in nodes:
            n.stop()
        redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--windows", default="8,32", help="says in flight, comma-separated")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="ahtwist-cluster-bench-"))
    results: dict[str, Any] = {"machine": machine()}
    results["http_randomNumber"] = http_rounds(workdir, args.rounds, args.seconds)
    windows = [int(w) for w in args.windows.split(",")]
    results["chat_fan_out"] = fan_out_runs(workdir, args.seconds, windows)
    results["redis_restart"] = restart_run(workdir)
    print(json.dumps(results["redis_restart"], indent=2), flush=True)
    results.pop("machine")
    path = write_result("cluster", results)
    print(f"written: {path}")


if __name__ == "__main__":
    main()
