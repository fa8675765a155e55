"""What the default action log line costs an HTTP request, in instructions (a script, not a test).

Runs bench/cpu_per_request.py's HTTP path (real HTTP parsing, the real
processor, the production LineLogObserver writing to /dev/null) under
``valgrind --tool=callgrind`` with PYTHONHASHSEED=0, with the action line on
and off (off = bench/servers/no_action_log's patch), at two request counts:
the difference between the two counts is the per-request cost with start-up
and imports cancelled out.  Instruction counts do not depend on what else
the shared machine is doing.

    .venv/bin/python bench/log_line_cost.py [--checkout DIR --label before] [--small 1000 --large 3000]

Adds its numbers (under ``--label``, default ``after``) to
bench/results/log_line_cost.json.
"""

import argparse
import json
import os
import re
import runpy
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"


def inner(checkout: str, requests: int, log_line: bool) -> None:
    """The measured process: ``requests`` GET /api/randomNumber, each answered."""
    sys.argv = [sys.argv[0], "--checkout", checkout]
    sys.path.insert(0, str(BENCH))
    import cpu_per_request as cpu  # noqa: PLC0415 -- after --checkout is on sys.argv
    from twisted.internet.task import Clock  # noqa: PLC0415
    from twisted.logger import globalLogBeginner  # noqa: PLC0415

    from ahtwist.config import Overrides, load_config  # noqa: PLC0415
    from ahtwist.logs import LineLogObserver  # noqa: PLC0415
    from ahtwist.tap import build_service  # noqa: PLC0415

    if not log_line:  # bench/servers/no_action_log's patch (the one copy of it)
        runpy.run_path(str(BENCH / "servers" / "no_action_log" / "sitecustomize.py"))
    devnull = open(os.devnull, "w")  # noqa: SIM115 -- for the life of the process
    globalLogBeginner.beginLoggingTo([LineLogObserver(devnull, clock=Clock())], discardBuffer=True,
                                     redirectStandardIO=False)
    config = load_config(None, overrides=Overrides(web=("tcp:0:interface=127.0.0.1",), socket=("none",)))
    service = build_service(config, Clock())
    site = next(s.site for s in cpu.services(service) if hasattr(s, "site"))
    http = cpu.connect(site)
    cpu.per_request(*http, cpu.HTTP_REQUEST, 200, b"HTTP/1.1 200")  # warm caches, first-use paths
    cpu.per_request(*http, cpu.HTTP_REQUEST, requests, b"HTTP/1.1 200")


def instructions(checkout: str, requests: int, log_line: bool) -> int:
    out = Path(tempfile.mkdtemp(prefix="ahtwist-callgrind-")) / "callgrind.out"
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
               "--inner", "--checkout", checkout, "--requests", str(requests),
               "--log-line", "on" if log_line else "off"]
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    text = out.read_text(errors="replace")
    match = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
    out.unlink()
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkout", default=str(BENCH.parent))
    parser.add_argument("--label", default="after")
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=3000)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--log-line", choices=["on", "off"], help=argparse.SUPPRESS)
    options = parser.parse_args()
    checkout = str(Path(options.checkout).resolve())
    if options.inner:
        inner(checkout, options.requests, options.log_line == "on")
        return
    runs = [(log_line, n) for log_line in (True, False) for n in (options.small, options.large)]
    with ThreadPoolExecutor(2) as pool:  # instruction counts do not depend on what runs beside
        counts = dict(zip(runs, pool.map(lambda run: instructions(checkout, run[1], run[0]), runs), strict=True))
    per_request = {
        "with_log_line" if log_line else "without_log_line": round(
            (counts[log_line, options.large] - counts[log_line, options.small]) / (options.large - options.small))
        for log_line in (True, False)
    }
    line = per_request["with_log_line"] - per_request["without_log_line"]
    entry = {
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "checkout": checkout,
        "instructions_per_request": per_request,
        "log_line_instructions": line,
        "log_line_share_of_request": round(line / per_request["with_log_line"], 4),
        "throughput_cost": round(1 - per_request["without_log_line"] / per_request["with_log_line"], 4),
    }
    path = RESULTS / "log_line_cost.json"
    data = json.loads(path.read_text()) if path.exists() else {
        "what": "GET /api/randomNumber in process (bench/cpu_per_request.py's HTTP path), production "
                "LineLogObserver to /dev/null; instructions per request = (I(large) - I(small)) / "
                "(large - small) under callgrind, PYTHONHASHSEED=0; the log line's share is what switching "
                "it off (bench/servers/no_action_log) saves",
    }
    data[options.label] = entry
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps({options.label: entry}, indent=1))


if __name__ == "__main__":
    main()
