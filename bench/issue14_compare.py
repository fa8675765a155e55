"""Before/after benchmark for issue 14's websocket and memory work (a script, not a test).

Runs the code of this checkout ("after") and of an older commit ("before",
exported with ``git archive COMMIT | tar -x -C DIR`` and put first on the
server's PYTHONPATH) side by side in one run, with the bare Autobahn echo
(bench/servers/autobahn_echo.py) as the ceiling of the stack:

* **idle memory**: a fresh server per variant, RSS growth per idle client
  with ``--idle`` websockets (ahtwist before/after and the bare echo) and
  ``--idle`` TCP socket clients (before/after);
* **10k websockets**: RSS of a fresh server with ``--scale`` idle websockets;
* **websocket replies/s**: 50 clients x 1 ``randomNumber`` in flight (the
  echo echoes the same frame), rounds alternating before/after/echo,
  servers pinned to CPU 0, load generator to CPU 1;
* **websocket fan-out**: 500 members, deliveries/s, alternating;
* **churn**: websocket connect + 101 + welcome + close per second
  (bench/scale.py's churn), alternating, unpinned.

    .venv/bin/python bench/issue14_compare.py --before /tmp/ahtwist-before [--rounds 3]

Writes ``bench/results/websocket-issue14.json``, ``memory-per-connection.json``
and ``scale-issue14.json``.
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

from bench import loadgen  # noqa: E402
from bench.common import RESULTS, VENV_BIN, Server, free_port, pinned  # noqa: E402
from bench.scale import Crowd, Sources, churn, raise_fd_limit  # noqa: E402

LOAD = [sys.executable, str(BENCH / "websocket_load.py")]
LOGS = Path(tempfile.mkdtemp(prefix="ahtwist-issue14-"))


def ahtwist(variant: str, before: Path, cpu: int | None = 0) -> tuple[Server, int, int]:
    web, sock = free_port(), free_port()
    env = {"PYTHONPATH": str(before)} if variant == "before" else {}
    server = Server(
        [str(VENV_BIN / "twistd"), "-n", "--pidfile=", "ahtwist",
         "--web", f"tcp:{web}:interface=127.0.0.1:backlog=1024",
         "--socket", f"tcp:{sock}:interface=127.0.0.1:backlog=1024"],
        None, cpu, env, ports=[web, sock], log=LOGS / f"{variant}.log",
    )
    return server, web, sock


def echo(cpu: int | None = 0) -> Server:
    port = free_port()
    return Server([sys.executable, str(BENCH / "servers" / "autobahn_echo.py"), str(port)], port, cpu,
                  log=LOGS / "echo.log")


def load(*args: str) -> dict:
    out = subprocess.run(pinned([*LOAD, *args], 1), capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def idle_ws(port: int, clients: int, echo_server: bool, server: Server) -> dict:
    warm = load("rtt", str(port), "--clients", "10", "--seconds", "1", "--warmup", "0.5",
                *(["--echo"] if echo_server else []))
    time.sleep(1.0)
    before = server.rss_kib()
    holder = subprocess.Popen(
        pinned([*LOAD, "idle", str(port), "--clients", str(clients), *(["--echo"] if echo_server else [])], 1),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    line = holder.stdout.readline().strip()
    if line != "ready":
        raise RuntimeError(f"idle clients not ready: {line!r}")
    time.sleep(2.0)
    after = server.rss_kib()
    holder.stdin.close()
    holder.wait(60)
    return {"clients": clients, "rss_before_kib": before, "rss_after_kib": after,
            "kib_per_idle_websocket": round((after - before) / clients, 2), "warmup_replies": warm["replies"]}


def raw_lines(cpu: int | None = 0) -> Server:
    """The floor for an idle TCP connection: a bare Twisted line protocol
    (bench/raw_echo_server.py: a ``LineOnlyReceiver``, no welcome line)."""
    port_file = LOGS / "raw-port"
    port_file.unlink(missing_ok=True)
    return Server([sys.executable, str(BENCH / "raw_echo_server.py"), str(port_file)], None, cpu,
                  port_file=port_file, log=LOGS / "raw.log")


def idle_tcp(port: int, count: int, server: Server, welcome: bool = True) -> dict:
    for s in loadgen.idle_clients(port, 20, welcome):
        s.close()
    time.sleep(1)
    before = server.rss_kib()
    socks = loadgen.idle_clients(port, count, welcome)
    time.sleep(2)
    after = server.rss_kib()
    for s in socks:
        s.close()
    return {"clients": count, "rss_before_kib": before, "rss_after_kib": after,
            "kib_per_idle_tcp": round((after - before) / count, 2)}


def memory_section(before: Path, idle: int, rounds: int) -> dict:
    out: dict = {"websocket": {}, "tcp": {}}
    for _ in range(rounds):
        for variant in ("before", "after"):
            server, web, sock = ahtwist(variant, before)
            try:
                out["websocket"].setdefault(variant, []).append(idle_ws(web, idle, False, server))
            finally:
                server.stop()
            server, web, sock = ahtwist(variant, before)
            try:
                out["tcp"].setdefault(variant, []).append(idle_tcp(sock, idle, server))
            finally:
                server.stop()
        server = echo()
        try:
            out["websocket"].setdefault("autobahn_echo", []).append(idle_ws(server.port, idle, True, server))
        finally:
            server.stop()
        server = raw_lines()
        try:
            out["tcp"].setdefault("raw_twisted_lines", []).append(idle_tcp(server.port, idle, server, False))
        finally:
            server.stop()
    out["median_kib_per_idle_websocket"] = {
        k: statistics.median(r["kib_per_idle_websocket"] for r in v) for k, v in out["websocket"].items()}
    out["median_kib_per_idle_tcp"] = {
        k: statistics.median(r["kib_per_idle_tcp"] for r in v) for k, v in out["tcp"].items()}
    return out


def scale_section(before: Path, count: int) -> dict:
    out: dict = {}
    for variant in ("before", "after"):
        server, web, _ = ahtwist(variant, before, cpu=None)
        crowd = Crowd()
        try:
            time.sleep(1)
            start = server.rss_kib()
            began = time.perf_counter()
            crowd.open_many(web, count, True, Sources())
            opened = time.perf_counter() - began
            crowd.pump(2)
            idle = server.rss_kib()
            out[variant] = {"connections": count, "rss_mib_start": round(start / 1024, 1),
                            "rss_mib_websockets_idle": round(idle / 1024, 1),
                            "kib_per_websocket_idle": round((idle - start) / count, 2),
                            "open_seconds": round(opened, 1)}
        finally:
            for member in crowd.members.values():
                member.sock.close()
            server.stop()
    return out


def rtt_section(before: Path, seconds: float, rounds: int) -> dict:
    servers = {"echo": echo(), "before": ahtwist("before", before)[0], "after": ahtwist("after", before)[0]}
    ports = {"echo": servers["echo"].port}
    ports["before"] = int(servers["before"].proc.args[servers["before"].proc.args.index("--web") + 1].split(":")[1])
    ports["after"] = int(servers["after"].proc.args[servers["after"].proc.args.index("--web") + 1].split(":")[1])
    runs: dict[str, list[dict]] = {k: [] for k in servers}
    ratios: dict[str, list[float]] = {"before": [], "after": [], "after_over_before": []}
    try:
        for i in range(rounds):
            order = ("echo", "before", "after") if i % 2 == 0 else ("after", "before", "echo")
            for name in order:
                server = servers[name]
                cpu0 = server.cpu_seconds()
                result = load("rtt", str(ports[name]), "--seconds", str(seconds),
                              *(["--echo"] if name == "echo" else []))
                result["server_cpu_us_per_reply_incl_warmup"] = round(
                    (server.cpu_seconds() - cpu0) / max(result["replies"], 1) * 1e6, 1)
                runs[name].append(result)
            base = runs["echo"][-1]["replies_per_sec"]
            ratios["before"].append(round(runs["before"][-1]["replies_per_sec"] / base, 3))
            ratios["after"].append(round(runs["after"][-1]["replies_per_sec"] / base, 3))
            ratios["after_over_before"].append(
                round(runs["after"][-1]["replies_per_sec"] / runs["before"][-1]["replies_per_sec"], 3))
    finally:
        for server in servers.values():
            server.stop()
    return {
        "what": "50 websocket clients x 1 randomNumber in flight; the echo echoes the same frame",
        "ratio_to_echo_per_round": ratios,
        "median_ratio_to_echo": {k: statistics.median(v) for k, v in ratios.items()},
        "median_replies_per_sec": {k: statistics.median(r["replies_per_sec"] for r in v) for k, v in runs.items()},
        "median_server_cpu_us_per_reply": {
            k: statistics.median(r["server_cpu_us_per_reply_incl_warmup"] for r in v) for k, v in runs.items()},
        "runs": runs,
    }


def fanout_section(before: Path, seconds: float, rounds: int) -> dict:
    servers = {v: ahtwist(v, before) for v in ("before", "after")}
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    try:
        for i in range(rounds):
            for name in (("before", "after") if i % 2 == 0 else ("after", "before")):
                _, web, _ = servers[name]
                runs[name].append(load("fanout", str(web), "--members", "500", "--seconds", str(seconds),
                                       "--window", "2"))
    finally:
        for server, _, _ in servers.values():
            server.stop()
    return {
        "what": "500 websocket members of defaultRoom, window 2",
        "median_deliveries_per_sec": {k: statistics.median(r["deliveries_per_sec"] for r in v) for k, v in runs.items()},
        "median_p99_delay_ms": {k: statistics.median(r["p99_delay_ms"] for r in v) for k, v in runs.items()},
        "runs": runs,
    }


def churn_section(before: Path, seconds: float, rounds: int) -> dict:
    servers = {v: ahtwist(v, before, cpu=None) for v in ("before", "after")}
    sources = Sources(per_address=25_000)
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    try:
        for _, web, _ in servers.values():
            churn(web, 2, sources)
        for i in range(rounds):
            for name in (("before", "after") if i % 2 == 0 else ("after", "before")):
                server, web, _ = servers[name]
                cpu0 = server.cpu_seconds()
                rss0 = server.rss_kib()
                result = churn(web, seconds, sources)
                result["server_cpu_share"] = round((server.cpu_seconds() - cpu0) / result["seconds"], 2)
                time.sleep(1)
                result["rss_mib_before"] = round(rss0 / 1024, 1)
                result["rss_mib_after"] = round(server.rss_kib() / 1024, 1)
                result.pop("error_samples", None)
                runs[name].append(result)
    finally:
        for server, _, _ in servers.values():
            server.stop()
    return {
        "what": "websocket connect + 101 + welcome + close handshake, 64 in flight, unpinned",
        "median_per_second": {k: statistics.median(r["per_second_mean"] for r in v) for k, v in runs.items()},
        "errors": {k: sum(r["errors"] for r in v) for k, v in runs.items()},
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--scale", type=int, default=10_000)
    parser.add_argument("--churn-seconds", type=float, default=10)
    parser.add_argument("--only", choices=["memory", "scale", "rtt", "fanout", "churn"], action="append")
    args = parser.parse_args()
    raise_fd_limit()
    only = set(args.only or ["memory", "scale", "rtt", "fanout", "churn"])
    head = {"recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "loadavg_at_start": os.getloadavg(),
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                        "note": "shared, noisy 2-core machine (other helpers running tests): compare within one run"},
            "before": str(args.before), "after": str(REPO)}
    RESULTS.mkdir(exist_ok=True)
    if "memory" in only:
        data = {**head, **memory_section(args.before, args.idle, max(1, args.rounds - 1))}
        (RESULTS / "memory-per-connection.json").write_text(json.dumps(data, indent=2) + "\n")
        print(json.dumps({k: data[k] for k in ("median_kib_per_idle_websocket", "median_kib_per_idle_tcp")}),
              flush=True)
    scale: dict = {**head}
    if "scale" in only:
        scale["idle_websockets"] = scale_section(args.before, args.scale)
        print(json.dumps(scale["idle_websockets"]), flush=True)
    if "churn" in only:
        scale["churn"] = churn_section(args.before, args.churn_seconds, args.rounds - 1)
        print(json.dumps({k: scale["churn"][k] for k in ("median_per_second", "errors")}), flush=True)
    if len(scale) > len(head):
        (RESULTS / "scale-issue14.json").write_text(json.dumps(scale, indent=2) + "\n")
    ws: dict = {**head}
    if "rtt" in only:
        ws["replies"] = rtt_section(args.before, args.seconds, args.rounds)
        print(json.dumps({k: ws["replies"][k] for k in ("median_ratio_to_echo", "median_replies_per_sec")}),
              flush=True)
    if "fanout" in only:
        ws["fanout"] = fanout_section(args.before, args.seconds, args.rounds)
        print(json.dumps({k: ws["fanout"][k] for k in ("median_deliveries_per_sec", "median_p99_delay_ms")}),
              flush=True)
    if len(ws) > len(head):
        (RESULTS / "websocket-issue14.json").write_text(json.dumps(ws, indent=2) + "\n")


if __name__ == "__main__":
    main()
