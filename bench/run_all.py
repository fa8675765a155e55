"""Every benchmark, one after the other (``make bench``); results in bench/results/.

Benchmarks are scripts, not tests: they measure on this machine and write
their numbers down.  The machine is shared and noisy, so each script measures
ahtwist and its baseline in the same run and reports the ratio.
"""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["http_api.py", "static_files.py", "socket_bench.py", "websocket_bench.py", "cluster_bench.py"]


def main() -> int:
    failed = []
    for script in SCRIPTS + [s for s in sys.argv[1:] if s not in SCRIPTS]:
        print(f"=== {script}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script)], cwd=HERE.parent).returncode != 0:
            failed.append(script)
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
