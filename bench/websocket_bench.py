"""WebSocket benchmarks (a script, not a test): writes bench/results/websocket.json.

  .venv/bin/python bench/websocket_bench.py [--seconds 5] [--rounds 3]

In one run, with every server pinned to CPU 0 and the load generator
(bench/websocket_load.py) to CPU 1:

* **replies/s** -- 50 websocket clients, each with one ``randomNumber`` action
  in flight, against ahtwist and against a bare Autobahn JSON echo server
  (bench/servers/autobahn_echo.py: the ceiling of this stack).  Rounds
  alternate the servers so each ratio compares neighbours in time.  ahtwist is
  measured with the log observer it ships, with only warnings logged
  (``--logger quiet_log.observer``: the info line is still emitted, then
  dropped), and with the per-action line switched off
  (bench/servers/no_action_log), which separates the transport and core from
  the log line; ``verb_only`` sends ``detailsView`` (no action processor);
* **fan-out** -- 500 websocket members of one room; the last to join says
  something as soon as it heard its previous message (``window`` says in
  flight); deliveries/s and the delay from say to each delivery;
* **idle memory** -- RSS growth of a fresh server per idle websocket with
  2,000 clients connected (ahtwist and the bare echo).

The machine is shared and noisy: compare ratios within one run; the server CPU
time per reply is recorded as a steadier second view.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from bench.common import Server, free_port, pinned  # noqa: E402

RESULTS = BENCH / "results"
BIN = Path(sys.executable).parent
LOAD = [sys.executable, str(BENCH / "websocket_load.py")]


def ahtwist(name: str, quiet: bool = False, no_action_log: bool = False) -> Server:
    port = free_port()
    command = [str(BIN / "twistd"), "-n", "--pidfile="]
    env = {}
    if quiet:
        command += ["--logger", "quiet_log.observer"]
        env["PYTHONPATH"] = str(BENCH / "servers")
    if no_action_log:
        env["PYTHONPATH"] = str(BENCH / "servers" / "no_action_log")
    command += ["ahtwist", "--web", f"tcp:{port}:interface=127.0.0.1", "--socket", "none"]
    return Server(command, port, 0, env, log=_log_path(name))


def echo(name: str = "autobahn-echo") -> Server:
    port = free_port()
    return Server([sys.executable, str(BENCH / "servers" / "autobahn_echo.py"), str(port)], port, 0,
                  log=_log_path(name))


def _log_path(name: str) -> Path:
    return Path(tempfile.gettempdir()) / f"ahtwist-bench-{name}.log"


def load(*args: str) -> dict:
    out = subprocess.run(pinned([*LOAD, *args], 1), capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measured(server: Server, *args: str) -> dict:
    """One load run plus the server's CPU time per counted reply/delivery."""
    before = server.cpu_seconds()
    result = load(*args)
    spent = server.cpu_seconds() - before
    count = result.get("replies") or result.get("deliveries") or 1
    result["server_cpu_s"] = round(spent, 2)
    result["server_cpu_us_per_item_incl_warmup"] = round(spent / count * 1e6, 1)
    return result


def rtt_section(seconds: float, rounds: int) -> dict:
    servers = {
        "echo": echo(),
        "ahtwist": ahtwist("ahtwist"),
        "ahtwist_quiet_log": ahtwist("ahtwist-quiet", quiet=True),
        "ahtwist_no_action_log": ahtwist("ahtwist-no-action-log", no_action_log=True),
    }
    runs: dict[str, list[dict]] = {name: [] for name in [*servers, "ahtwist_verb_only"]}
    ratios: dict[str, list[float]] = {name: [] for name in runs if name != "echo"}
    try:
        for _ in range(rounds):
            for name in ("echo", "ahtwist", "ahtwist_quiet_log", "ahtwist_no_action_log"):
                server = servers[name]
                extra = ["--echo"] if name == "echo" else []
                runs[name].append(measured(server, "rtt", str(server.port), "--seconds", str(seconds), *extra))
            quiet = servers["ahtwist_quiet_log"]
            runs["ahtwist_verb_only"].append(
                measured(quiet, "rtt", str(quiet.port), "--seconds", str(seconds),
                         "--frame", '{"event":"detailsView","messageId":%d}')
            )
            base = runs["echo"][-1]["replies_per_sec"]
            for name in ratios:
                ratios[name].append(round(runs[name][-1]["replies_per_sec"] / base, 3))
    finally:
        for server in servers.values():
            server.stop()
    summary = {
        name: {
            "median_replies_per_sec": statistics.median(r["replies_per_sec"] for r in rs),
            "median_p50_ms": statistics.median(r["p50_ms"] for r in rs),
            "median_p99_ms": statistics.median(r["p99_ms"] for r in rs),
            "median_server_cpu_us_per_reply": statistics.median(
                r["server_cpu_us_per_item_incl_warmup"] for r in rs
            ),
        }
        for name, rs in runs.items()
    }
    return {
        "what": "50 clients, one request in flight each; ahtwist runs randomNumber, the echo echoes the same frame",
        "ratio_to_echo_per_round": ratios,
        "median_ratio_to_echo": {name: statistics.median(v) for name, v in ratios.items()},
        "summary": summary,
        "runs": runs,
    }


def fanout_section(seconds: float, rounds: int, windows: list[int]) -> dict:
    server = ahtwist("ahtwist-fanout")
    runs: dict[str, list[dict]] = {}
    try:
        for _ in range(rounds):
            for window in windows:
                runs.setdefault(f"window_{window}", []).append(
                    measured(server, "fanout", str(server.port), "--members", "500",
                             "--seconds", str(seconds), "--window", str(window))
                )
    finally:
        server.stop()
    return {
        "what": "500 websocket members in defaultRoom; the last member says again as soon as it heard its say",
        "summary": {
            name: {
                "median_deliveries_per_sec": statistics.median(r["deliveries_per_sec"] for r in rs),
                "median_p99_delay_ms": statistics.median(r["p99_delay_ms"] for r in rs),
                "median_p50_delay_ms": statistics.median(r["p50_delay_ms"] for r in rs),
            }
            for name, rs in runs.items()
        },
        "runs": runs,
    }


def idle_section(clients: int) -> dict:
    results = {}
    for name, make in (("ahtwist", lambda: ahtwist("ahtwist-idle")), ("echo", echo)):
        server = make()
        try:
            warm = load("rtt", str(server.port), "--clients", "10", "--seconds", "1", "--warmup", "0.5",
                        *(["--echo"] if name == "echo" else []))
            time.sleep(1.0)
            before = server.rss_kib()
            holder = subprocess.Popen(
                pinned([*LOAD, "idle", str(server.port), "--clients", str(clients),
                        *(["--echo"] if name == "echo" else [])], 1),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )
            line = holder.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"idle clients not ready: {line!r}")
            time.sleep(2.0)
            after = server.rss_kib()
            holder.stdin.close()
            report = json.loads(holder.stdout.read().strip().splitlines()[-1])
            holder.wait(30)
            results[name] = {
                "clients": clients,
                "welcomed": report["welcomed"],
                "rss_before_kib": before,
                "rss_after_kib": after,
                "kib_per_idle_websocket": round((after - before) / clients, 2),
                "warmup_replies": warm["replies"],
            }
        finally:
            server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle-clients", type=int, default=2000)
    parser.add_argument("--windows", default="1,2,4")
    parser.add_argument("--only", choices=["rtt", "fanout", "idle"])
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    started = time.time()
    result: dict = {
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "pinning": "servers on CPU 0, load generator on CPU 1 (taskset)",
            "note": "shared, noisy 2-core machine: compare ratios within one run, not across runs",
        },
    }
    if args.only in (None, "rtt"):
        result["replies"] = rtt_section(args.seconds, args.rounds)
    if args.only in (None, "fanout"):
        windows = [int(w) for w in args.windows.split(",")]
        result["fanout"] = fanout_section(args.seconds, max(1, args.rounds - 1), windows)
    if args.only in (None, "idle"):
        result["idle_memory"] = idle_section(args.idle_clients)
    result["elapsed_s"] = round(time.time() - started, 1)
    name = "websocket.json" if args.only is None else f"websocket-{args.only}.json"
    path = RESULTS / name
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("replies", "fanout")}, indent=2))
    if "replies" in result:
        print("replies:", json.dumps(result["replies"]["median_ratio_to_echo"]),
              json.dumps(result["replies"]["summary"], indent=1))
    if "fanout" in result:
        print("fanout:", json.dumps(result["fanout"]["summary"], indent=1))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
