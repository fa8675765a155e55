"""Profile the ahtwist web server in-process under load (cProfile).

Starts the service on a free port (logging through the observer twistd
ahtwist installs, to /dev/null), lets wrk hammer a path for a few seconds,
stops, and prints the top functions by own time.  A tool for finding hot
spots, not a benchmark.

    .venv/bin/python bench/profile_server.py [/api/randomNumber] [seconds]
    .venv/bin/python bench/profile_server.py churn [seconds]   (websocket connect/close, bench/scale.py)
    .venv/bin/python bench/profile_server.py socket-fanout [seconds]   (500 TCP members, 2 says in flight,
                                                                        bench/fanout.c; without a C compiler
                                                                        bench/loadgen.py's fan_out)
    .venv/bin/python bench/profile_server.py socket-pipelined [seconds]   (50 TCP clients x 16 in flight)
    .venv/bin/python bench/profile_server.py websocket [seconds]   (50 websocket clients x 1 randomNumber)
    .venv/bin/python bench/profile_server.py say [says] [members]  (say to a websocket room, bench/scale.py;
                                                                    profiled from the first say on)
"""

import cProfile
import os
import pstats
import resource
import subprocess
import sys
import threading
from pathlib import Path

from common import free_port, pinned
from twisted.internet import reactor
from twisted.logger import globalLogBeginner

from ahtwist.config import Overrides, load_config
from ahtwist.logs import LineLogObserver
from ahtwist.tap import build_service

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else "/api/randomNumber"
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # say: 10,000 websockets
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    port = free_port()
    # the log observer twistd ahtwist installs, writing to /dev/null
    devnull = open(os.devnull, "w")  # noqa: SIM115 -- for the life of the process
    globalLogBeginner.beginLoggingTo([LineLogObserver(devnull, clock=reactor)], redirectStandardIO=False)
    tcp = f"tcp:{port}:interface=127.0.0.1:backlog=4096"
    on_socket = path.startswith("socket-")
    config = load_config(None, overrides=Overrides(web=("none",) if on_socket else (tcp,),
                                                   socket=(tcp,) if on_socket else ("none",)))
    service = build_service(config, reactor)
    service.startService()
    profiler = cProfile.Profile()

    def load() -> None:
        if on_socket:
            call = ("fan_out_c({port}, 500, 2, {seconds}, 1)" if path == "socket-fanout"
                    else "request_reply({port}, 50, 16, {seconds}, 1)").format(port=port, seconds=seconds)
            command = [sys.executable, "-c", f"from bench import loadgen; print(loadgen.{call})"]
            print(subprocess.run(pinned(command, 1), capture_output=True, text=True, cwd=REPO).stdout)
        elif path == "websocket":
            command = [sys.executable, "bench/websocket_load.py", "rtt", str(port), "--seconds", str(seconds)]
            print(subprocess.run(pinned(command, 1), capture_output=True, text=True, cwd=REPO).stdout)
        elif path == "say":
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
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(40)
    print("own time by where it is spent:")
    for name, share in shares(stats).items():
        print(f"  {share:6.1%}  {name}")


#: (label, test on a function's file name and name), first match wins
PLACES = (
    ("system calls: socket send/recv", lambda f, n: f == "~" and any(w in n for w in ("'send'", "'recv'", "sendmsg"))),
    ("system calls: epoll wait (idle)", lambda f, n: f == "~" and "'poll'" in n),
    ("system calls: epoll register/modify", lambda f, n: f == "~" and any(w in n for w in ("'register'", "'modify'",
                                                                                       "'unregister'"))),
    ("ahtwist", lambda f, n: "/ahtwist/" in f),
    ("twisted", lambda f, n: "/twisted/" in f),
    ("autobahn / txaio", lambda f, n: "/autobahn/" in f or "/txaio/" in f),
    ("other Python and C", lambda f, n: True),
)


def shares(stats: pstats.Stats) -> dict[str, float]:
    """Own time per place, as a share of the total."""
    totals = dict.fromkeys((label for label, _ in PLACES), 0.0)
    for (filename, _, name), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        label = next(label for label, test in PLACES if test(filename, name))
        totals[label] += tottime
    whole = sum(totals.values()) or 1.0
    return {label: t / whole for label, t in sorted(totals.items(), key=lambda x: -x[1])}


if __name__ == "__main__":
    main()
