"""A burst of says on one node while the machine is starved of CPU (a script, not a test).

Found 2026-12-05 and NOT fixed (issue 13 stays open): two real ``twistd
ahtwist --redis`` nodes and a real ``redis-server``; a socket client on node A
writes ``--says`` say lines at once into ``defaultRoom`` while ``--busy``
processes spin on the CPUs; a websocket on node B, joined with offsets,
counts what arrives.  Without the busy processes every say arrives, in order
(``tests/e2e/test_cluster_history_e2e.py``'s burst test).  With 6 busy loops
on this 2-core machine node A's reactor is late reading its own subscription
pings, its stall detector (``redis.subscriptionTimeout``) reconnects again
and again, says time out ("Not received Redis response in 5.0 seconds"), and
most of the burst never reaches node B -- not even once the load is gone
(seen: 469 of 10,000 after 90 s).  That is a silent loss for B's member.

    .venv/bin/python bench/cluster_burst_under_load.py [--busy 6] [--says 10000] [--wait 90]

Writes bench/results/cluster_burst_under_load.json (received, missing, the
nodes' Redis log lines).
"""

import argparse
import json
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
    options = parser.parse_args()
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
    (HERE / "results" / "cluster_burst_under_load.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: out[k] for k in ("busy_processes", "says", "received", "missing", "in_order", "error")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
