"""HTTP action throughput: ahtwist GET /api/randomNumber vs twisted.web baselines.

Each server runs pinned to CPU 0 and wrk (50 connections) to CPU 1, one after
the other in the same run, so the ratio is meaningful on a noisy machine.
Writes bench/results/http_api.json.

    .venv/bin/python bench/http_api.py [--seconds 10] [--rounds 2]
"""

import argparse
import json

from common import PYTHON, Server, free_port, twistd, write_result, wrk


def measure(name: str, cmd_for_port, path: str, seconds: int) -> dict:
    port = free_port()
    with Server(cmd_for_port(port), port) as server:
        wrk(f"http://127.0.0.1:{port}{path}", seconds=2)  # warm-up
        before = server.rss_kib()
        result = wrk(f"http://127.0.0.1:{port}{path}", seconds=seconds)
        result["rss_kib_after_warmup"] = before
        result["rss_kib_after_run"] = server.rss_kib()
    print(f"{name:28s} {result['requests_per_sec']:9.0f} req/s  p50 {result['p50_ms']} ms  "
          f"p99 {result['p99_ms']} ms  non-2xx {result['non_2xx']}  requests {result['requests']}  "
          f"RSS {result['rss_kib_after_warmup']} -> {result['rss_kib_after_run']} KiB")
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    servers = {
        "raw_twisted_web": (lambda p: [PYTHON, "bench/servers/raw_twisted_web.py", str(p)], "/"),
        "klein_json": (lambda p: [PYTHON, "bench/servers/klein_json.py", str(p)], "/api/randomNumber"),
        "ahtwist": (lambda p: twistd(p, "--socket", "none"), "/api/randomNumber"),
    }
    rounds = []
    for _ in range(args.rounds):
        rounds.append({name: measure(name, cmd, path, args.seconds) for name, (cmd, path) in servers.items()})
    best = {name: max((r[name] for r in rounds), key=lambda x: x["requests_per_sec"]) for name in servers}
    ratio = best["ahtwist"]["requests_per_sec"] / best["raw_twisted_web"]["requests_per_sec"]
    summary = {
        "benchmark": "GET /api/randomNumber, 50 connections, wrk",
        "best": best,
        "rounds": rounds,
        "ahtwist_vs_raw_twisted_web": round(ratio, 3),
        "targets": {"ratio_vs_raw": 0.5, "p99_ms": 30},
    }
    path = write_result("http_api", summary)
    print(json.dumps({"ratio": summary["ahtwist_vs_raw_twisted_web"]}), "->", path)


if __name__ == "__main__":
    main()
