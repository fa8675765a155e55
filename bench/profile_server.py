"""Profile the ahtwist web server in-process under load (cProfile).

Starts the service on a free port, lets wrk hammer a path for a few seconds,
stops, and prints the top functions by own time.  A tool for finding hot
spots, not a benchmark.

    .venv/bin/python bench/profile_server.py [/api/randomNumber] [seconds]
    .venv/bin/python bench/profile_server.py churn [seconds]   (websocket connect/close, bench/scale.py)
    .venv/bin/python bench/profile_server.py say [says] [members]  (say to a websocket room, bench/scale.py;
                                                                    profiled from the first say on)
"""

import cProfile
import pstats
import resource
import subprocess
import sys
import threading

from common import free_port, pinned
from twisted.internet import reactor

from ahtwist.config import Overrides, load_config
from ahtwist.tap import build_service


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else "/api/randomNumber"
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # say: 10,000 websockets
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    port = free_port()
    config = load_config(None, overrides=Overrides(web=(f"tcp:{port}:interface=127.0.0.1",), socket=("none",)))
    service = build_service(config, reactor)
    service.startService()
    profiler = cProfile.Profile()

    def load() -> None:
        if path == "say":
            command = [sys.executable, "bench/scale.py", "--say-port", str(port), "--says", str(seconds),
                       "--connections", sys.argv[3] if len(sys.argv) > 3 else "10000"]
            crowd = subprocess.Popen(pinned(command, 1), stdout=subprocess.PIPE, text=True)
            assert crowd.stdout.readline().strip() == "joined"
            reactor.callFromThread(profiler.enable)
            print(crowd.stdout.read())
            crowd.wait()
        elif path == "churn":
            command = [sys.executable, "bench/scale.py", "--churn-port", str(port), "--churn-seconds", str(seconds)]
            print(subprocess.run(pinned(command, 1), capture_output=True, text=True).stdout)
        else:
            subprocess.run(pinned(["wrk", "-t2", "-c50", f"-d{seconds}s", f"http://127.0.0.1:{port}{path}"], 1),
                           capture_output=True)
        reactor.callFromThread(reactor.stop)

    if path == "say":
        reactor.callLater(0.5, lambda: threading.Thread(target=load).start())
    else:
        reactor.callLater(0.5, lambda: (profiler.enable(), threading.Thread(target=load).start()))
    reactor.run()
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(40)


if __name__ == "__main__":
    main()
