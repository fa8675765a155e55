"""The action processor: one request through limits, middleware, inputs and run.

Transport-neutral.  A transport builds the raw params and calls
:meth:`ActionProcessor.process`; the returned Deferred fires with the
:class:`ActionData` once the action is complete (synchronously when nothing in
the chain is asynchronous), and the transport renders ``data.response``.
Order and texts follow docs/python-api.md, 'Processing order', exactly.
"""

import time
from collections.abc import Awaitable
from inspect import isawaitable
from typing import TYPE_CHECKING, Any

import orjson
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.logger import Logger, LogLevel

from ahtwist import errors
from ahtwist._async import first_step, run_now
from ahtwist.actions.action import Action
from ahtwist.actions.data import ActionData
from ahtwist.actions.inputs import InputValidator
from ahtwist.actions.registry import ActionPlan, ActionRegistry
from ahtwist.config import General
from ahtwist.counters import FAST_MS, ActionCounts
from ahtwist.encoding import COMPACT_OPTION, dumps
from ahtwist.errors import ActionError
from ahtwist.logs import RENDERED, emit_rendered

if TYPE_CHECKING:
    from ahtwist.connection import Connection

__all__ = ["UNKNOWN_ACTION_LABEL", "ActionData", "ActionProcessor"]

log = Logger(namespace="ahtwist.action")  # the namespace is written out in _log
#: the observers of the log's publisher (Twisted's LogPublisher keeps them in
#: this list and adds and removes them in place)
_OBSERVERS: list[Any] = getattr(log.observer, "_observers", [])

_LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
    "critical": LogLevel.critical,
}

#: the action line's ``(namespace, level)`` by level: one tuple each, which
#: the log observer's heads find by identity
LINE_KEYS = {level: ("ahtwist.action", level) for level in _LEVELS.values()}


def logged_line_keys(log_level: str) -> dict[str, tuple[str, LogLevel] | None]:
    """The action line's key (:data:`LINE_KEYS`) by level name when the
    node logs from ``log_level`` up; None for the levels below."""
    minimum = _LEVELS[log_level]
    return {name: LINE_KEYS[level] if level >= minimum else None for name, level in _LEVELS.items()}


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


#: action name -> (apiVersion, the middle of the line of exactly
#: ``{"action": name, "apiVersion": apiVersion}`` params: `` action=<name>
#: params=<their JSON> duration=``), checked by identity of the version; at
#: most MAX_BARE_PARAMS_JSON names (clients choose them)
_BARE_PARAMS_JSON: dict[str, tuple[Any, str]] = {}
MAX_BARE_PARAMS_JSON = 1024
#: what ends the line of a request without an error that took ``n`` ms, by
#: ``n`` (``"<n> error="``), for the short durations nearly every request has
_NO_ERROR_ENDS = tuple(f"{n} error=" for n in range(100))
#: what ``params.get`` gives for a missing key (never a cached version)
_MISSING = object()


def _forget(result: Any, waiting: set[Any], deferred: Any) -> Any:
    waiting.discard(deferred)
    return result


def _maybe_await(result: Any) -> bool:
    return result is not None and isawaitable(result)


def log_action(data: ActionData, key: tuple[str, Any], filtered: Any, duration: int) -> None:
    """The action log line of a finished request, ``key`` its
    ``("ahtwist.action", level)`` (:data:`LINE_KEYS`)."""
    params = data.params
    if filtered:
        params = {k: "[FILTERED]" if k in filtered else v for k, v in params.items()}
    connection = data.connection
    kind = connection.type
    ip = connection.remote_ip
    action: Any = data.action
    error = data.error
    # most requests' params are {"action": <a str>, "apiVersion": <the
    # version>}: the middle of their line (action, params JSON) is made once
    # per action (and version object)
    name: Any = params.get("action")
    version = params.get("apiVersion", _MISSING)  # never a cached version
    bare = False
    cached = None
    if len(params) == 2 and type(name) is str:
        for first in params:  # the key order is the JSON's
            if first == "action":
                bare = True
                cached = _BARE_PARAMS_JSON.get(name)
            break
    if cached is not None and cached[0] is version and action is name:  # the same objects: the same text
        middle = cached[1]
    else:
        try:  # _log_json's first try, without its Python calls
            shown = orjson.dumps(params, default=str, option=COMPACT_OPTION).decode("utf-8", "replace")
        except TypeError:
            shown = _log_json(params)
        middle = f" action={action} params={shown} duration="
        if bare and version is not _MISSING and action is name and len(_BARE_PARAMS_JSON) < MAX_BARE_PARAMS_JSON:
            _BARE_PARAMS_JSON[name] = (version, middle)
    # The line is rendered once, here (str.format on the event would parse
    # the format and convert each field again), and sent as a "{text}"
    # event (RENDERED: ahtwist's observer only puts time and system before
    # it) with the structured fields beside it for JSON
    # observers.  The event is what Logger.emit would build, handed
    # straight to the observer: emit() re-validates the level on every call.
    if error is None and 0 <= duration < 100:  # the commonest end, made once
        text = f"[ action @ {kind} ] to={ip}{middle}{_NO_ERROR_ENDS[duration]}"
    else:
        text = f"[ action @ {kind} ] to={ip}{middle}{duration} error={'' if error is None else _log_json(error)}"
    if len(text) > MAX_LOG_LINE:  # a junk line must not become a huge log line
        text = f"{text[:MAX_LOG_LINE]}... ({len(text)} characters)"
        params = {"truncated": True}
    if emit_rendered(_OBSERVERS, key, text):
        return  # no event: nobody else would see it
    log.observer(
        {
            "log_logger": log,
            "log_level": key[1],
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
        #: the action line's key by level name (None: that level is not logged)
        self.logged_levels = logged_line_keys(general.logLevel)
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
        connection.total_actions += 1
        connection.pending_actions += 1
        self.in_flight += 1
        try:
            rest = self._steps(data)
        except CancelledError:
            rest = self._fail(data, errors.CONNECTION_GONE, CONNECTION_GONE)
        except Exception as e:  # a bug in middleware plumbing; never lose the reply
            log.failure("unexpected error processing action {action}", action=data.action)
            rest = self._fail(data, self._unexpected(e), SERVER_ERROR)
        except BaseException:  # as when every step ran in a coroutine: a failed Deferred
            connection.pending_actions -= 1
            self.in_flight -= 1
            return fail()
        if rest is True or rest is False:  # finished without waiting
            connection.pending_actions -= 1
            self.in_flight -= 1
            try:
                return self._conclude(data)
            except BaseException:
                return fail()
        result = run_now(self._finish_later(data, rest))
        if not isinstance(result, ActionData):  # a Deferred: still running
            # a connection that goes away cancels it
            waiting = connection.waiting
            if waiting is None:
                waiting = connection.waiting = set()
            waiting.add(result)
            result.addBoth(_forget, waiting, result)
        return result

    async def _finish_later(self, data: ActionData, rest: Awaitable[bool]) -> ActionData:
        """The rest of a request whose steps are waiting on something."""
        try:
            await rest
        except CancelledError:
            self._fail(data, errors.CONNECTION_GONE, CONNECTION_GONE)
        except Exception as e:  # a bug in middleware plumbing; never lose the reply
            log.failure("unexpected error processing action {action}", action=data.action)
            self._fail(data, self._unexpected(e), SERVER_ERROR)
        finally:
            data.connection.pending_actions -= 1
            self.in_flight -= 1
        return self._conclude(data)

    def _conclude(self, data: ActionData) -> ActionData:
        """Duration, status, the metrics' bookkeeping and the log line of a
        finished request."""
        elapsed = (time.monotonic() - data.started_at) * 1000
        # round() gives 0 up to 0.5 (ties to even) and costs more than the rest of this line
        data.duration = duration = 0 if elapsed <= 0.5 else round(elapsed)
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
        # the action log line
        key = self.logged_levels.get(template.log_level if template else "info")
        if key is not None:
            log_action(data, key, self.filtered, duration)
        return data

    def _fail(self, data: ActionData, error: Any, status: str) -> bool:
        """Record the request's failure; False (the steps stop here)."""
        data.error = error
        data.action_status = status
        return False

    def _unexpected(self, exc: BaseException) -> str:
        return (str(exc) or type(exc).__name__) if self.expose_errors else errors.INTERNAL_ERROR

    # --- the steps ----------------------------------------------------------
    #
    # Each step runs synchronously as long as nothing it calls hands back an
    # awaitable; the first one that does returns a coroutine finishing the
    # request from there (awaited by _finish_later), so an action, middleware
    # and inputs that do not wait cost no coroutine or Deferred at all.  A
    # step's result: True (the action ran and succeeded: post-processors are
    # due), False (it stopped: an error, or ``to_process`` off), or that
    # awaitable, giving True or False.

    def _steps(self, data: ActionData) -> "bool | Awaitable[bool]":
        connection = data.connection
        params = data.params
        version = params.get("apiVersion")
        name = data.action  # the plan registry.resolve gave before, without the call:
        plan = self.registry.latest_plans.get(name) if version is None and type(name) is str else None
        plan = plan or self.registry.resolve(name, version)
        template = data.action_template = None if plan is None else plan.action
        if self.stopping:
            return self._fail(data, errors.SHUTTING_DOWN, SHUTTING_DOWN)
        if connection.pending_actions > self.limit:
            return self._fail(data, errors.TOO_MANY_PENDING, TOO_MANY_REQUESTS)
        if self.in_flight > self.in_flight_cap:
            return self._fail(data, errors.TOO_BUSY, SERVER_TOO_BUSY)
        if plan is None or template is None:  # (template: for mypy)
            return self._fail(data, errors.UNKNOWN_ACTION, UNKNOWN_ACTION)
        if connection.type in template.blocked_connection_types:
            return self._fail(
                data,
                errors.BLOCKED_CONNECTION_TYPE.format(type=connection.type),
                UNSUPPORTED_TYPE,
            )
        if plan.chain:
            params = dict(params)
            if version is None:
                params["apiVersion"] = plan.version
            data.params = params
            return self._with_middleware(data, template, plan)
        # no middleware: nobody sees the params between the copy and the
        # scrubbing, so the scrubbed copy is the only one made (the same
        # keys in the same order: apiVersion, when added, comes last)
        if self.scrub and not params.keys() <= plan.kept:
            kept = plan.kept
            params = {k: v for k, v in params.items() if k in kept}
        else:  # (every param kept: a plain copy, without the comprehension's function call)
            params = dict(params)
        if version is None:
            params["apiVersion"] = plan.version
        data.params = params
        data.validated = True
        return self._inputs(data, template) if template.inputs else self._run(data, template)

    async def _with_middleware(self, data: ActionData, template: Action, plan: ActionPlan) -> bool:
        """The steps of an action with middleware: pre-processors (seeing
        every param the client sent), the rest, post-processors."""
        chain = plan.chain
        if not await self._run_middleware(data, chain, "pre_processor", PRE_PROCESSOR_ERROR):
            return False
        if self.scrub:
            kept = plan.kept
            data.params = {k: v for k, v in data.params.items() if k in kept}
        data.validated = True
        ran = self._inputs(data, template) if template.inputs else self._run(data, template)
        if ran is not True and ran is not False:
            ran = await ran
        if ran:
            await self._run_middleware(data, chain, "post_processor", POST_PROCESSOR_ERROR)
        return ran

    def _inputs(self, data: ActionData, template: Action) -> "bool | Awaitable[bool]":
        """The action's inputs (defaults, formatters, validators), then the run."""
        waiting = first_step(self.inputs.validate(data, template.inputs, data.params))
        if waiting is not None:
            return self._run_after(data, template, waiting)
        return self._run(data, template)

    async def _run_after(self, data: ActionData, template: Action, inputs: Awaitable[Any]) -> bool:
        await inputs
        ran = self._run(data, template)
        if ran is not True and ran is not False:
            ran = await ran
        return ran

    def _run(self, data: ActionData, template: Action) -> "bool | Awaitable[bool]":
        """The inputs' verdict, then the action's ``run``."""
        if data.missing_params:
            return self._fail(
                data, errors.MISSING_PARAM.format(param=data.missing_params[0]), MISSING_PARAMS
            )
        if data.validator_errors:
            return self._fail(data, data.validator_errors[0], VALIDATOR_ERRORS)
        if not data.to_process:
            return False
        try:
            result = template.run(data)
        except CancelledError:
            raise
        except Exception as e:
            return self._run_failed(data, template, e)
        if result is None:
            response = data.response
            if type(response) is dict and "error" not in response:
                return True  # the common success, as _ran would say, without the call
        elif isawaitable(result):
            return self._ran_later(data, template, result)
        return self._ran(data, result)

    async def _ran_later(self, data: ActionData, template: Action, running: Awaitable[Any]) -> bool:
        try:
            result = await running
        except CancelledError:
            raise
        except Exception as e:
            return self._run_failed(data, template, e)
        return self._ran(data, result)

    def _run_failed(self, data: ActionData, template: Action, e: Exception) -> bool:
        if isinstance(e, ActionError):
            return self._fail(data, e.error, ACTION_ERROR)
        log.failure("action {action} raised", action=template.name)
        return self._fail(data, self._unexpected(e), SERVER_ERROR)

    def _ran(self, data: ActionData, result: Any) -> bool:
        """What the run returned or set: an error, or success."""
        if isinstance(result, ActionError):
            return self._fail(data, result.error, ACTION_ERROR)
        if isinstance(data.response, dict) and "error" in data.response:
            data.action_status = ACTION_ERROR
            return False
        return True

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
