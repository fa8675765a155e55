"""Socket-server benchmarks (part of ``make bench``): a script, not a test.

In one run, on this machine:

1. request/reply -- 50 TCP clients each with one ``{"action":"randomNumber"}``
   in flight, then 16 pipelined per connection -- against a raw Twisted
   JSON-line echo server (the ceiling, ``bench/raw_echo_server.py``) and
   against ``twistd ahtwist``, alternating, ``--rounds`` times, so the ratio is
   measured under the same conditions;
2. fan-out -- 500 TCP members of one room, one of them saying messages with a
   few in flight: deliveries/s and delivery delay;
3. idle memory -- RSS growth of a fresh server per idle TCP connection with
   2,000 idle clients.

The server runs pinned to CPU 0 (``taskset``), the load generator to CPU 1.
ahtwist runs with its own log observer (what ``twistd ahtwist`` installs)
and, for comparison, with twistd's default text observer.
Results go to ``bench/results/socket.json`` and ``bench/results/socket.md``.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from bench import loadgen  # noqa: E402
from bench.common import Server  # noqa: E402

BIN = Path(sys.executable).parent
RESULTS = HERE / "results"
TWISTD_DEFAULT_LOGGER = "--logger=bench.servers.twistd_default_log.observer"
#: ActionHero 19 on the issue's reference machine, server on one core (issue 4)
ACTIONHERO = {
    "request_reply_50x1_replies_per_s": 7650,
    "request_reply_50x1_p99_ms": 11,
    "request_reply_50x16_replies_per_s": 13600,
    "fan_out_500_deliveries_per_s": 55800,
    "fan_out_500_p99_delay_ms": 42,
    "idle_rss_kib_per_connection": 1.4,
    "raw_twisted_echo_50x1_replies_per_s": 22400,
}


def ahtwist(workdir: Path, cpu: int | None, own_logger: bool, name: str) -> Server:
    args = [str(BIN / "twistd"), "-n", "--pidfile="]
    if not own_logger:
        args.append(TWISTD_DEFAULT_LOGGER)
    args += ["ahtwist", "--web", "none", "--socket", "tcp:0:interface=127.0.0.1:backlog=4096"]
    return Server(
        args, cpu=cpu, cwd=workdir, log=workdir / f"{name}.log",
        env={"PYTHONPATH": str(REPO)},  # bench.servers.* loggers
        port_log=r"socket server listening on 127\.0\.0\.1:(\d+)",
    )


def echo(workdir: Path, cpu: int | None) -> Server:
    port_file = workdir / "echo.port"
    port_file.unlink(missing_ok=True)
    args = [sys.executable, str(HERE / "raw_echo_server.py"), str(port_file)]
    return Server(args, cpu=cpu, cwd=workdir, log=workdir / "echo.log", port_file=port_file)


class Interference:
    """CPU time (in CPUs) used by other processes while a measurement ran:
    the machine is shared, so every result records how busy the rest was."""

    def __init__(self, server: Server) -> None:
        self.server = psutil.Process(server.proc.pid)
        self.me = psutil.Process()

    def __enter__(self) -> "Interference":
        self.started = time.monotonic()
        self.total = _busy(psutil.cpu_times())
        self.ours = _busy(self.server.cpu_times()) + _busy(self.me.cpu_times())
        return self

    def __exit__(self, *exc: object) -> None:
        elapsed = time.monotonic() - self.started
        total = _busy(psutil.cpu_times()) - self.total
        ours = _busy(self.server.cpu_times()) + _busy(self.me.cpu_times()) - self.ours
        self.other_cpus = round(max(0.0, total - ours) / elapsed, 2)


def _busy(times: Any) -> float:
    return times.user + times.system


def measured(server: Server, run: Any) -> dict:
    with Interference(server) as watch:
        result = run()
    result["other_processes_cpus"] = watch.other_cpus
    return result


def request_reply(server: Server, welcome: bool, seconds: float) -> dict:
    port = server.port
    return {
        "50x1": measured(server, lambda: loadgen.request_reply(port, 50, 1, seconds, 2, welcome=welcome)),
        "50x16": measured(server, lambda: loadgen.request_reply(port, 50, 16, seconds, 2, welcome=welcome)),
    }


def idle_rss(workdir: Path, cpu: int | None, count: int) -> dict:
    server = ahtwist(workdir, cpu, True, "idle")
    try:
        warm = loadgen.idle_clients(server.port, 20)
        for s in warm:
            s.close()
        time.sleep(1)
        before = server.rss_kib() * 1024
        socks = loadgen.idle_clients(server.port, count)
        time.sleep(2)
        after = server.rss_kib() * 1024
        for s in socks:
            s.close()
    finally:
        server.stop()
    return {
        "idle_clients": count,
        "rss_before_mib": round(before / 2**20, 2),
        "rss_after_mib": round(after / 2**20, 2),
        "rss_kib_per_connection": round((after - before) / count / 1024, 2),
    }


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import twisted

    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "twisted": twisted.__version__,
        "pinned": shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2,
        "loadavg_before": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--windows", default="2,4,8", help="says in flight, comma-separated")
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--out", default=str(RESULTS / "socket"))
    parser.add_argument("--render", metavar="JSON", help="only rewrite the markdown of a recorded run")
    options = parser.parse_args()
    if options.render:
        results = json.loads(Path(options.render).read_text())
        results["request_reply_summary"] = summarize(results["request_reply_rounds"])
        Path(options.render).with_suffix(".md").write_text(markdown(results))
        return

    two_cpus = (os.cpu_count() or 1) >= 2
    server_cpu, client_cpu = (0, 1) if two_cpus else (None, None)
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})
    workdir = Path(tempfile.mkdtemp(prefix="ahtwist-bench-"))
    results: dict = {"machine": machine(), "started": datetime.datetime.now().isoformat(timespec="seconds")}

    rounds = []
    for r in range(options.rounds):
        round_result = {}
        for name, start, welcome in (
            ("raw_echo", lambda: echo(workdir, server_cpu), False),
            ("ahtwist", lambda: ahtwist(workdir, server_cpu, True, "ahtwist"), True),
            ("ahtwist_default_log", lambda: ahtwist(workdir, server_cpu, False, "ahtwist-default"), True),
        ):
            server = start()
            try:
                round_result[name] = request_reply(server, welcome, options.seconds)
            finally:
                server.stop()
            print(f"round {r + 1} {name}: {json.dumps(round_result[name])}", flush=True)
        for depth in ("50x1", "50x16"):
            ceiling = round_result["raw_echo"][depth]["replies_per_s"]
            for name in ("ahtwist", "ahtwist_default_log"):
                round_result[name][depth]["ratio_to_raw_echo"] = round(
                    round_result[name][depth]["replies_per_s"] / ceiling, 3
                )
        rounds.append(round_result)
    results["request_reply_rounds"] = rounds
    results["request_reply_summary"] = summarize(rounds)

    fan = []
    server = ahtwist(workdir, server_cpu, True, "fanout")
    try:
        for window in [int(w) for w in options.windows.split(",")]:
            result = measured(
                server,
                lambda port=server.port, window=window: loadgen.fan_out(
                    port, options.members, window, options.seconds, 2
                ),
            )
            print(f"fan-out: {json.dumps(result)}", flush=True)
            fan.append(result)
    finally:
        server.stop()
    results["fan_out"] = fan

    results["idle_memory"] = idle_rss(workdir, server_cpu, options.idle)
    print(f"idle: {json.dumps(results['idle_memory'])}", flush=True)
    results["machine"]["loadavg_after"] = os.getloadavg()
    results["actionhero_reference"] = ACTIONHERO
    results["finished"] = datetime.datetime.now().isoformat(timespec="seconds")

    out = Path(options.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(results))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    shutil.rmtree(workdir, ignore_errors=True)


#: a round is "clean" when other processes used less than this many CPUs
#: during both measurements compared
CLEAN = 0.1


def summarize(rounds: list[dict]) -> dict:
    """Medians over all rounds, and the ratio over clean rounds only."""
    summary = {}
    for name in ("raw_echo", "ahtwist", "ahtwist_default_log"):
        for depth in ("50x1", "50x16"):
            runs = [r[name][depth] for r in rounds]
            entry = {
                "replies_per_s_median": round(statistics.median(x["replies_per_s"] for x in runs)),
                "p50_ms_median": round(statistics.median(x["latency_ms_p50"] for x in runs), 3),
                "p99_ms_median": round(statistics.median(x["latency_ms_p99"] for x in runs), 3),
            }
            if name != "raw_echo":
                entry["ratio_to_raw_echo_median"] = round(
                    statistics.median(x["ratio_to_raw_echo"] for x in runs), 3
                )
                clean = [
                    r[name][depth]
                    for r in rounds
                    if r[name][depth].get("other_processes_cpus", 0) < CLEAN
                    and r["raw_echo"][depth].get("other_processes_cpus", 0) < CLEAN
                ]
                entry["clean_rounds"] = len(clean)
                if clean:
                    entry["ratio_to_raw_echo_clean_rounds"] = round(
                        statistics.median(x["ratio_to_raw_echo"] for x in clean), 3
                    )
                    entry["p99_ms_clean_rounds"] = round(
                        statistics.median(x["latency_ms_p99"] for x in clean), 3
                    )
            summary[f"{name}_{depth}"] = entry
    return summary


def markdown(results: dict) -> str:
    m = results["machine"]
    s = results["request_reply_summary"]
    lines = [
        "# Socket server benchmarks",
        "",
        f"Run {results['started']} .. {results['finished']} by `bench/run_all.py`. "
        f"{m['cpu']}, {m['cpus']} CPUs, Python {m['python']}, Twisted {m['twisted']}; "
        f"server pinned to CPU 0 and load generator to CPU 1: {'yes' if m['pinned'] else 'no'}. "
        f"Load average before/after: {m['loadavg_before']} / {m['loadavg_after']}. "
        "The machine is shared with other work, so absolute numbers move between runs; "
        "ratios are measured within one run (raw echo and ahtwist alternate, "
        f"{len(results['request_reply_rounds'])} rounds, medians below). A round is *clean* when other "
        f"processes used less than {CLEAN} CPU during both measurements compared.",
        "",
        "## Request/reply: `{\"action\":\"randomNumber\"}` over TCP",
        "",
        "| server | in flight | replies/s | p50 ms | p99 ms | ratio to raw echo | clean rounds: ratio, p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    labels = {
        "raw_echo": "raw Twisted JSON-line echo (ceiling)",
        "ahtwist": "ahtwist (its own log observer)",
        "ahtwist_default_log": "ahtwist, twistd's default log observer",
    }
    for name, label in labels.items():
        for depth, text in (("50x1", "50 x 1"), ("50x16", "50 x 16")):
            e = s[f"{name}_{depth}"]
            ratio = f"{e['ratio_to_raw_echo_median']:.0%}" if "ratio_to_raw_echo_median" in e else "-"
            if e.get("clean_rounds"):
                clean = (
                    f"{e['ratio_to_raw_echo_clean_rounds']:.0%}, {e['p99_ms_clean_rounds']} "
                    f"({e['clean_rounds']} of {len(results['request_reply_rounds'])})"
                )
            elif "clean_rounds" in e:
                clean = "no clean round"
            else:
                clean = "-"
            lines.append(
                f"| {label} | {text} | {e['replies_per_s_median']:,} | {e['p50_ms_median']} | "
                f"{e['p99_ms_median']} | {ratio} | {clean} |"
            )
    lines += [
        "",
        "Every round (replies/s; in brackets the CPUs other processes used meanwhile):",
        "",
        "| round | in flight | raw echo | ahtwist | ratio | ahtwist, default log | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(results["request_reply_rounds"]):
        for depth, text in (("50x1", "50 x 1"), ("50x16", "50 x 16")):
            e, a, d = r["raw_echo"][depth], r["ahtwist"][depth], r["ahtwist_default_log"][depth]
            lines.append(
                f"| {i + 1} | {text} | {e['replies_per_s']:,} ({e['other_processes_cpus']}) | "
                f"{a['replies_per_s']:,} ({a['other_processes_cpus']}) | {a['ratio_to_raw_echo']:.0%} | "
                f"{d['replies_per_s']:,} ({d['other_processes_cpus']}) | {d['ratio_to_raw_echo']:.0%} |"
            )
    lines += [
        "",
        "## Fan-out: `say` to a room of TCP members",
        "",
        "| members | says in flight | deliveries/s | delay p50 ms | delay p99 ms | other processes (CPUs) |",
        "|---|---|---|---|---|---|",
    ]
    for f in results["fan_out"]:
        lines.append(
            f"| {f['members']} | {f['says_in_flight']} | {f['deliveries_per_s']:,} | "
            f"{f['delay_ms_p50']} | {f['delay_ms_p99']} | {f['other_processes_cpus']} |"
        )
    idle = results["idle_memory"]
    a = results["actionhero_reference"]
    lines += [
        "",
        "## Idle connections",
        "",
        f"{idle['idle_clients']:,} idle TCP clients: RSS {idle['rss_before_mib']} MiB -> "
        f"{idle['rss_after_mib']} MiB, **{idle['rss_kib_per_connection']} KiB per connection**.",
        "",
        "## Reference (issue 4, ActionHero 19 on its reference machine, not re-measured here)",
        "",
        f"50 x 1: {a['request_reply_50x1_replies_per_s']:,}/s (p99 {a['request_reply_50x1_p99_ms']} ms); "
        f"50 x 16: {a['request_reply_50x16_replies_per_s']:,}/s; fan-out 500: "
        f"{a['fan_out_500_deliveries_per_s']:,} deliveries/s (p99 {a['fan_out_500_p99_delay_ms']} ms); "
        f"{a['idle_rss_kib_per_connection']} KiB per idle connection; raw Twisted echo "
        f"{a['raw_twisted_echo_50x1_replies_per_s']:,}/s there.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
