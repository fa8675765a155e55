"""Worker scaling (issue 14, item 3): a script, not a test.

``twistd ahtwist --workers N --redis URL`` with N = 1 and N = 2 on this
2-core machine, nothing pinned (the workers, the parent, Redis and the load
generator share both cores, as in production):

* HTTP: wrk, 50 connections, ``GET /api/randomNumber``;
* socket fan-out: 500 TCP members of one room on the shared port (the kernel
  spreads them over the workers), one sender with a few says in flight
  (``bench/loadgen.py``): deliveries/s and delay.

N = 1 runs with Redis too, so the only difference is the number of workers.
Results: ``bench/results/workers.json``.

    .venv/bin/python bench/workers_bench.py [--seconds 10] [--rounds 2]
"""

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench import loadgen  # noqa: E402
from bench.common import VENV_BIN, Server, write_result, wrk  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

LISTEN = "tcp:0:interface=127.0.0.1:backlog=1024"


def start(workers: int, redis_url: str, workdir: Path) -> tuple[Server, int, int]:
    log = workdir / f"workers-{workers}.log"
    server = Server(
        [str(VENV_BIN / "twistd"), "-n", "--pidfile=", "ahtwist", "--workers", str(workers),
         "--redis", redis_url, "--web", LISTEN, "--socket", LISTEN],
        cpu=None, log=log, port_log=r"web (?:server|listener) (?:listening on )?127\.0\.0\.1:(\d+)",
    )
    ready = r"worker \d ready" if workers > 1 else r"socket server listening"
    import time

    deadline = time.monotonic() + 60
    while len(re.findall(ready, server.log_text())) < (workers if workers > 1 else 1):
        if time.monotonic() > deadline:
            raise RuntimeError(server.log_text())
        time.sleep(0.1)
    socket_port = int(re.search(r"socket (?:server|listener) (?:listening on )?127\.0\.0\.1:(\d+)",
                                server.log_text()).group(1))
    time.sleep(1)
    return server, server.port, socket_port


def measure(workers: int, redis: RedisServer, workdir: Path, seconds: int) -> dict:
    redis.flush()
    server, web, sock = start(workers, redis.url, workdir)
    try:
        url = f"http://127.0.0.1:{web}/api/randomNumber"
        wrk(url, seconds=2, cpu=None)  # warm-up
        http = wrk(url, seconds=seconds, cpu=None)
        fan = loadgen.fan_out(sock, members=500, window=4, seconds=seconds, warmup=2)
    finally:
        server.stop()
    result = {"workers": workers, "http_randomNumber_50_conns": http, "socket_fan_out_500": fan}
    print(f"workers={workers}: HTTP {http['requests_per_sec']:.0f} req/s p99 {http['p99_ms']} ms; "
          f"fan-out {fan['deliveries_per_s']} deliveries/s p99 {fan['delay_ms_p99']} ms", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="ahtwist-workers-bench-"))
    loadavg = os.getloadavg()
    rounds = []
    with RedisServer() as redis:
        for _ in range(args.rounds):
            rounds.append({str(n): measure(n, redis, workdir, args.seconds) for n in (1, 2)})

    def best(n: str, key: str, field: str) -> float:
        return max(r[n][key][field] for r in rounds)

    http = {n: best(n, "http_randomNumber_50_conns", "requests_per_sec") for n in ("1", "2")}
    fan = {n: best(n, "socket_fan_out_500", "deliveries_per_s") for n in ("1", "2")}
    summary = {
        "benchmark": "--workers 1 vs 2 (both with Redis), unpinned, 2 cores shared with wrk/loadgen and Redis",
        "http_req_per_s_best": http,
        "http_scaling_2_vs_1": round(http["2"] / http["1"], 3),
        "fan_out_deliveries_per_s_best": fan,
        "fan_out_scaling_2_vs_1": round(fan["2"] / fan["1"], 3),
        "loadavg_at_start": loadavg,
        "rounds": rounds,
    }
    path = write_result("workers", summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "rounds"}), "->", path)


if __name__ == "__main__":
    main()
