"""Static files: ahtwist vs twisted.web File, 304 revalidation, memory while
50 clients download a 100 MiB file.

    .venv/bin/python bench/static_files.py [--seconds 10]

Writes bench/results/static_files.json.
"""

import argparse
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from common import PYTHON, Server, free_port, twistd, write_result, wrk

BENCH = Path(__file__).resolve().parent


def make_public() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="ahtwist-bench-"))
    (folder / "index.html").write_bytes((b"<p>" + b"x" * 96 + b"</p>\n") * 50)  # 5,100 bytes
    with open(folder / "big.bin", "wb") as f:
        block = os.urandom(1 << 20)
        for _ in range(100):
            f.write(block)
    return folder


def etag_of(path: Path) -> str:
    st = path.stat()
    return f'W/"{st.st_size:x}-{int(st.st_mtime * 1000):x}"'


def header_script(name: str, value: str) -> str:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(f'wrk.headers["{name}"] = \'{value}\'\n')
    return str(script)


def downloads(port: int, server: Server, clients: int = 50) -> dict:
    """RSS while ``clients`` curl processes download big.bin at once."""
    baseline = server.rss_kib()
    samples = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(server.rss_kib())
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.time()
    procs = [
        subprocess.Popen(["taskset", "-c", "1", "curl", "-s", "-o", "/dev/null", "-w", "%{size_download}",
                          f"http://127.0.0.1:{port}/public/big.bin"], stdout=subprocess.PIPE, text=True)
        for _ in range(clients)
    ]
    sizes = [int(p.communicate()[0] or 0) for p in procs]
    elapsed = time.time() - started
    stop.set()
    sampler.join()
    peak = max(samples) if samples else baseline
    return {
        "clients": clients,
        "file_mib": 100,
        "all_complete": all(s == 100 * (1 << 20) for s in sizes),
        "seconds": round(elapsed, 2),
        "rss_baseline_kib": baseline,
        "rss_peak_kib": peak,
        "rss_growth_per_client_kib": round((peak - baseline) / clients, 1),
        "throughput_mib_s": round(clients * 100 / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    public = make_public()
    etag = etag_of(public / "index.html")
    results: dict = {"benchmark": "GET a 5 KB static file, 50 connections", "file_bytes": (public / "index.html").stat().st_size}

    port = free_port()
    with Server([PYTHON, str(BENCH / "servers" / "twisted_static.py"), str(port), str(public)], port):
        wrk(f"http://127.0.0.1:{port}/index.html", seconds=2)
        results["twisted_web_file"] = wrk(f"http://127.0.0.1:{port}/index.html", seconds=args.seconds)

    port = free_port()
    with Server(twistd(port, "--socket", "none", "--public", str(public)), port) as server:
        url = f"http://127.0.0.1:{port}/public/index.html"
        wrk(url, seconds=2)
        results["ahtwist_200"] = wrk(url, seconds=args.seconds)
        results["ahtwist_304_if_none_match"] = wrk(url, seconds=args.seconds, script=header_script("If-None-Match", etag))
        results["ahtwist_downloads"] = downloads(port, server)

    ratio = results["ahtwist_200"]["requests_per_sec"] / results["twisted_web_file"]["requests_per_sec"]
    results["ahtwist_vs_twisted_file"] = round(ratio, 3)
    results["revalidation_vs_200"] = round(
        results["ahtwist_304_if_none_match"]["requests_per_sec"] / results["ahtwist_200"]["requests_per_sec"], 3
    )
    results["targets"] = {"ratio_vs_twisted_file": 0.8, "revalidation_vs_200": 1.0}
    path = write_result("static_files", results)
    for key in ("twisted_web_file", "ahtwist_200", "ahtwist_304_if_none_match"):
        r = results[key]
        print(f"{key:28s} {r['requests_per_sec']:9.0f} req/s  p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms  non-2xx {r['non_2xx']}")
    print("downloads:", results["ahtwist_downloads"])
    print(f"ratio {ratio:.3f} -> {path}")


if __name__ == "__main__":
    main()
