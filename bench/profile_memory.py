"""Where an idle connection's memory goes (tracemalloc): a tool, not a benchmark.

Starts the service in this process, opens N idle websocket (or TCP)
clients from a load-generator process, and prints the Python allocations
added per connection, grouped by source file, plus RSS per connection.

    .venv/bin/python bench/profile_memory.py [websocket|tcp] [N] [lines]

``lines`` groups the allocations by source line instead of by file.
"""

import re
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from twisted.internet import reactor  # noqa: E402

from ahtwist.config import Overrides, load_config  # noqa: E402
from ahtwist.tap import build_service  # noqa: E402
from bench.common import free_port  # noqa: E402


def rss_kib() -> int:
    return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else "websocket"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    by_line = len(sys.argv) > 3 and sys.argv[3] == "lines"
    web, sock = free_port(), free_port()
    config = load_config(None, overrides=Overrides(
        web=(f"tcp:{web}:interface=127.0.0.1:backlog=1024",),
        socket=(f"tcp:{sock}:interface=127.0.0.1:backlog=1024",),
    ))
    service = build_service(config, reactor)
    service.startService()
    tracemalloc.start(1)
    result: dict = {}

    def load() -> None:
        if kind == "websocket":
            command = [sys.executable, str(HERE / "websocket_load.py"), "idle", str(web), "--clients", str(count)]
        else:
            command = [sys.executable, "-c", (
                "import sys; sys.path.insert(0, %r); from bench.loadgen import idle_clients; "
                "s = idle_clients(%d, %d); print('ready', flush=True); sys.stdin.read()"
            ) % (str(HERE.parent), sock, count)]
        before = reactor_call(lambda: (tracemalloc.take_snapshot(), rss_kib()))
        client = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert client.stdout.readline().strip() == "ready"
        import time

        time.sleep(2)
        after = reactor_call(lambda: (tracemalloc.take_snapshot(), rss_kib()))
        result.update(before=before, after=after)
        client.stdin.close()
        client.wait()
        reactor.callFromThread(reactor.stop)

    def reactor_call(fn):
        done = threading.Event()
        box = []
        reactor.callFromThread(lambda: (box.append(fn()), done.set()))
        done.wait()
        return box[0]

    reactor.callLater(0.5, lambda: threading.Thread(target=load).start())
    reactor.run()
    (snap0, rss0), (snap1, rss1) = result["before"], result["after"]
    stats = snap1.compare_to(snap0, "lineno" if by_line else "filename")
    total = sum(s.size_diff for s in stats)
    print(f"{count} idle {kind} connections: RSS +{(rss1 - rss0) / count:.2f} KiB each, "
          f"Python allocations +{total / 1024 / count:.2f} KiB each (tracemalloc adds its own overhead to RSS)")
    for stat in stats[: 40 if by_line else 15]:
        frame = stat.traceback[0]
        where = frame.filename.split("site-packages/")[-1] + (f":{frame.lineno}" if by_line else "")
        print(f"{stat.size_diff / count:9.0f} B/conn {stat.count_diff / count:6.1f} blocks/conn  {where}")


if __name__ == "__main__":
    main()
