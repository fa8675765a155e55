"""A burst of says on one node while the machine is starved of CPU (a script, not a test).

Two real ``twistd ahtwist --redis`` nodes and a real ``redis-server``; a
socket client on node A writes ``--says`` say lines at once into
``defaultRoom`` while ``--busy`` processes spin on the CPUs; a websocket on
node B, joined with offsets, counts what arrives (and any offset twice).

Found 2026-12-05 on ee71eef, before the fix: with 6 busy loops on this
2-core machine node A's reactor was late reading its own subscription pings,
its stall detector reconnected again and again, every reconnection sent all
held says at once, those timed out ("Not received Redis response in 5.0
seconds"), and most of the burst never reached node B -- not even once the
load was gone (469 of 10,000 after 90 s).  Fixed by sending says in a
bounded window, commands without a deadline of their own, and a link watch
that counts a connection still receiving as alive
(ahtwist/backends/redis/link.py, history.py).

    .venv/bin/python bench/cluster_burst_under_load.py [--busy 6] [--says 10000] [--wait 90] [--runs 3]

Writes bench/results/cluster_burst_under_load.json (per run: received,
missing, duplicates, the nodes' Redis log lines).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.e2e.test_cluster_history_e2e import ROOM, Sayer, join, start_cluster  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--busy", type=int, default=6, help="busy-loop processes during the burst")
    parser.add_argument("--busy-seconds", type=float, default=100)
    parser.add_argument("--says", type=int, default=10000)
    parser.add_argument("--wait", type=float, default=90, help="seconds without a message before giving up")
    parser.add_argument("--runs", type=int, default=1)
    options = parser.parse_args()
    runs = [one_run(options) for _ in range(options.runs)]
    out = {"recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "runs": runs}
    (HERE / "results" / "cluster_burst_under_load.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


def one_run(options: argparse.Namespace) -> dict:
    # the busy loops start first: the nodes start, load their scripts and subscribe on a starved machine
    busy = [subprocess.Popen([sys.executable, "-c", f"import time\nend = time.time() + {options.busy_seconds}\n"
                              "while time.time() < end: pass"]) for _ in range(options.busy)]
    server = RedisServer().start()
    a, b = start_cluster(server.url)
    sayer = Sayer(a)
    offsets: list[int] = []
    error = None
    try:
        listener = b.websocket()
        join(listener, {})
        started = time.monotonic()
        sayer.client.send("".join(f"say {ROOM} b{n}\n" for n in range(options.says)))
        try:
            while len(offsets) < options.says:
                message = listener.recv(timeout=options.wait)
                if message.get("context") == "user":
                    offsets.append(message["offset"])
        except TimeoutError as exc:
            error = f"nothing for {options.wait} s: {exc}"
        elapsed = time.monotonic() - started
        missing = sorted(set(range(1, options.says + 1)) - set(offsets))
        out = {
            "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "busy_processes": options.busy, "says": options.says,
            "received": len(offsets), "missing": len(missing), "first_missing": missing[:5],
            "duplicates": len(offsets) - len(set(offsets)),
            "load_average": list(os.getloadavg()),
            "in_order": offsets == sorted(offsets), "seconds": round(elapsed, 1), "error": error,
            "log_a": [line for line in a.log().splitlines() if "ahtwist.redis" in line],
            "log_b": [line for line in b.log().splitlines() if "ahtwist.redis" in line],
        }
    finally:
        for process in busy:
            process.kill()
            process.wait()
        sayer.close()
        a.stop()
        b.stop()
        server.stop()
    summary = ("busy_processes", "says", "received", "missing", "duplicates", "in_order", "seconds", "error")
    print(json.dumps({k: out[k] for k in summary}), flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
