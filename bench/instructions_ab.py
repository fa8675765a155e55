"""Instructions per request, two checkouts, counted by callgrind (a script, not a test).

Wall-clock numbers on this shared 2-core machine move by 10-30% with whatever
else runs; instruction counts do not: ``valgrind --tool=callgrind`` counts the
same total for the same binary, inputs and environment whatever the other
core is doing.  For each checkout and each path (HTTP, socket, websocket) this
runs bench/cpu_per_request.py under callgrind twice, with ``--requests`` SMALL
and LARGE, and reports ``(total(LARGE) - total(SMALL)) / (LARGE - SMALL)``:
the start-up (imports, building the service, the websocket upgrade) cancels
out and what is left is the cost of one request, action log line included
(the production log observer writes to /dev/null).  ``PYTHONHASHSEED=0``
keeps dict and set layouts the same from run to run.

    .venv/bin/python bench/instructions_ab.py --base /path/to/old/checkout [--head .] [--name NAME]

Instructions are not seconds (a cache miss costs more than an add), but a
change that adds work per request shows up here whatever the machine load.
Writes bench/results/NAME.json (default ``instructions_ab``).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PATHS = ("http", "socket", "websocket")
COLLECTED = re.compile(rb"Collected : (\d+)")


def git_head(checkout: Path) -> str:
    done = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip() or "?"


def instructions(checkout: Path, path: str, requests: int) -> int:
    """Instructions of one whole run of cpu_per_request.py (``requests`` on ``path``)."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out",
             sys.executable, str(HERE / "cpu_per_request.py"), "--checkout", str(checkout),
             "--requests", str(requests), "--rounds", "1", "--only", path, "--no-write"],
            capture_output=True, env=env, check=False,
        )
    found = COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"callgrind run failed ({checkout}, {path}):\n{done.stderr.decode()[-2000:]}")
    return int(found.group(1))


def per_request(checkout: Path, path: str, small: int, large: int) -> int:
    return round((instructions(checkout, path, large) - instructions(checkout, path, small)) / (large - small))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, type=Path, help="the checkout before the change")
    parser.add_argument("--head", default=HERE.parent, type=Path, help="the checkout after (default: this one)")
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--large", type=int, default=2500)
    parser.add_argument("--name", default="instructions_ab")
    options = parser.parse_args()
    base, head = options.base.resolve(), options.head.resolve()
    out: dict = {
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "method": f"callgrind instructions, (run of {options.large} - run of {options.small}) / "
                  f"{options.large - options.small}, PYTHONHASHSEED=0, bench/cpu_per_request.py --only PATH",
        "python": sys.version.split()[0],
        "base": {"checkout": str(base), "commit": git_head(base)},
        "head": {"checkout": str(head), "commit": git_head(head)},
        "instructions_per_request": {},
    }
    for path in PATHS:
        before = per_request(base, path, options.small, options.large)
        after = per_request(head, path, options.small, options.large)
        out["instructions_per_request"][path] = {
            "base": before, "head": after, "head_vs_base": round(after / before, 4),
        }
        print(f"{path:10} base {before:>9,}  head {after:>9,}  head/base {after / before:.4f}", flush=True)
    (HERE / "results" / f"{options.name}.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
