"""Shared benchmark plumbing: free ports, pinned server processes, wrk runs, result files."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
VENV_BIN = REPO / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def pinned(cmd: list[str], cpu: int | None) -> list[str]:
    """``cmd`` run on one CPU (``taskset``), when there is more than one."""
    if cpu is not None and os.cpu_count() and os.cpu_count() > 1 and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu), *cmd]
    return cmd


class Server:
    """A server process started for one measurement, stopped by PID.

    It is ready when ``port`` (or every one of ``ports``) accepts connections,
    or -- for servers on port 0 -- when ``port_log`` (a regex with the port as
    group 1) matches its log, or when ``port_file`` holds the port.
    """

    def __init__(
        self,
        cmd: list[str],
        port: int | None = None,
        cpu: int | None = 0,
        env: dict | None = None,
        *,
        ports: list[int] = (),
        port_log: str | None = None,
        port_file: Path | None = None,
        log: Path | None = None,
        cwd: Path = REPO,
        timeout: float = 60,
    ):
        self.log_path = log
        self._log = open(log, "wb") if log is not None else None  # noqa: SIM115 -- closed in stop()
        out = self._log if self._log is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            pinned(cmd, cpu), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
        )
        self.port = port or 0
        try:
            if port_log is not None or port_file is not None:
                self._port_from(port_log, port_file, timeout)
            for each in ([port] if port else []) + list(ports):
                wait_port(each, timeout)
        except BaseException:
            self.stop()
            raise

    def _port_from(self, port_log: str | None, port_file: Path | None, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.port:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.proc.args} did not start:\n{self.log_text()}")
            if port_log is not None:
                match = re.search(port_log, self.log_text())
                self.port = int(match.group(1)) if match else 0
            elif port_file.exists() and port_file.read_text().strip():
                self.port = int(port_file.read_text())
            time.sleep(0.05)

    def log_text(self) -> str:
        return self.log_path.read_text("utf-8", "replace") if self.log_path else ""

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        """User + system CPU time the process used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def twistd(port: int, *args: str) -> list[str]:
    return [str(VENV_BIN / "twistd"), "-n", "--pidfile=", "ahtwist",
            "--web", f"tcp:{port}:interface=127.0.0.1", *args]


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(url: str, connections: int = 50, seconds: int = 10, threads: int = 2, cpu: int | None = 1,
        script: str | None = None) -> dict:
    """Run wrk and return req/s and latency percentiles (ms)."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(pinned(cmd + [url], cpu), capture_output=True, text=True, check=True).stdout
    result = {"requests_per_sec": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    m = re.search(r"(\d+) requests in", out)
    result["requests"] = int(m.group(1)) if m else None
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M)
        result[f"p{pct}_ms"] = round(_ms(m.group(1)), 3) if m else None
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    result["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors:.*", out)
    result["socket_errors"] = m.group(0) if m else ""
    return result


def write_result(name: str, data: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    data = {"recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), **data}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def write_json_and_markdown(out: Path, data: dict, text: str) -> None:
    """``out``.json (the data) and ``out``.md (``text``), side by side."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    out.with_suffix(".md").write_text(text)
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0],
            "note": "shared 2-core machine: compare ratios within one run"}
