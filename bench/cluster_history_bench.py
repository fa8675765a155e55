"""Room history in Redis (cluster mode): a script, not a test.

In one run, on this machine, with a ``redis-server`` started here (free port,
no persistence) and stopped by PID, two ``twistd ahtwist --redis`` nodes:

1. Chat fan-out, 250 + 250 socket members on two nodes, the sender on node A
   keeping ``--windows`` says in flight (``bench/loadgen.py``), with
   ``[history] maxMessages = 0`` (offsets assigned and published by the Lua
   script, nothing stored) and ``= 100`` (each say also XADDed to the room's
   stream), alternating for ``--rounds`` rounds; plus the same with members
   joined ``since`` (offsets on every message).  Deliveries/s.
2. Resume of 10,000 missed messages: a websocket member of node B joins with
   offsets, leaves; 10,000 messages are said on node A; it comes back on node
   A with its last offset.  Time from the roomAdd to the last missed message,
   and Redis ``used_memory`` for the 10,000 stored messages.
3. A Redis restart in the middle of a chat (``bench/cluster_bench.py``'s
   scenario, no persistence): messages lost / duplicated for node B.

Results: ``bench/results/cluster_history.json``.  The machine is shared and
has 2 cores for two nodes, Redis and the load generator: compare numbers
within one run.
"""

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from cluster_bench import REDIS_SERVER, restart_run, wait_peers  # noqa: E402
from common import VENV_BIN, Server, free_port, machine, write_result  # noqa: E402

from bench import loadgen  # noqa: E402
from tests.e2e.ws_blocking import BlockingWebSocket  # noqa: E402


def redis_server(port: int, workdir: Path) -> Server:
    cmd = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
           "--dir", str(workdir), "--loglevel", "warning"]
    return Server(cmd, port, None, log=workdir / f"redis-{port}.log", timeout=30)


def node(workdir: Path, name: str, web: int, sock: int, redis_url: str, max_messages: int) -> Server:
    config = workdir / f"{name}.toml"
    config.write_text(
        f'[general]\nid = "{name}"\nserverToken = "bench"\n[history]\nmaxMessages = {max_messages}\nmaxAge = 0\n'
    )
    cmd = [str(VENV_BIN / "twistd"), "-n", "--pidfile=", "ahtwist", "--config", str(config),
           "--web", f"tcp:{web}:interface=127.0.0.1",
           "--socket", f"tcp:{sock}:interface=127.0.0.1:backlog=1024", "--redis", redis_url]
    return Server(cmd, web, None, ports=[sock], log=workdir / f"{name}.log", timeout=30)


class Cluster:
    def __init__(self, workdir: Path, max_messages: int, tag: str) -> None:
        self.redis_port = free_port()
        self.redis = redis_server(self.redis_port, workdir)
        url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.ports = [(free_port(), free_port()) for _ in range(2)]
        self.nodes = [node(workdir, f"{tag}-{i}", w, s, url, max_messages) for i, (w, s) in enumerate(self.ports)]
        wait_peers([w for w, _ in self.ports], 2)

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()
        self.redis.stop()

    def redis_memory(self) -> int:
        import socket

        with socket.create_connection(("127.0.0.1", self.redis_port), timeout=5) as s:
            s.sendall(b"INFO memory\r\n")
            time.sleep(0.1)
            data = s.recv(1 << 16).decode()
        return int(re.search(r"used_memory:(\d+)", data).group(1))


def fan_out(workdir: Path, rounds: int, seconds: float, windows: list[int]) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {}
    for round_ in range(rounds):
        for max_messages in (0, 100):
            cluster = Cluster(workdir, max_messages, f"fan{round_}-{max_messages}")
            try:
                for window in windows:
                    for join, label in ((b"roomAdd defaultRoom\n", "plain"),
                                        (b"roomAdd defaultRoom since\n", "since")):
                        result = loadgen.fan_out([s for _, s in cluster.ports], 500, window, seconds, 2, join=join)
                        key = f"maxMessages={max_messages} window={window} {label}"
                        print(key, json.dumps(result), flush=True)
                        runs.setdefault(key, []).append(result)
            finally:
                cluster.stop()
    summary = {}
    for window in windows:
        for label in ("plain", "since"):
            off = statistics.median(r["deliveries_per_s"] for r in runs[f"maxMessages=0 window={window} {label}"])
            on = statistics.median(r["deliveries_per_s"] for r in runs[f"maxMessages=100 window={window} {label}"])
            summary[f"window={window} {label}"] = {
                "median_deliveries_per_s_history_off": off,
                "median_deliveries_per_s_history_on": on,
                "on_vs_off": round(on / off, 3),
            }
    return {"benchmark": "500 socket members on 2 nodes (250 + 250), sender on node A", "runs": runs,
            "summary": summary}


def resume(workdir: Path, missed: int = 10000) -> dict[str, Any]:
    cluster = Cluster(workdir, missed, "resume")
    try:
        (web_a, sock_a), (web_b, _) = cluster.ports
        ws = BlockingWebSocket(f"ws://127.0.0.1:{web_b}/ws")
        ws.recv()
        epoch = ws.request({"event": "roomAdd", "room": "defaultRoom", "since": {}})["data"]["epoch"]
        ws.close()
        before = cluster.redis_memory()
        import socket

        sender = socket.create_connection(("127.0.0.1", sock_a), timeout=30)
        sender.recv(4096)
        sender.sendall(b"roomAdd defaultRoom\n")
        while b"\n" not in sender.recv(4096):
            pass
        sender.sendall(b"".join(b"say defaultRoom missed message number %06d\n" % n for n in range(missed)))
        replies = 0
        data = b""
        while replies < missed:
            data += sender.recv(1 << 20)
            replies = data.count(b'"status":"OK"')
        sender.close()
        ws = BlockingWebSocket(f"ws://127.0.0.1:{web_a}/ws")
        ws.recv()
        position_b = None
        for _ in range(100):  # until every say is stored
            position_b = ws.request({"event": "roomAdd", "room": "defaultRoom", "since": {}})["data"]
            if position_b["offset"] >= missed:
                break
            ws.request({"event": "roomLeave", "room": "defaultRoom"})
            time.sleep(0.1)
        ws.request({"event": "roomLeave", "room": "defaultRoom"})
        stored = cluster.redis_memory() - before
        started = time.monotonic()
        answer = ws.request({"event": "roomAdd", "room": "defaultRoom", "since": {"offset": 0, "epoch": epoch}},
                            timeout=60)
        reply_s = time.monotonic() - started
        got = 0
        last = 0
        while got < missed:
            message = ws.recv(timeout=60)
            if message.get("context") == "user":
                got += 1
                last = message["offset"]
        elapsed = time.monotonic() - started
        ws.close()
        return {
            "scenario": f"{missed} messages said on node A while a websocket member of node B was away; it "
                        "resumes on node A (roomAdd since offset 0)",
            "answer": {k: answer["data"][k] for k in ("recovered", "offset")},
            "messages_received": got,
            "last_offset": last,
            "reply_after_s": round(reply_s, 3),
            "all_missed_received_after_s": round(elapsed, 3),
            "messages_per_s": round(got / elapsed),
            "redis_used_memory_for_stored_messages_bytes": stored,
            "bytes_per_stored_message_in_redis": round(stored / missed),
        }
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--windows", default="8,32", help="says in flight, comma-separated")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="ahtwist-cluster-history-bench-"))
    results: dict[str, Any] = {"machine": machine()}
    results["resume_10000"] = resume(workdir)
    print(json.dumps(results["resume_10000"], indent=2), flush=True)
    results["redis_restart"] = restart_run(workdir)
    print(json.dumps(results["redis_restart"], indent=2), flush=True)
    windows = [int(w) for w in args.windows.split(",")]
    results["chat_fan_out"] = fan_out(workdir, args.rounds, args.seconds, windows)
    print(json.dumps(results["chat_fan_out"]["summary"], indent=2), flush=True)
    results.pop("machine")
    path = write_result("cluster_history", results)
    print(f"written: {path}")


if __name__ == "__main__":
    main()
