"""Instructions per action request, with and without metrics, under callgrind.

The metrics (docs/metrics.md) are read at scrape time from counters the code
keeps anyway; what a request pays is the processor's per-action bookkeeping
(count, outcome, latency bucket).  This measures that cost in instructions,
which a shared, noisy machine does not disturb: each configuration runs the
same driver under ``valgrind --tool=callgrind`` twice, with ``--small`` and
``--large`` requests, and the difference divided by the difference in requests
is the cost of one request (start-up and warm-up cancel out).

    .venv/bin/python bench/metrics_cost.py [--checkout DIR] [--transport http]

``--checkout DIR`` adds a baseline: the same driver on the code of another
checkout (e.g. ``git archive main | tar -x -C /tmp/base``), with the same
config files (a key it does not know is a warning there).  Configurations:
``metrics off`` (``[metrics] enabled = false``) and ``metrics on`` (``enabled =
true``); ``--repeat N`` runs them all N times, interleaved, and the
increases compare the lowest counts.  PYTHONHASHSEED=0 keeps runs repeatable.  Writes
bench/results/metrics_cost.json (``--no-write``: print only).

The inner driver (``--inner N``) feeds N complete requests to the real
protocol objects of a service built like bench/cpu_per_request.py does, after
200 requests of warm-up, with ``time.time`` and ``time.monotonic`` replaced by
a clock that advances one microsecond per call (otherwise wall time, which
valgrind stretches fifty-fold and a busy machine more, changes what is
formatted and counted; every action then takes under a millisecond, as this
one does without valgrind), and the garbage collector off during the
measured requests (a full collection falling into one run and not the other
moves the result by thousands of instructions per request).
"""

import argparse
import gc
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: the two configurations; the baseline runs with the first (a key it does not
#: know is only a warning), so all three differ in nothing else
METRICS_OFF = "[metrics]\nenabled = false\n"
METRICS_ON = "[metrics]\nenabled = true\n"


def inner(options: argparse.Namespace) -> None:
    """Build the service, warm up, run ``options.inner`` requests on one transport."""
    # Wall time leaks into the instruction count (timestamps formatted once a
    # second, durations that round to more digits under valgrind's slowdown):
    # a clock that advances 1 microsecond a call makes runs repeatable.
    ticks = itertools.count()
    time.time = lambda: 1_800_000_000 + next(ticks) / 1e6
    time.monotonic = lambda: 1_000 + next(ticks) / 1e6
    sys.path.insert(0, options.checkout or str(ROOT))
    from twisted.internet.task import Clock
    from twisted.logger import globalLogBeginner

    from ahtwist.config import Overrides, load_config
    from ahtwist.logs import LineLogObserver
    from ahtwist.tap import build_service
    from bench.cpu_per_request import (
        HTTP_REQUEST,
        SOCKET_REQUEST,
        WS_REQUEST,
        WS_UPGRADE,
        connect,
        services,
    )

    devnull = open(os.devnull, "w")  # noqa: SIM115 -- for the life of the process
    globalLogBeginner.beginLoggingTo(
        [LineLogObserver(devnull, clock=Clock())], discardBuffer=True, redirectStandardIO=False
    )
    config = load_config(
        options.config,
        environ={},
        overrides=Overrides(web=("tcp:0:interface=127.0.0.1",), socket=("tcp:0:interface=127.0.0.1",)),
    )
    service = build_service(config, Clock())
    site = next(s.site for s in services(service) if hasattr(s, "site"))
    if options.transport == "http":
        protocol, transport = connect(site)
        request, marker = HTTP_REQUEST, b"HTTP/1.1 200"
    elif options.transport == "socket":
        factory = next(s.factory for s in services(service) if getattr(s, "kind", None) == "socket")
        protocol, transport = connect(factory)
        request, marker = SOCKET_REQUEST, b'"randomNumber"'
    else:
        channel, transport = connect(site)
        channel.dataReceived(WS_UPGRADE)
        protocol = transport.protocol
        request, marker = WS_REQUEST, b'"randomNumber"'
    for _ in range(200):
        protocol.dataReceived(request)
    transport.clear()
    # a full collection lands in one run's window and not in the other's
    # (millions of instructions): none during the measured requests
    gc.collect()
    gc.disable()
    for _ in range(options.inner):
        protocol.dataReceived(request)
    if transport.value().count(marker) != options.inner:
        raise SystemExit("not every request was answered")


def instructions(checkout: str | None, config: str | None, transport: str, n: int) -> int:
    """Instructions callgrind counts for a whole inner run of ``n`` requests."""
    cmd = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, str(Path(__file__).resolve()), "--inner", str(n), "--transport", transport,
    ]
    if checkout:
        cmd += ["--checkout", checkout]
    if config:
        cmd += ["--config", config]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    match = re.search(r"Collected : (\d+)", done.stderr)
    if match is None:
        raise SystemExit(f"no instruction count in callgrind's output:\n{done.stderr[-2000:]}")
    return int(match.group(1))


def per_request(checkout: str | None, config: str | None, transport: str, small: int, large: int) -> float:
    low = instructions(checkout, config, transport, small)
    high = instructions(checkout, config, transport, large)
    return (high - low) / (large - small)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inner", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--config", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--checkout", default=None, help="also measure this checkout's code (the baseline)")
    parser.add_argument("--transport", action="append", choices=["http", "socket", "websocket"])
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=1, help="run every configuration this many times (interleaved)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/results alone")
    options = parser.parse_args()
    if options.inner is not None:
        inner(options)
        return
    transports = options.transport or ["http"]
    files = []
    for text in (METRICS_OFF, METRICS_ON):
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write(text)
        files.append(f.name)
    off, on = files
    runs: list[tuple[str, str | None, str | None]] = []
    for _ in range(options.repeat):
        if options.checkout:
            runs.append(("baseline", str(Path(options.checkout).resolve()), off))
        runs += [("metrics off", None, off), ("metrics on", None, on)]
    results: dict[str, Any] = {}
    try:
        for transport in transports:
            for name, checkout, config in runs:
                cost = per_request(checkout, config, transport, options.small, options.large)
                results.setdefault(transport, {}).setdefault(name, []).append(round(cost))
                print(f"{transport:9} {name:12} {cost:10.0f} instructions/request", flush=True)
    finally:
        for name in files:
            os.unlink(name)
    for by_run in results.values():
        base = by_run.get("baseline")
        if base:
            low = min(base)
            by_run["increase_off_pct"] = round((min(by_run["metrics off"]) - low) / low * 100, 2)
            by_run["increase_on_pct"] = round((min(by_run["metrics on"]) - low) / low * 100, 2)
    out = {"requests": [options.small, options.large], "instructions_per_request": results}
    print(json.dumps(out, indent=1))
    if not options.no_write:
        (HERE / "results" / "metrics_cost.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
