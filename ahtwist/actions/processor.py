"""The action processor: one request through limits, middleware, inputs and run.

Transport-neutral.  A transport builds the raw params and calls
:meth:`ActionProcessor.process`; the returned Deferred fires with the
:class:`ActionData` once the action is complete (synchronously when nothing in
the chain is asynchronous), and the transport renders ``data.response``.
Order and texts follow docs/python-api.md, 'Processing order', exactly.
"""

import time
from inspect import isawaitable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.logger import Logger, LogLevel

from ahtwist import errors
from ahtwist._async import run_now
from ahtwist.actions.action import render_version
from ahtwist.actions.data import ActionData
from ahtwist.actions.inputs import InputValidator
from ahtwist.actions.registry import SAFE_PARAMS, ActionRegistry
from ahtwist.config import General
from ahtwist.counters import FAST_MS, ActionCounts
from ahtwist.encoding import dumps
from ahtwist.errors import ActionError
from ahtwist.logs import RENDERED, sole_text_observer

if TYPE_CHECKING:
    from ahtwist.connection import Connection

__all__ = ["UNKNOWN_ACTION_LABEL", "ActionData", "ActionProcessor"]

log = Logger(namespace="ahtwist.action")  # the namespace is written out in _log
#: the observers of the log's publisher (Twisted's LogPublisher keeps them in
#: this list and adds and removes them in place)
_OBSERVERS: list[Any] = getattr(log.observer, "_observers", [])

_SAFE = frozenset(SAFE_PARAMS)
_LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
    "critical": LogLevel.critical,
}

# action_status values (ActionHero's names); transports map them to codes
UNKNOWN_ACTION = "unknown_action"
MISSING_PARAMS = "missing_params"
VALIDATOR_ERRORS = "validator_errors"
SERVER_ERROR = "server_error"
SHUTTING_DOWN = "server_shutting_down"
TOO_MANY_REQUESTS = "too_many_requests"
SERVER_TOO_BUSY = "server_too_busy"
CONNECTION_GONE = "connection_gone"
UNSUPPORTED_TYPE = "unsupported_server_type"
PRE_PROCESSOR_ERROR = "pre_processor_error"
POST_PROCESSOR_ERROR = "post_processor_error"
ACTION_ERROR = "action_error"
SUCCESS = "success"

#: the name counted for a request naming no registered action (so clients
#: cannot add names to :attr:`ActionProcessor.counts`)
UNKNOWN_ACTION_LABEL = "(unknown)"

#: characters of an action log line kept (the rest is cut, its length said)
MAX_LOG_LINE = 2000


def _log_json(value: Any) -> str:
    """JSON text for the log line; values JSON has no type for (a formatter
    may return any object) are shown by their ``str`` -- logging never fails
    a request."""
    return dumps(value, default=str).decode("utf-8", "replace")


def _forget(result: Any, waiting: set[Any], deferred: Any) -> Any:
    waiting.discard(deferred)
    return result


def _maybe_await(result: Any) -> bool:
    return result is not None and isawaitable(result)


class ActionProcessor:
    """Runs actions for every transport.

    It needs only the registry and the ``general`` settings; ``api`` is
    handed to actions as ``data.node`` and never used here.  Set
    :attr:`stopping` to answer every new action ``the server is shutting
    down``.
    """

    def __init__(
        self, registry: ActionRegistry, general: General, api: Any = None, in_flight_cap: int = 10000
    ) -> None:
        self.api = api
        self.registry = registry
        self.stopping = False
        self.limit = general.simultaneousActions
        #: actions running now on this node, and the most allowed (``limits.maxActionsInFlight``)
        self.in_flight = 0
        self.in_flight_cap = in_flight_cap
        self.scrub = not general.disableParamScrubbing
        self.expose_errors = general.exposeErrors
        self.inputs = InputValidator(self.scrub, tuple(general.missingParamChecks))
        self.filtered = frozenset(general.filteredParams)
        minimum = _LEVELS[general.logLevel]
        #: the action line's level by level name; None for the levels not logged
        self.logged_levels = {name: level if level >= minimum else None for name, level in _LEVELS.items()}
        #: action (each version its own; None: no such action) ->
        #: :class:`~ahtwist.counters.ActionCounts` of its finished requests
        #: (read by the metrics, docs/metrics.md)
        self.counts: dict[Any, ActionCounts] = {}

    def process(
        self,
        connection: "Connection",
        params: dict[str, Any],
        message_id: Any = None,
        message_count: int | None = None,
    ) -> "Deferred[ActionData]":
        """Run the action named by ``params["action"]`` for ``connection``.

        ``params`` is used as the action's working copy: pass a copy when the
        caller keeps the original (socket sticky params).  The Deferred never
        fails: errors are in the returned data.
        """
        result = self.start(connection, params, message_id, message_count)
        # ActionData is a plain class: a cheaper check than against Deferred (an ABC)
        return succeed(result) if isinstance(result, ActionData) else result

    def start(
        self,
        connection: "Connection",
        params: dict[str, Any],
        message_id: Any = None,
        message_count: int | None = None,
    ) -> "ActionData | Deferred[ActionData]":
        """Like :meth:`process`, but an action that finished without waiting
        returns its :class:`ActionData` directly (no Deferred): for transports
        on a hot path."""
        data = ActionData(
            self.api,
            connection,
            params,
            message_id,
            connection.message_count if message_count is None else message_count,
        )
        result = run_now(self._process(data))
        if not isinstance(result, ActionData):  # a Deferred: still running
            # a connection that goes away cancels it
            waiting = connection.waiting
            if waiting is None:
                waiting = connection.waiting = set()
            waiting.add(result)
            result.addBoth(_forget, waiting, result)
        return result

    async def _process(self, data: ActionData) -> ActionData:
        connection = data.connection
        connection.total_actions += 1
        connection.pending_actions += 1
        self.in_flight += 1
        try:
            await self._steps(data)
        except CancelledError:
            self._fail(data, errors.CONNECTION_GONE, CONNECTION_GONE)
        except Exception as e:  # a bug in middleware plumbing; never lose the reply
            log.failure("unexpected error processing action {action}", action=data.action)
            self._fail(data, self._unexpected(e), SERVER_ERROR)
        finally:
            connection.pending_actions -= 1
            self.in_flight -= 1
        data.duration = duration = round((time.monotonic() - data.started_at) * 1000)
        if data.error is not None and isinstance(data.response, dict):
            data.response.setdefault("error", data.error)
        status = data.action_status
        if status is None:
            status = data.action_status = SUCCESS
        # the metrics' bookkeeping (ahtwist.counters.ActionCounts)
        template = data.action_template
        counts = self.counts.get(template)
        if counts is None:
            counts = self.counts[template] = ActionCounts(
                template.name if template is not None and template.name else UNKNOWN_ACTION_LABEL
            )
        if status is SUCCESS and duration < FAST_MS:
            counts.fast[duration] += 1
        else:
            counts.add(status, duration)
        self._log(data)
        return data

    def _fail(self, data: ActionData, error: Any, status: str) -> None:
        data.error = error
        data.action_status = status

    def _unexpected(self, exc: BaseException) -> str:
        if self.expose_errors:
            return str(exc) or type(exc).__name__
        return errors.INTERNAL_ERROR

    async def _steps(self, data: ActionData) -> None:
        connection = data.connection
        params = data.params
        version = params.get("apiVersion")
        template = self.registry.get(data.action, version)
        data.action_template = template
        if self.stopping:
            return self._fail(data, errors.SHUTTING_DOWN, SHUTTING_DOWN)
        if connection.pending_actions > self.limit:
            return self._fail(data, errors.TOO_MANY_PENDING, TOO_MANY_REQUESTS)
        if self.in_flight > self.in_flight_cap:
            return self._fail(data, errors.TOO_BUSY, SERVER_TOO_BUSY)
        if template is None:
            return self._fail(data, errors.UNKNOWN_ACTION, UNKNOWN_ACTION)
        if connection.type in template.blocked_connection_types:
            return self._fail(
                data,
                errors.BLOCKED_CONNECTION_TYPE.format(type=connection.type),
                UNSUPPORTED_TYPE,
            )

        params = dict(params)
        if version is None:
            params["apiVersion"] = render_version(template.version)
        data.params = params
        chain = self.registry.middleware_for(template)

        # pre-processors see every param the client sent
        if chain and not await self._run_middleware(data, chain, "pre_processor", PRE_PROCESSOR_ERROR):
            return None

        if self.scrub:
            inputs = template.inputs
            data.params = {k: v for k, v in data.params.items() if k in inputs or k in _SAFE}
        data.validated = True
        if template.inputs:
            await self.inputs.validate(data, template.inputs, data.params)
        if data.missing_params:
            return self._fail(
                data, errors.MISSING_PARAM.format(param=data.missing_params[0]), MISSING_PARAMS
            )
        if data.validator_errors:
            return self._fail(data, data.validator_errors[0], VALIDATOR_ERRORS)
        if not data.to_process:
            return None

        try:
            result = template.run(data)
            if _maybe_await(result):
                result = await result
        except CancelledError:
            raise
        except ActionError as e:
            return self._fail(data, e.error, ACTION_ERROR)
        except Exception as e:
            log.failure("action {action} raised", action=template.name)
            return self._fail(data, self._unexpected(e), SERVER_ERROR)
        if isinstance(result, ActionError):
            return self._fail(data, result.error, ACTION_ERROR)
        if isinstance(data.response, dict) and "error" in data.response:
            data.action_status = ACTION_ERROR
            return None

        if chain:
            await self._run_middleware(data, chain, "post_processor", POST_PROCESSOR_ERROR)
        return None

    async def _run_middleware(self, data: ActionData, chain: list[Any], hook_name: str, status: str) -> bool:
        """Run one hook of each middleware in order; False (and the error set)
        when one refuses (ActionError) or fails (internal error)."""
        for middleware in chain:
            hook = getattr(middleware, hook_name)
            if hook is None:
                continue
            try:
                result = hook(data)
                if _maybe_await(result):
                    await result
            except CancelledError:
                raise
            except ActionError as e:
                self._fail(data, e.error, status)
                return False
            except Exception as e:
                log.failure("{hook} of middleware {name} failed", hook=hook_name, name=middleware.name)
                self._fail(data, self._unexpected(e), SERVER_ERROR)
                return False
        return True

    def _log(self, data: ActionData) -> None:
        template = data.action_template
        level = self.logged_levels.get(template.log_level if template else "info")
        if level is None:
            return
        params = data.params
        if self.filtered:
            params = {k: "[FILTERED]" if k in self.filtered else v for k, v in params.items()}
        connection = data.connection
        kind = connection.type
        ip = connection.remote_ip
        action = data.action
        duration = data.duration
        error = data.error
        shown = _log_json(params)
        # The line is rendered once, here (str.format on the event would parse
        # the format and convert each field again), and sent as a "{text}"
        # event (RENDERED: ahtwist's observer adds time and system when it
        # writes its buffer) with the structured fields beside it for JSON
        # observers.  The event is what Logger.emit would build, handed
        # straight to the observer: emit() re-validates the level on every call.
        text = (
            f"[ action @ {kind} ] to={ip} action={action} params={shown} duration={duration} "
            f"error={'' if error is None else _log_json(error)}"
        )
        if len(text) > MAX_LOG_LINE:  # a junk line must not become a huge log line
            text = f"{text[:MAX_LOG_LINE]}... ({len(text)} characters)"
            params = {"truncated": True}
        sink = sole_text_observer(_OBSERVERS)
        if sink is not None:
            sink.rendered(level, "ahtwist.action", text)  # no event: nobody else would see it
            return
        log.observer(
            {
                "log_logger": log,
                "log_level": level,
                "log_namespace": "ahtwist.action",
                "log_source": None,
                "log_format": RENDERED,
                "log_time": time.time(),
                "text": text,
                "type": kind,
                "remoteIP": ip,
                "action": action,
                "params": params,
                "duration": duration,
                "error": error,
            }
        )
