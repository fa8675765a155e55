"""Profile the ahtwist web server in-process under load (cProfile).

Starts the service on a free port, lets wrk hammer a path for a few seconds,
stops, and prints the top functions by own time.  A tool for finding hot
spots, not a benchmark.

    .venv/bin/python bench/profile_server.py [/api/randomNumber] [seconds]
    .venv/bin/python bench/profile_server.py churn [seconds]   (websocket connect/close, bench/scale.py)
    .venv/bin/python bench/profile_server.py socket-fanout [seconds]   (500 TCP members, 2 says in flight)
    .venv/bin/python bench/profile_server.py socket-pipelined [seconds]   (50 TCP clients x 16 in flight)
"""

import cProfile
import pstats
import subprocess
import sys
import threading
from pathlib import Path

from common import free_port, pinned
from twisted.internet import reactor

from ahtwist.config import Overrides, load_config
from ahtwist.tap import build_service

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else "/api/randomNumber"
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    port = free_port()
    tcp = f"tcp:{port}:interface=127.0.0.1:backlog=4096"
    on_socket = path.startswith("socket-")
    config = load_config(None, overrides=Overrides(web=("none",) if on_socket else (tcp,),
                                                   socket=(tcp,) if on_socket else ("none",)))
    service = build_service(config, reactor)
    service.startService()
    profiler = cProfile.Profile()

    def load() -> None:
        if on_socket:
            call = ("fan_out({port}, 500, 2, {seconds}, 1)" if path == "socket-fanout"
                    else "request_reply({port}, 50, 16, {seconds}, 1)").format(port=port, seconds=seconds)
            command = [sys.executable, "-c", f"from bench import loadgen; print(loadgen.{call})"]
            print(subprocess.run(pinned(command, 1), capture_output=True, text=True, cwd=REPO).stdout)
        elif path == "churn":
            command = [sys.executable, "bench/scale.py", "--churn-port", str(port), "--churn-seconds", str(seconds)]
            print(subprocess.run(pinned(command, 1), capture_output=True, text=True).stdout)
        else:
            subprocess.run(pinned(["wrk", "-t2", "-c50", f"-d{seconds}s", f"http://127.0.0.1:{port}{path}"], 1),
                           capture_output=True)
        reactor.callFromThread(reactor.stop)

    reactor.callLater(0.5, lambda: (profiler.enable(), threading.Thread(target=load).start()))
    reactor.run()
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(40)


if __name__ == "__main__":
    main()
