"""An action's inputs applied to its params: defaults, formatters, validators,
required params and nested schemas, in the processor's order and with its texts.

Kept apart from :mod:`ahtwist.actions.processor` (which calls it once per
action that declares inputs) so each stays one job.
"""

from collections.abc import Mapping
from inspect import isawaitable
from typing import Any

from ahtwist import errors
from ahtwist.actions.action import Input, takes_args, wants_data
from ahtwist.actions.data import ActionData
from ahtwist.errors import ActionError


def _maybe_await(result: Any) -> bool:
    return result is not None and isawaitable(result)


def _call(fn: Any, value: Any, data: ActionData) -> Any:
    return fn(value, data) if wants_data(fn) else fn(value)


def _error_value(exc: BaseException, param: str) -> Any:
    """The reply ``error`` when a default, formatter or validator raised: an
    :class:`ActionError`'s text (or object) verbatim; anything else (``int("x")``)
    names the parameter instead of leaking Python's message."""
    if isinstance(exc, ActionError):
        return exc.error
    return errors.VALIDATION_FAILED.format(param=param)


class InputValidator:
    """Validates params against ``Input`` specs.

    ``scrub``: drop nested keys a schema does not declare
    (``general.disableParamScrubbing`` off); ``missing_checks``: the values
    that count as missing besides absent and None
    (``general.missingParamChecks``).
    """

    def __init__(self, scrub: bool, missing_checks: tuple[Any, ...]) -> None:
        self.scrub = scrub
        self.missing_checks = missing_checks

    def is_missing(self, params: Mapping[str, Any], key: str) -> bool:
        if key not in params:
            return True
        value = params[key]
        if value is None:
            return True
        return any(type(value) is type(check) and value == check for check in self.missing_checks)

    async def validate(
        self, data: ActionData, inputs: Mapping[str, Input], params: dict[str, Any], prefix: str = ""
    ) -> None:
        """Apply ``inputs`` to ``params`` in place; problems go to
        ``data.missing_params`` and ``data.validator_errors``."""
        for key, spec in inputs.items():
            if key not in params and spec.has_default:
                default = spec.default
                if callable(default):
                    try:
                        default = _call(default, None, data) if takes_args(default) else default()
                        if _maybe_await(default):
                            default = await default
                    except Exception as e:
                        data.validator_errors.append(_error_value(e, prefix + key))
                        continue
                params[key] = default
            value = params.get(key)
            if value is not None:
                ok = True
                for formatter in spec.formatter:
                    try:
                        value = _call(formatter, value, data)
                        if _maybe_await(value):
                            value = await value
                    except Exception as e:
                        data.validator_errors.append(_error_value(e, prefix + key))
                        ok = False
                        break
                    params[key] = value
                    if value is None:
                        ok = False
                        break
                if ok:
                    for validator in spec.validator:
                        try:
                            verdict = _call(validator, value, data)
                            if _maybe_await(verdict):
                                verdict = await verdict
                        except Exception as e:
                            data.validator_errors.append(_error_value(e, prefix + key))
                            continue
                        if verdict is not True:
                            if verdict is False or verdict is None:
                                verdict = errors.VALIDATION_FAILED.format(param=prefix + key)
                            data.validator_errors.append(verdict)
            if spec.required and self.is_missing(params, key):
                data.missing_params.append(prefix + key)
            if spec.schema is not None and isinstance(params.get(key), dict):
                nested = params[key]
                if self.scrub:
                    nested = {k: v for k, v in nested.items() if k in spec.schema}
                    params[key] = nested
                await self.validate(data, spec.schema, nested, f"{prefix}{key}.")
