"""Benchmark-only: switch off the per-action log line (``PYTHONPATH`` = this folder).

Used by bench/websocket_bench.py to attribute the cost of a websocket action
between the transport + processor and the log line (whose price depends on
the log observer in use).  Never on a server's real path.
"""

from ahtwist.actions.processor import ActionProcessor

ActionProcessor._log = lambda self, data: None
