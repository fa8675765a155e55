"""What one action request carries through the processor (``data`` in actions).

A leaf module, so the public package (``ahtwist.ActionData``) and the
transports can name the type without importing the processor or the node.
"""

import time
from typing import TYPE_CHECKING, Any

from ahtwist.actions.action import Action

if TYPE_CHECKING:
    from ahtwist.connection import Connection


class ActionData:
    """What ``run`` and middleware receive, and what the transport renders.

    ``response`` is the reply (a dict; its keys are the reply's keys).  Set
    ``to_process = False`` in a pre-processor to skip ``run`` without error,
    ``to_render = False`` to answer yourself (``connection.send_file``...).
    ``node`` is the process's :class:`~ahtwist.node.Node` (ActionHero's
    ``api``), typed ``Any`` so this module stays a leaf.
    """

    __slots__ = (
        "node",
        "connection",
        "params",
        "raw_params",
        "response",
        "to_process",
        "to_render",
        "action",
        "action_template",
        "message_count",
        "message_id",
        "missing_params",
        "validator_errors",
        "action_status",
        "duration",
        "error",
        "started_at",
        "validated",
    )

    def __init__(
        self,
        node: Any,
        connection: "Connection",
        params: dict[str, Any],
        message_id: Any,
        message_count: int,
    ) -> None:
        self.node = node
        self.connection = connection
        self.raw_params = params
        self.params = params
        self.response: Any = {}
        self.to_process = True
        self.to_render = True
        self.action = params.get("action")
        self.action_template: Action | None = None
        self.message_count = message_count
        self.message_id = message_id
        self.missing_params: list[str] = []
        self.validator_errors: list[Any] = []
        self.action_status: str | None = None
        self.duration = 0
        self.error: Any = None
        self.started_at = time.monotonic()
        self.validated = False

    def received_params(self, post_variables: frozenset[str], scrub: bool) -> dict[str, Any]:
        """Web ``receivedParams``: processed params (or raw ones when processing
        stopped before validation) filtered to the post variables."""
        params = self.params if self.validated else self.raw_params
        if not scrub:
            return dict(params)
        return {k: v for k, v in params.items() if k in post_variables}
