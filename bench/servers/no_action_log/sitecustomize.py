"""Benchmark-only: switch off the per-action log line (``PYTHONPATH`` = this folder).

Used by bench/websocket_bench.py and bench/log_line_cost.py to attribute the
cost of an action between the transport + processor and the log line (whose
price depends on the log observer in use).  Never on a server's real path.
Every level is made one the processor does not log (its ``logged_levels``),
so the line is neither made nor sent, whichever checkout this runs with.
"""

from ahtwist.actions.processor import ActionProcessor

_init = ActionProcessor.__init__


def _init_without_action_log(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.logged_levels = dict.fromkeys(self.logged_levels)


ActionProcessor.__init__ = _init_without_action_log
