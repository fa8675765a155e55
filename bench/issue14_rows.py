"""Issue 14's table in one run: every workload, ahtwist before and after, against its raw baseline (a script, not a test).

    .venv/bin/python bench/issue14_rows.py [--before 491328c^] [--rounds 2] [--seconds 5] [--only socket_fanout ...]

"Before" is the code of an older commit (default: the parent of the first
issue-14 commit), exported with ``git archive COMMIT | tar -x -C DIR`` and
put first on the server's PYTHONPATH (as bench/issue14_compare.py does);
"after" is this checkout.  For each row the three servers -- the raw
baseline, before, after -- run at once, each pinned to CPU 0, and are
measured one after the other, the order reversed every round; the load
generators (wrk, bench/loadgen.py in this process, bench/websocket_load.py,
bench/fanout.c for the socket fan-out) run on CPU 1.  Each round's ratio is against the raw baseline of the same
round; the table shows medians over the rounds.  The machine is shared: the
load average and the CPU the rest of the machine used during each
measurement are recorded beside it.

Rows and baselines:

* ``http`` -- wrk, 50 connections, ``GET /api/randomNumber`` vs
  bench/servers/raw_twisted_web.py (a fixed JSON body);
* ``static`` -- wrk, 50 connections, a 5,100-byte file vs twisted.web's
  ``File`` (bench/servers/twisted_static.py);
* ``socket_50x1`` / ``socket_50x16`` -- 50 TCP clients with 1 / 16
  ``{"action":"randomNumber"}`` in flight vs bench/raw_echo_server.py;
* ``websocket_action`` -- 50 websocket clients x 1 ``randomNumber`` vs the
  bare Autobahn echo (bench/servers/autobahn_echo.py);
* ``websocket_fanout`` / ``socket_fanout`` -- 500 members of one room, 2
  says in flight, deliveries/s and delay p99 vs bench/servers/raw_rooms.py
  (socket: measured by bench/fanout.c, compiled with the machine's C
  compiler, unless ``--fanout-generator python`` or no compiler is found;
  the generator is recorded with each run).

Writes bench/results/issue14_rows.json and issue14_rows.md.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from bench import loadgen  # noqa: E402
from bench.common import RESULTS, VENV_BIN, Server, free_port, pinned, write_json_and_markdown, wrk  # noqa: E402

PYTHON = str(VENV_BIN / "python")
LOGS = Path(tempfile.mkdtemp(prefix="ahtwist-rows-"))
WS_LOAD = [PYTHON, str(BENCH / "websocket_load.py")]
#: fan-out: says in flight (--window)
WINDOW = {"socket": 2, "websocket": 2}
#: socket fan-out: bench/fanout.c ("c", falls back to Python without a compiler) or bench/loadgen.py ("python")
FANOUT_GENERATOR = ["c"]
#: socket fan-out with bench/fanout.c: says per second on a fixed schedule (open loop) instead of WINDOW in flight
FANOUT_RATE = [0.0]

#: row -> (what, unit, goal for after / raw)
ROWS = {
    "http": ("HTTP GET /api/randomNumber, 50 conns", "requests/s", 0.75),
    "static": ("static 5 KB file, 50 conns", "requests/s", 1.0),
    "socket_50x1": ("socket, 50 conns x 1 in flight", "replies/s", 0.85),
    "socket_50x16": ("socket, 50 x 16 pipelined", "replies/s", 0.80),
    "websocket_action": ("websocket action, 50 x 1 (vs bare Autobahn echo)", "replies/s", 1.35),
    "websocket_fanout": ("websocket fan-out, 500 members", "deliveries/s", 1.2),
    "socket_fanout": ("socket fan-out, 500 members", "deliveries/s", 0.80),
}
#: at filing (issue 14): after/raw then
AT_FILING = {"http": 0.56, "static": 1.04, "socket_50x1": 0.75, "socket_50x16": 0.65,
             "websocket_action": 1.09, "websocket_fanout": 0.98, "socket_fanout": 0.45}


def export(commit: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="ahtwist-before-"))
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def ahtwist(variant: str, before: Path, web: str = "none", sock: str = "none", *extra: str) -> Server:
    env = {"PYTHONPATH": str(before)} if variant == "before" else {}
    ports = [int(e.split(":")[1]) for e in (web, sock) if e != "none"]
    return Server([str(VENV_BIN / "twistd"), "-n", "--pidfile=", "ahtwist", "--web", web, "--socket", sock, *extra],
                  None, 0, env, ports=ports, log=LOGS / f"{variant}-{ports[0]}.log")


def tcp(port: int) -> str:
    return f"tcp:{port}:interface=127.0.0.1:backlog=4096"


class Watch:
    """The load average and the CPUs the rest of the machine used while a
    measurement ran (all busy CPU time minus the server's and the load's)."""

    def __init__(self, server: Server) -> None:
        self.server = psutil.Process(server.proc.pid)

    def __enter__(self) -> "Watch":
        self.loadavg = os.getloadavg()[0]
        self.started = time.monotonic()
        self.busy = _busy(psutil.cpu_times())
        self.server_cpu = _busy(self.server.cpu_times())
        self.load_cpu = _load_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        elapsed = time.monotonic() - self.started
        server = _busy(self.server.cpu_times()) - self.server_cpu
        load = _load_cpu() - self.load_cpu
        self.report = {
            "loadavg_1min": round(self.loadavg, 2),
            "server_cpus": round(server / elapsed, 2),
            "server_cpu_s": round(server, 3),
            "elapsed_s": round(elapsed, 3),
            "other_cpus": round(max(0.0, _busy(psutil.cpu_times()) - self.busy - server - load) / elapsed, 2),
        }


def _busy(times: Any) -> float:
    return times.user + times.system


def _load_cpu() -> float:
    me = psutil.Process()
    total = _busy(me.cpu_times())
    return total + me.cpu_times().children_user + me.cpu_times().children_system


def measure(server: Server, run: Callable[[], dict]) -> dict:
    with Watch(server) as watch:
        result = run()
    result.update(watch.report)
    # server CPU per reply/delivery (warm-up included, at the measured rate): a
    # steadier view than the rate when other work starves the load generator
    result["server_cpu_us_per_item"] = round(result["server_cpu_s"] / (result["rate"] * result["elapsed_s"]) * 1e6, 2)
    return result


def ws_load(*args: str) -> dict:
    out = subprocess.run(pinned([*WS_LOAD, *args], 1), capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- one function per row: (servers by variant, {variant: run}) -----------------------------------


def trio(raw: Callable[[int], list[str]], before: Path, web: bool, *extra: str) -> tuple[dict, dict]:
    """The raw baseline (``raw(port)``, run by this Python) and ahtwist before
    and after, on ports of their own: ahtwist's web listener when ``web``,
    else its socket listener."""
    ports = {v: free_port() for v in ("raw", "before", "after")}
    servers = {"raw": Server([PYTHON, *raw(ports["raw"])], ports["raw"], 0, log=LOGS / f"raw-{ports['raw']}.log")}
    for v in ("before", "after"):
        listeners = (tcp(ports[v]), "none") if web else ("none", tcp(ports[v]))
        servers[v] = ahtwist(v, before, *listeners, *extra)
    return servers, ports


def http_row(before: Path, seconds: float) -> tuple[dict, dict]:
    servers, ports = trio(lambda port: [str(BENCH / "servers" / "raw_twisted_web.py"), str(port)], before, True)
    urls = {"raw": f"http://127.0.0.1:{ports['raw']}/"}
    urls.update({v: f"http://127.0.0.1:{ports[v]}/api/randomNumber" for v in ("before", "after")})
    return servers, {v: _wrk_run(urls[v], seconds) for v in servers}


def static_row(before: Path, seconds: float) -> tuple[dict, dict]:
    public = Path(tempfile.mkdtemp(prefix="ahtwist-rows-public-"))
    (public / "index.html").write_bytes((b"<p>" + b"x" * 96 + b"</p>\n") * 50)  # 5,100 bytes, as static_files.py
    servers, ports = trio(lambda port: [str(BENCH / "servers" / "twisted_static.py"), str(port), str(public)],
                          before, True, "--public", str(public))
    urls = {"raw": f"http://127.0.0.1:{ports['raw']}/index.html"}
    urls.update({v: f"http://127.0.0.1:{ports[v]}/public/index.html" for v in ("before", "after")})
    return servers, {v: _wrk_run(urls[v], seconds) for v in servers}


def _wrk_run(url: str, seconds: float) -> Callable[[], dict]:
    def run() -> dict:
        wrk(url, seconds=1)  # warm-up
        result = wrk(url, seconds=max(1, round(seconds)))
        result["rate"] = result["requests_per_sec"]
        return result
    return run


def socket_servers(before: Path) -> tuple[dict, dict]:
    port_file = Path(tempfile.mkdtemp(prefix="echo-", dir=LOGS)) / "port"  # a fresh one: no stale port
    servers = {"raw": Server([PYTHON, str(BENCH / "raw_echo_server.py"), str(port_file)], None, 0,
                             port_file=port_file, log=LOGS / "raw-echo.log")}
    ports = {"raw": servers["raw"].port}
    for v in ("before", "after"):
        ports[v] = free_port()
        servers[v] = ahtwist(v, before, "none", tcp(ports[v]))
    return servers, ports


def socket_row(depth: int) -> Callable[[Path, float], tuple[dict, dict]]:
    def row(before: Path, seconds: float) -> tuple[dict, dict]:
        servers, ports = socket_servers(before)

        def run(v: str) -> Callable[[], dict]:
            def go() -> dict:
                result = loadgen.request_reply(ports[v], 50, depth, seconds, 2, welcome=v != "raw")
                result["rate"] = result["replies_per_s"]
                result["p99_ms"] = result["latency_ms_p99"]
                return result
            return go
        return servers, {v: run(v) for v in servers}
    return row


def websocket_action_row(before: Path, seconds: float) -> tuple[dict, dict]:
    servers, ports = trio(lambda port: [str(BENCH / "servers" / "autobahn_echo.py"), str(port)], before, True)

    def run(v: str) -> Callable[[], dict]:
        def go() -> dict:
            result = ws_load("rtt", str(ports[v]), "--seconds", str(seconds), *(["--echo"] if v == "raw" else []))
            result["rate"] = result["replies_per_sec"]
            return result
        return go
    return servers, {v: run(v) for v in servers}


def rooms(mode: str, before: Path) -> tuple[dict, dict]:
    return trio(lambda port: [str(BENCH / "servers" / "raw_rooms.py"), mode, str(port)], before, mode == "websocket")


def websocket_fanout_row(before: Path, seconds: float) -> tuple[dict, dict]:
    servers, ports = rooms("websocket", before)

    def run(v: str) -> Callable[[], dict]:
        def go() -> dict:
            result = ws_load("fanout", str(ports[v]), "--members", "500", "--seconds", str(seconds),
                              "--window", str(WINDOW["websocket"]))
            result["rate"] = result["deliveries_per_sec"]
            result["p99_ms"] = result["p99_delay_ms"]
            return result
        return go
    return servers, {v: run(v) for v in servers}


def socket_fanout_row(before: Path, seconds: float) -> tuple[dict, dict]:
    servers, ports = rooms("socket", before)

    def run(v: str) -> Callable[[], dict]:
        def go() -> dict:
            if FANOUT_GENERATOR[0] == "c":  # on CPU 1, as this process
                result = loadgen.fan_out_c(ports[v], 500, WINDOW["socket"], seconds, 2, cpu=1,
                                           rate=FANOUT_RATE[0])
            else:
                result = loadgen.fan_out(ports[v], 500, WINDOW["socket"], seconds, 2)
                result["generator"] = "python"
            result["rate"] = result["deliveries_per_s"]
            result["p99_ms"] = result["delay_ms_p99"]
            return result
        return go
    return servers, {v: run(v) for v in servers}


ROW_FUNCTIONS = {
    "http": http_row,
    "static": static_row,
    "socket_50x1": socket_row(1),
    "socket_50x16": socket_row(16),
    "websocket_action": websocket_action_row,
    "websocket_fanout": websocket_fanout_row,
    "socket_fanout": socket_fanout_row,
}


def run_row(name: str, before: Path, seconds: float, rounds: int) -> dict:
    servers, runs = ROW_FUNCTIONS[name](before, seconds)
    results: dict[str, list[dict]] = {v: [] for v in servers}
    try:
        for i in range(rounds):
            order = ("raw", "before", "after") if i % 2 == 0 else ("after", "before", "raw")
            for v in order:
                results[v].append(measure(servers[v], runs[v]))
                print(f"{name} round {i + 1} {v}: {results[v][-1]['rate']:,.0f}/s "
                      f"(load {results[v][-1]['loadavg_1min']}, others {results[v][-1]['other_cpus']} CPU)",
                      flush=True)
    finally:
        for server in servers.values():
            server.stop()
    ratio = {v: [round(results[v][i]["rate"] / results["raw"][i]["rate"], 3) for i in range(rounds)]
             for v in ("before", "after")}
    ratio["after_over_before"] = [round(results["after"][i]["rate"] / results["before"][i]["rate"], 3)
                                  for i in range(rounds)]
    cpu = {v: [round(results["raw"][i]["server_cpu_us_per_item"] / results[v][i]["server_cpu_us_per_item"], 3)
               for i in range(rounds)] for v in ("before", "after")}
    summary = {
        "median_rate": {v: round(statistics.median(r["rate"] for r in rs)) for v, rs in results.items()},
        "median_server_cpu_us_per_item": {
            v: statistics.median(r["server_cpu_us_per_item"] for r in rs) for v, rs in results.items()},
        "median_cpu_ratio": {k: statistics.median(v) for k, v in cpu.items()},
        "cpu_ratio_per_round": cpu,
        "median_ratio": {k: statistics.median(v) for k, v in ratio.items()},
        "ratio_per_round": ratio,
    }
    if "p99_ms" in results["raw"][0]:
        summary["median_p99_ms"] = {v: statistics.median(r["p99_ms"] for r in rs) for v, rs in results.items()}
    return {**summary, "runs": results}


#: where the time goes in the rows that miss their goal (written by hand from bench/profile_server.py)
PROFILES = RESULTS / "issue14_profiles.md"


def markdown(data: dict) -> str:
    lines = [
        "# Issue 14: every row before and after, in one run",
        "",
        f"Recorded {data['recorded_at']} by `bench/issue14_rows.py` ({data['rounds']} rounds of "
        f"{data['seconds']} s per measurement, medians). Before = `{data['before_commit']}` "
        f"({data['before_sha'][:10]}), after = this checkout ({data['after_sha'][:10]}). "
        "Servers pinned to CPU 0, load generators to CPU 1; raw baseline, before and after of a row "
        "measured one after the other, the order reversed every round; each ratio is against the raw "
        f"baseline of the same round. Shared 2-core machine: load average {data['loadavg_start']} at the start, "
        f"{data['loadavg_end']} at the end (the benchmark's own processes count in it; \"others\" in the JSON is the CPU the rest of the machine used per measurement).",
        "",
        "| workload | raw | before | after | before / raw | **after / raw** | after / before | at filing | goal | "
        "p99 ms raw / before / after | server CPU µs per item raw / before / after | CPU ratio before, after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, (what, unit, goal) in ROWS.items():
        row = data["rows"].get(name)
        if row is None:
            continue
        rate, ratio = row["median_rate"], row["median_ratio"]
        p99 = row.get("median_p99_ms")
        p99_text = " / ".join(f"{p99[v]:.1f}" for v in ("raw", "before", "after")) if p99 else ""
        met = "met" if ratio["after"] >= goal else "**missed**"
        lines.append(
            f"| {what} ({unit}) | {rate['raw']:,} | {rate['before']:,} | {rate['after']:,} | {ratio['before']:.2f} | "
            f"**{ratio['after']:.2f}** | {ratio['after_over_before']:.2f} | {AT_FILING[name]} | ≥ {goal} ({met}) | "
            f"{p99_text} | {' / '.join(str(round(row['median_server_cpu_us_per_item'][v], 2)) for v in ('raw', 'before', 'after'))} | "
            f"{row['median_cpu_ratio']['before']:.2f}, {row['median_cpu_ratio']['after']:.2f} |")
    lines += ["", "Rates are requests, replies or deliveries per second (medians). *CPU ratio* = the raw "
              "baseline's server CPU time per item / this variant's (warm-up included), per round, median: "
              "higher is better, and it equals the rate ratio when the server is the bottleneck; it stays "
              "meaningful when the load generator is (fan-out: one Python process reading 500 sockets) or when "
              "other work on the machine starves it."]
    fanout = data["rows"].get("socket_fanout")
    if fanout is not None:
        used = sorted({r.get("generator", "python") for rs in fanout["runs"].values() for r in rs})
        lines += ["", "Socket fan-out load generator: " + ", ".join(
            {"c": "bench/fanout.c (C, one epoll loop)", "python": "bench/loadgen.py fan_out (Python)"}.get(g, g)
            for g in used) + "." + (f" Open loop: {data['fanout_rate']:g} says a second on a fixed schedule "
                                     "(not the row's 2 in flight)." if data.get("fanout_rate") else "")]
    lines += ["", "Per round (after / raw): " + "; ".join(
        f"{name} {data['rows'][name]['ratio_per_round']['after']}" for name in ROWS if name in data["rows"]), ""]
    if PROFILES.exists():
        lines += ["", PROFILES.read_text()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default="491328c^", help="commit measured as 'before'")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--only", choices=list(ROWS), action="append")
    parser.add_argument("--out", default=str(RESULTS / "issue14_rows"))
    parser.add_argument("--window", type=int, default=2, help="fan-out: says in flight")
    parser.add_argument("--fanout-generator", choices=("c", "python"), default="c",
                        help="socket fan-out load generator: bench/fanout.c (default; the Python one when no C "
                             "compiler is found) or bench/loadgen.py's fan_out")
    parser.add_argument("--fanout-rate", type=float, default=0, metavar="SAYS_PER_S",
                        help="socket fan-out (C generator): open loop, this many says a second on a fixed "
                             "schedule instead of --window in flight (0: closed loop, the row as defined)")
    parser.add_argument("--render", metavar="JSON", help="only rewrite the markdown of a recorded run")
    options = parser.parse_args()
    if options.render:
        data = json.loads(Path(options.render).read_text())
        Path(options.render).with_suffix(".md").write_text(markdown(data))
        return
    WINDOW.update(socket=options.window, websocket=options.window)
    FANOUT_GENERATOR[0] = options.fanout_generator
    FANOUT_RATE[0] = options.fanout_rate
    if options.fanout_rate and options.fanout_generator != "c":
        parser.error("--fanout-rate needs --fanout-generator c")
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # bench/loadgen.py runs in this process
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    before = export(options.before)
    sha = lambda ref: subprocess.run(["git", "-C", str(REPO), "rev-parse", ref], capture_output=True,  # noqa: E731
                                     text=True, check=True).stdout.strip()
    data: dict = {
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "before_commit": options.before, "before_sha": sha(options.before), "after_sha": sha("HEAD"),
        "rounds": options.rounds, "seconds": options.seconds,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "pinning": "servers on CPU 0, load generators on CPU 1 (taskset)"},
        "goals_after_over_raw": {k: v[2] for k, v in ROWS.items()},
        "fanout_generator": options.fanout_generator, "fanout_rate": options.fanout_rate,
        "rows": {},
    }
    out = Path(options.out)
    for name in options.only or list(ROWS):
        data["rows"][name] = run_row(name, before, options.seconds, options.rounds)
        print(name, json.dumps(data["rows"][name]["median_ratio"]), flush=True)
    data["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    write_json_and_markdown(out, data, markdown(data))


if __name__ == "__main__":
    main()
