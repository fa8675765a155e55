"""Room history benchmarks (issue 13): a script, not a test.

In one run, on this machine:

1. fan-out with history off and on -- 500 members of ``defaultRoom`` (TCP
   socket, then websocket), one of them keeping ``--window`` says in flight
   (``bench/loadgen.py`` / ``bench/websocket_load.py``), against four servers
   started fresh in turn, ``--rounds`` times, alternating:

   * ``before`` -- the code before room history (``--before``, a git commit,
     exported to a temporary folder and put first on ``PYTHONPATH``);
   * ``off`` -- ``[history] maxMessages = 0`` (offsets still given);
   * ``on`` -- the default history (100 messages a room);
   * ``on_resume`` -- history on and every member joined with ``since``
     (offsets on the wire).

   Measured: deliveries/s and the server's CPU time per delivery; the ratios
   to ``off`` (and ``before``) are taken within each round, then the median.
2. resume of 10,000 missed messages -- ``[history] maxMessages = 10000``:
   10,000 messages said in ``defaultRoom``; then a websocket client and a
   socket client each join with ``since`` offset 0 and time until the 10,000th
   missed message arrived; the server's RSS before the says, after them and
   after the resumes.
3. in process: bytes a stored message really takes (``tracemalloc``),
   against what ``maxTotalBytes`` counts for it;
4. in process, the server's own CPU per delivery: 500 members on in-memory
   transports (the test harnesses: real protocols, no sockets), ``off`` /
   ``on`` / ``on_resume`` alternating ``--rounds`` times -- the cost of the
   code path itself, without the load generator and the kernel (which make
   (1) noisy on a shared machine; TCP writes would make the ratios smaller).

Results: ``bench/results/history.json`` and ``bench/results/history.md``.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from bench import loadgen  # noqa: E402
from bench.common import Server, free_port, pinned, write_json_and_markdown  # noqa: E402

BIN = Path(sys.executable).parent
RESULTS = HERE / "results"
WS_LOAD = [sys.executable, str(HERE / "websocket_load.py")]
CONFIGS = {
    "before": "",
    "off": "[history]\nmaxMessages = 0\n",
    "on": "",
    "on_resume": "",
}
SOCKET_JOIN = {"on_resume": b"roomAdd defaultRoom since\n"}
WS_JOIN = {"on_resume": '{"event":"roomAdd","room":"defaultRoom","since":{}}'}


def start(workdir: Path, name: str, config: str, before: Path | None, cpu: int | None) -> Server:
    """``twistd ahtwist`` with a web and a socket listener on free ports."""
    web, sock = free_port(), free_port()
    path = workdir / f"{name}.toml"
    path.write_text(config)
    env = {"PYTHONPATH": str(before)} if before is not None else {}
    command = [
        str(BIN / "twistd"), "-n", "--pidfile=", "ahtwist", "--config", str(path),
        "--web", f"tcp:{web}:interface=127.0.0.1", "--socket", f"tcp:{sock}:interface=127.0.0.1:backlog=4096",
    ]
    server = Server(command, web, cpu, env, ports=[sock], log=workdir / f"{name}.log", cwd=workdir)
    server.socket_port = sock  # type: ignore[attr-defined]
    return server


def export(commit: str, workdir: Path) -> Path:
    """The package as of ``commit``, in a folder of its own."""
    target = workdir / "before"
    target.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def socket_fan_out(server: Server, name: str, members: int, window: int, seconds: float) -> dict[str, Any]:
    join = SOCKET_JOIN.get(name, b"roomAdd defaultRoom\n")
    before = server.cpu_seconds()
    result = loadgen.fan_out(server.socket_port, members, window, seconds, 2, join=join)  # type: ignore[attr-defined]
    result["server_cpu_us_per_delivery"] = round((server.cpu_seconds() - before) / max(1, result["deliveries"]) * 1e6, 2)
    return result


def ws_fan_out(server: Server, name: str, members: int, window: int, seconds: float, cpu: int | None) -> dict[str, Any]:
    join = WS_JOIN.get(name, '{"event":"roomAdd","room":"defaultRoom"}')
    before = server.cpu_seconds()
    args = ["fanout", str(server.port), "--members", str(members), "--seconds", str(seconds),
            "--window", str(window), "--join", join]
    out = subprocess.run(pinned([*WS_LOAD, *args], cpu), capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["deliveries_per_s"] = result.pop("deliveries_per_sec")
    result["server_cpu_us_per_delivery"] = round((server.cpu_seconds() - before) / max(1, result["deliveries"]) * 1e6, 2)
    return result


def fan_out_rounds(workdir: Path, before: Path, options: Any, cpu: tuple[int | None, int | None]) -> list[dict]:
    rounds = []
    for r in range(options.rounds):
        row: dict[str, Any] = {}
        for transport in ("socket", "websocket"):
            row[transport] = {}
            for name, config in CONFIGS.items():
                server = start(workdir, f"{name}-{r}", config, before if name == "before" else None, cpu[0])
                try:
                    if transport == "socket":
                        result = socket_fan_out(server, name, options.members, options.window, options.seconds)
                    else:
                        result = ws_fan_out(server, name, options.members, options.window, options.seconds, cpu[1])
                finally:
                    server.stop()
                row[transport][name] = result
                print(f"round {r + 1} {transport} {name}: {json.dumps(result)}", flush=True)
        rounds.append(row)
    return rounds


def summarize(rounds: list[dict]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for transport in ("socket", "websocket"):
        summary = {}
        for name in CONFIGS:
            runs = [r[transport][name] for r in rounds]
            summary[name] = {
                "median_deliveries_per_s": statistics.median(x["deliveries_per_s"] for x in runs),
                "median_server_cpu_us_per_delivery": statistics.median(x["server_cpu_us_per_delivery"] for x in runs),
            }
            for base in ("off", "before"):
                if name in (base, "before"):
                    continue
                summary[name][f"throughput_vs_{base}"] = round(statistics.median(
                    r[transport][name]["deliveries_per_s"] / r[transport][base]["deliveries_per_s"] for r in rounds
                ), 3)
                summary[name][f"cpu_per_delivery_vs_{base}"] = round(statistics.median(
                    r[transport][name]["server_cpu_us_per_delivery"] / r[transport][base]["server_cpu_us_per_delivery"]
                    for r in rounds
                ), 3)
        out[transport] = summary
    return out


# --- resume of 10,000 missed messages -------------------------------------------------------


def _lines(sock: socket.socket, until: Any, buffer: bytes = b"") -> tuple[list[bytes], bytes]:
    lines: list[bytes] = []
    while not until(lines):
        data = sock.recv(1 << 20)
        if not data:
            raise RuntimeError("closed")
        buffer += data
        *done, buffer = buffer.split(b"\r\n")
        lines += done
    return lines, buffer


def resume_10k(workdir: Path, cpu: int | None, count: int = 10000) -> dict[str, Any]:
    from bench.websocket_load import open_blocking, split_frames, text_frame

    server = start(workdir, "resume", f"[history]\nmaxMessages = {count}\nmaxAge = 0\n", None, cpu)
    try:
        port = server.socket_port  # type: ignore[attr-defined]
        talker = socket.create_connection(("127.0.0.1", port))
        _lines(talker, lambda lines: len(lines) >= 1)
        talker.sendall(b"roomAdd defaultRoom since\n")
        lines, rest = _lines(talker, lambda lines: len(lines) >= 1)
        epoch = json.loads(lines[0])["data"]["epoch"]
        rss_before = server.rss_kib()
        said = 0
        while said < count:  # in batches, reading our own copies back (no unbounded backlog)
            batch = min(500, count - said)
            talker.sendall(b"".join(b"say defaultRoom message number %d of the missed ones\n" % (said + i) for i in range(batch)))
            said += batch
            _, rest = _lines(talker, lambda lines, n=batch: sum(1 for x in lines if x.startswith(b'{"message"')) >= n, rest)
        rss_said = server.rss_kib()
        out: dict[str, Any] = {"messages": count, "server_rss_kib_before_says": rss_before,
                               "server_rss_kib_after_says": rss_said}
        # websocket
        ws, buffer = open_blocking(server.port)
        ws.setblocking(True)
        t0 = time.perf_counter()
        ws.send(text_frame(b'{"event":"roomAdd","room":"defaultRoom","since":{"offset":0,"epoch":"%s"}}' % epoch.encode()))
        got = 0
        first = None
        last_offset = 0
        in_order = True
        while got < count:
            frames, buffer = split_frames(buffer + ws.recv(1 << 20))
            for frame in frames:
                if frame.startswith(b'{"status"'):
                    first = first or time.perf_counter() - t0
                    assert b'"recovered":true' in frame, frame
                elif frame.startswith(b'{"message"'):
                    got += 1
                    offset = json.loads(frame)["offset"]
                    in_order = in_order and offset == last_offset + 1
                    last_offset = offset
        out["websocket"] = {"reply_ms": round((first or 0) * 1000, 1),
                            "all_missed_ms": round((time.perf_counter() - t0) * 1000, 1),
                            "received": got, "in_order_no_gap": in_order}
        out["server_rss_kib_after_websocket_resume"] = server.rss_kib()
        # socket
        client = socket.create_connection(("127.0.0.1", port))
        _lines(client, lambda lines: len(lines) >= 1)
        t0 = time.perf_counter()
        client.sendall(b"roomAdd defaultRoom since 0 %s\n" % epoch.encode())
        lines, _ = _lines(client, lambda lines: len(lines) >= count + 1)
        elapsed = time.perf_counter() - t0
        offsets = [json.loads(x)["offset"] for x in lines[1:]]
        out["socket"] = {"all_missed_ms": round(elapsed * 1000, 1), "received": len(offsets),
                         "in_order_no_gap": offsets == list(range(1, count + 1))}
        out["server_rss_kib_after_socket_resume"] = server.rss_kib()
        for s in (talker, ws, client):
            s.close()
        return out
    finally:
        server.stop()


def stored_message_bytes(count: int = 20000) -> dict[str, Any]:
    """What ``count`` stored messages take in this process, per message."""
    from ahtwist.backends.history import (
        ENTRY_OVERHEAD,
        HistoryLimits,
        MemoryRoomHistory,
        message_size,
    )
    from ahtwist.backends.memory import MemoryBus
    from ahtwist.testing import ManualClock

    clock = ManualClock()
    history = MemoryRoomHistory(MemoryBus(clock), clock, HistoryLimits(count, 0), 1 << 40)
    sender = "c0ffee00-0000-4000-8000-000000000000"
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for i in range(count):
        # the payload as the RoomService makes it; kept alive by the history only
        payload = {"message": f"message number {i:05d} of the missed one", "room": "defaultRoom",
                   "from": sender, "context": "user", "sentAt": 1795627006000 + i}
        history.publish_say("defaultRoom", payload)
        clock.advance(0)
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return {
        "messages": count,
        "text_chars": len(payload["message"]),
        "bytes_per_message": round(used / count, 1),
        "counted_by_maxTotalBytes": message_size("defaultRoom", payload),
        "entry_overhead_constant": ENTRY_OVERHEAD,
    }


def inprocess_fan_out(rounds: int, says: int = 200, members: int = 500) -> dict[str, Any]:
    """CPU seconds per delivery of the fan-out code path, in this process."""
    import gc

    from ahtwist.socket import SocketFactory
    from ahtwist.testing import make_node
    from ahtwist.testing.socket_client import FakeClient
    from ahtwist.testing.websocket_client import WSHarness

    configs = {"off": "[history]\nmaxMessages = 0\n", "on": "", "on_resume": ""}
    runs: dict[str, dict[str, list[float]]] = {t: {n: [] for n in configs} for t in ("socket", "websocket")}
    for _ in range(rounds):
        for transport in ("socket", "websocket"):
            for name, text in configs.items():
                node = make_node(text)
                clock = node.reactor
                if transport == "socket":
                    factory = SocketFactory(node)
                    clients = [FakeClient(factory, peer=("127.0.0.1", 20000 + i)) for i in range(members)]
                    join = b"roomAdd defaultRoom since\n" if name == "on_resume" else b"roomAdd defaultRoom\n"
                    for c in clients:
                        c.protocol.dataReceived(join)
                    speaker = clients[0].protocol

                    def say(i: int, speaker: Any = speaker) -> None:
                        speaker.dataReceived(b"say defaultRoom message number %d of many\n" % i)
                else:
                    harness = WSHarness(node)
                    clients = [harness.client() for _ in range(members)]
                    join_frame: dict[str, Any] = {"event": "roomAdd", "room": "defaultRoom"}
                    if name == "on_resume":
                        join_frame["since"] = {}
                    for c in clients:
                        c.send(join_frame)
                    ws_speaker = clients[0]

                    def say(i: int, speaker: Any = ws_speaker) -> None:
                        speaker.send({"event": "say", "room": "defaultRoom", "message": f"message number {i} of many"})
                clock.advance(0)
                clock.advance(0)
                delivered = 0
                for c in clients:
                    c.transport.clear()
                gc.collect()
                spent = 0.0
                for batch in range(says // 10):
                    start = time.process_time()
                    for i in range(10):
                        say(batch * 10 + i)
                    clock.advance(0)
                    spent += time.process_time() - start
                    delivered += sum(c.transport.value().count(b'"context":"user"') for c in clients)
                    for c in clients:
                        c.transport.clear()
                assert delivered == says * members, (transport, name, delivered)
                runs[transport][name].append(spent / delivered * 1e6)
    summary: dict[str, Any] = {}
    for transport, by_name in runs.items():
        summary[transport] = {}
        for name, values in by_name.items():
            summary[transport][name] = {"median_cpu_us_per_delivery": round(statistics.median(values), 3)}
            if name != "off":
                summary[transport][name]["vs_off"] = round(statistics.median(
                    v / o for v, o in zip(values, by_name["off"], strict=True)), 3)
    return {"members": members, "says": says, "rounds": rounds, "summary": summary,
            "runs": {t: {n: [round(v, 3) for v in vs] for n, vs in d.items()} for t, d in runs.items()}}


# --- report ------------------------------------------------------------------------------------


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# Room history benchmarks",
        "",
        f"Run {results['started']} .. {results['finished']} by `bench/history_bench.py`. {m['cpu']}, "
        f"{m['cpus']} CPUs, Python {m['python']}; server pinned to CPU 0 and load generator to CPU 1 when "
        f"there are two. Load average before/after: {m['loadavg_before']} / {m['loadavg_after']}. The machine is "
        "shared with other work, so absolute numbers move between runs; ratios are taken within each round "
        "(servers alternate), then the median.",
        "",
        f"## Fan-out: {results['options']['members']} members of one room, {results['options']['window']} says in flight, "
        f"{results['options']['seconds']} s per measurement, {results['options']['rounds']} rounds",
        "",
        "`before`: the code before room history (commit " + results["before_commit"][:12] + "); `off`: "
        "`[history] maxMessages = 0`; `on`: default history; `on_resume`: history on and every member joined "
        "with `since` (offset and epoch in every message).",
        "",
        "| transport | server | deliveries/s (median) | server CPU µs per delivery (median) | throughput vs off | CPU per delivery vs off | throughput vs before | CPU per delivery vs before |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for transport, summary in results["fan_out_summary"].items():
        for name, s in summary.items():
            lines.append(
                f"| {transport} | {name} | {s['median_deliveries_per_s']:,.0f} | {s['median_server_cpu_us_per_delivery']} | "
                f"{s.get('throughput_vs_off', '-')} | {s.get('cpu_per_delivery_vs_off', '-')} | "
                f"{s.get('throughput_vs_before', '-')} | {s.get('cpu_per_delivery_vs_before', '-')} |"
            )
    lines += ["", "Every round (deliveries/s; server CPU µs per delivery):", "",
              "| round | transport | " + " | ".join(CONFIGS) + " |", "|---|---|" + "---|" * len(CONFIGS)]
    for i, r in enumerate(results["fan_out_rounds"], 1):
        for transport in ("socket", "websocket"):
            cells = [f"{r[transport][n]['deliveries_per_s']:,.0f}; {r[transport][n]['server_cpu_us_per_delivery']}" for n in CONFIGS]
            lines.append(f"| {i} | {transport} | " + " | ".join(cells) + " |")
    res = results["resume_10k"]
    lines += [
        "",
        f"## Resume of {res['messages']:,} missed messages",
        "",
        "`[history] maxMessages = 10000`; the messages are said first, then a client joins with `since` offset 0 "
        "of the room's epoch and waits for the last one.",
        "",
        "| client | roomAdd reply after ms | all missed messages after ms | received | in order, no gap |",
        "|---|---|---|---|---|",
        f"| websocket | {res['websocket']['reply_ms']} | {res['websocket']['all_missed_ms']} | {res['websocket']['received']:,} | {res['websocket']['in_order_no_gap']} |",
        f"| socket | - | {res['socket']['all_missed_ms']} | {res['socket']['received']:,} | {res['socket']['in_order_no_gap']} |",
        "",
        "| server RSS (KiB) | before the says | after 10,000 says | after the websocket resume | after the socket resume |",
        "|---|---|---|---|---|",
        f"| | {res['server_rss_kib_before_says']:,} | {res['server_rss_kib_after_says']:,} | "
        f"{res['server_rss_kib_after_websocket_resume']:,} | {res['server_rss_kib_after_socket_resume']:,} |",
        "",
    ]
    inproc = results.get("inprocess_fan_out")
    if inproc:
        lines += [
            f"## The fan-out code path in process: {inproc['members']} members, {inproc['says']} says, "
            f"{inproc['rounds']} rounds",
            "",
            "The server's CPU per delivery on in-memory transports (real protocols, no sockets, no load generator), "
            "the three servers alternating; the ratio is taken per round, then the median.",
            "",
            "| transport | server | CPU µs per delivery (median) | vs off (median of rounds) | every round (µs) |",
            "|---|---|---|---|---|",
        ]
        for transport, by_name in inproc["summary"].items():
            for name, s in by_name.items():
                every = ", ".join(str(v) for v in inproc["runs"][transport][name])
                lines.append(f"| {transport} | {name} | {s['median_cpu_us_per_delivery']} | {s.get('vs_off', '-')} | {every} |")
        lines.append("")
    b = results["stored_message_bytes"]
    lines += [
        "## What a stored message costs (in process, tracemalloc)",
        "",
        f"{b['messages']:,} messages of {b['text_chars']} characters in one room: "
        f"{b['bytes_per_message']} bytes per message measured (its payload dict, strings and the history's "
        f"bookkeeping); `maxTotalBytes` counts {b['counted_by_maxTotalBytes']} for each "
        f"(text + room name + {b['entry_overhead_constant']}).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--window", type=int, default=2)
    parser.add_argument("--before", default="be4abdf", help="git commit of the code before room history")
    parser.add_argument("--out", default=str(RESULTS / "history"))
    parser.add_argument("--render", metavar="JSON", help="only rewrite the markdown of a recorded run")
    parser.add_argument("--inprocess", action="store_true", help="only the in-process fan-out (printed)")
    options = parser.parse_args()
    if options.inprocess:
        print(json.dumps(inprocess_fan_out(options.rounds), indent=1))
        return
    if options.render:
        results = json.loads(Path(options.render).read_text())
        Path(options.render).with_suffix(".md").write_text(markdown(results))
        return
    two = (os.cpu_count() or 1) >= 2
    cpu = (0, 1) if two else (None, None)
    if cpu[1] is not None:
        os.sched_setaffinity(0, {cpu[1]})
    workdir = Path(tempfile.mkdtemp(prefix="ahtwist-history-bench-"))
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", options.before], capture_output=True, text=True,
                            check=True).stdout.strip()
    results: dict[str, Any] = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "loadavg_before": os.getloadavg()},
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "options": {"seconds": options.seconds, "rounds": options.rounds, "members": options.members,
                    "window": options.window},
        "before_commit": commit,
    }
    try:
        before = export(commit, workdir)
        results["stored_message_bytes"] = stored_message_bytes()
        print("stored:", json.dumps(results["stored_message_bytes"]), flush=True)
        results["inprocess_fan_out"] = inprocess_fan_out(options.rounds + 2)
        print("in process:", json.dumps(results["inprocess_fan_out"]["summary"]), flush=True)
        results["resume_10k"] = resume_10k(workdir, cpu[0])
        print("resume:", json.dumps(results["resume_10k"]), flush=True)
        results["fan_out_rounds"] = fan_out_rounds(workdir, before, options, cpu)
        results["fan_out_summary"] = summarize(results["fan_out_rounds"])
        print(json.dumps(results["fan_out_summary"], indent=1), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["machine"]["loadavg_after"] = os.getloadavg()
    results["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    write_json_and_markdown(Path(options.out), results, markdown(results))


if __name__ == "__main__":
    main()
