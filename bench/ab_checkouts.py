"""Before/after: two checkouts of ahtwist measured in one run, alternating.

For a change that touches a hot path: ``--base`` is a worktree of the commit
before the change (``git worktree add --detach ../base <commit>`` and
``make install`` there), ``--head`` the checkout with the change.  Each round
runs, for each checkout in turn (the order flips every round, so drift on this
shared machine hits both alike):

* HTTP wall clock: that checkout's ``twistd ahtwist`` pinned to CPU 0, wrk (50
  connections) on CPU 1, ``GET /api/randomNumber``; the raw twisted.web
  baseline (bench/servers/raw_twisted_web.py) once per round as the ceiling;
* CPU per request in process for HTTP, socket and websocket:
  bench/cpu_per_request.py (this checkout's copy, so both use the same
  harness) run with that checkout's interpreter and code.

Medians over the rounds, and head/base ratios, go to
``bench/results/<--name>.json``.

    .venv/bin/python bench/ab_checkouts.py --base ../base --head . [--rounds 5] [--seconds 8]
"""

import argparse
import json
import statistics
import subprocess
from pathlib import Path

from common import PYTHON, Server, free_port, pinned, write_result, wrk

HERE = Path(__file__).resolve().parent
HARNESS = HERE / "cpu_per_request.py"


def http_wall(checkout: Path, seconds: int) -> float:
    port = free_port()
    cmd = [str(checkout / ".venv/bin/twistd"), "-n", "--pidfile=", "ahtwist",
           "--web", f"tcp:{port}:interface=127.0.0.1", "--socket", "none"]
    with Server(cmd, port, cwd=checkout):
        url = f"http://127.0.0.1:{port}/api/randomNumber"
        wrk(url, seconds=2)  # warm-up
        return wrk(url, seconds=seconds)["requests_per_sec"]


def raw_wall(seconds: int) -> float:
    port = free_port()
    with Server([PYTHON, str(HERE / "servers/raw_twisted_web.py"), str(port)], port):
        url = f"http://127.0.0.1:{port}/"
        wrk(url, seconds=2)
        return wrk(url, seconds=seconds)["requests_per_sec"]


def cpu_us(checkout: Path, requests: int) -> dict[str, float]:
    """In-process µs per request for each transport, the checkout's code under this harness."""
    cmd = pinned([str(checkout / ".venv/bin/python"), str(HARNESS), "--requests", str(requests),
                  "--rounds", "3", "--checkout", str(checkout), "--no-write"], 0)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=checkout).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, type=Path)
    parser.add_argument("--head", required=True, type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--name", default="ab_checkouts")
    options = parser.parse_args()
    checkouts = {"base": options.base.resolve(), "head": options.head.resolve()}
    rounds = []
    for r in range(options.rounds):
        order = ["base", "head"] if r % 2 == 0 else ["head", "base"]
        result: dict = {"raw_twisted_web_req_s": raw_wall(options.seconds)}
        for name in order:
            result[name] = {"http_req_s": http_wall(checkouts[name], options.seconds),
                            **cpu_us(checkouts[name], options.requests)}
        rounds.append(result)
        print(json.dumps(result), flush=True)

    def median(name: str, key: str) -> float:
        return round(statistics.median(r[name][key] for r in rounds), 2)

    keys = ["http_req_s", "http_us", "socket_us", "websocket_us"]
    medians = {name: {k: median(name, k) for k in keys} for name in checkouts}
    raw = statistics.median(r["raw_twisted_web_req_s"] for r in rounds)
    summary = {
        "benchmark": "head vs base, alternating rounds: HTTP wall clock (wrk, 50 conns, GET /api/randomNumber) "
        "and in-process CPU µs per request (bench/cpu_per_request.py)",
        "checkouts": {k: str(v) for k, v in checkouts.items()},
        "commits": {k: subprocess.run(["git", "-C", str(v), "rev-parse", "--short", "HEAD"],
                                      capture_output=True, text=True).stdout.strip() for k, v in checkouts.items()},
        "medians": medians,
        "raw_twisted_web_req_s_median": round(raw),
        "http_vs_raw": {name: round(medians[name]["http_req_s"] / raw, 3) for name in checkouts},
        "head_over_base": {k: round(medians["head"][k] / medians["base"][k], 3) for k in keys},
        "rounds": rounds,
    }
    print(json.dumps({"head_over_base": summary["head_over_base"], "http_vs_raw": summary["http_vs_raw"]}))
    print("->", write_result(options.name, summary))


if __name__ == "__main__":
    main()
