"""memoryProbe: what the process holds, for bench/memory_limits.py (not shipped).

Loaded only by that benchmark (``general.paths.actions``).  It answers the
question the benchmark asks after clients went away -- is memory still held
by live Python objects (a leak) or only by the C allocator (freed but not
returned to the OS)?  -- with gc object counts by type, tracemalloc's total
(when started with PYTHONTRACEMALLOC) and, with ``trim=1``, glibc's
``malloc_trim(0)`` (which hands freed arenas back to the OS).
"""

import ctypes
import gc
import tracemalloc
from collections import Counter

from ahtwist import Action, Input


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _details(node, connection):
    """Why a connection is still here: its transport's state."""
    protocol = connection.transport
    transport = getattr(protocol, "transport", None)
    meter = getattr(protocol, "meter", None)
    return {
        "type": connection.type,
        "messages": connection.message_count,
        "pending": connection.pending_actions,
        "state": getattr(protocol, "state", None),
        "reading": transport in node.reactor.getReaders() if transport is not None else None,
        "writing": transport in node.reactor.getWriters() if transport is not None else None,
        "meterPaused": getattr(meter, "paused", None),
        "unsentKiB": (len(getattr(transport, "dataBuffer", b"")) + getattr(transport, "_tempDataLen", 0)) // 1024,
        "producerPaused": getattr(transport, "producerPaused", None),
    }


class MemoryProbe(Action):
    name = "memoryProbe"
    description = "benchmark probe: gc counts, tracemalloc, malloc_trim"
    inputs = {"trim": Input(default="0")}

    def run(self, data):
        gc.collect()
        counts = Counter(type(o).__name__ for o in gc.get_objects())
        before = _rss_kib()
        trimmed = None
        if str(data.params["trim"]) == "1":
            trimmed = ctypes.CDLL("libc.so.6").malloc_trim(0)
        node = data.node
        data.response.update(
            {
                "rssKiB": before,
                "rssAfterTrimKiB": _rss_kib(),
                "mallocTrim": trimmed,
                "gcObjects": sum(counts.values()),
                "topTypes": dict(counts.most_common(12)),
                "tracedKiB": tracemalloc.get_traced_memory()[0] // 1024 if tracemalloc.is_tracing() else None,
                "connections": len(node.connections),
                "connectionDetails": [_details(node, c) for c in list(node.connections.values())[:5]],
                "memoryTrims": getattr(getattr(getattr(node, "limits", None), "memory", None), "trims", None),
                # in flight besides this probe (older versions had no counter)
                "inFlight": getattr(node.processor, "in_flight", 1) - 1,
            }
        )
