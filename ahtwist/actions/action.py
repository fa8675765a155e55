"""How a user defines an action and its inputs.

An action is a subclass of :class:`Action`::

    from ahtwist import Action, Input, ActionError

    class Hello(Action):
        name = "hello"
        description = "Greets someone"
        inputs = {"name": Input(required=True, formatter=str.strip)}

        def run(self, data):
            data.response["greeting"] = f"Hello, {data.params['name']}!"

``run`` may be a plain method, return a Deferred, or be ``async def``.  Field
names are the snake_case spellings of ActionHero's (``blocked_connection_types``
for ``blockedConnectionTypes`` ...); the meaning is ActionHero's.
"""

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import attrs

from ahtwist.connection import canonical_type
from ahtwist.errors import ConfigError


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


#: Marks an :class:`Input` without a default.
NO_DEFAULT: Any = _NoDefault()


def _as_tuple(value: Any) -> tuple[Callable[..., Any], ...]:
    if value is None:
        return ()
    if callable(value):
        return (value,)
    return tuple(value)


@functools.lru_cache(maxsize=4096)
def wants_data(fn: Callable[..., Any]) -> bool:
    """True when ``fn`` takes the action ``data`` too: two or more required
    positional parameters, or ``*args``.  (``str.strip``'s optional second
    parameter does not count, so builtins work as one-argument formatters.)"""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False  # builtins such as str/int take the value only
    required = 0
    for p in sig.parameters.values():
        if p.kind == p.VAR_POSITIONAL:
            return True
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty:
            required += 1
    return required >= 2


@functools.lru_cache(maxsize=4096)
def takes_args(fn: Callable[..., Any]) -> bool:
    """True when ``fn`` accepts at least one positional argument."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        for p in sig.parameters.values()
    )


_F = TypeVar("_F", bound=Callable[..., Any])


def json_schema(schema: Mapping[str, Any] | None = None, /, **keywords: Any) -> Callable[[_F], _F]:
    """Declare the JSON Schema a formatter or validator stands for, for the
    OpenAPI document (see :class:`Input`)::

        @json_schema(type="integer", minimum=0)
        def parse_int(value): ...

    The function is returned unchanged apart from its ``json_schema``
    attribute; validation still happens in the function alone.
    """
    declared = {**(schema or {}), **keywords}

    def declare(fn: _F) -> _F:
        fn.json_schema = declared  # type: ignore[attr-defined]
        return fn

    return declare


@attrs.frozen
class Input:
    """One declared action input (docs/python-api.md, 'Input').

    * ``required`` -- missing when absent, ``None`` or in ``general.missingParamChecks``.
    * ``default`` -- used only when the param is absent; a callable is called
      as ``default(value, data)`` (or ``default()``/``default(value)``).
    * ``formatter`` / ``validator`` -- a callable or a list of them, called as
      ``f(value)`` or ``f(value, data)``.  A validator passes by returning
      exactly ``True``; a string it returns is the error text.
    * ``schema`` -- nested inputs for an object-valued param.
    * ``json_schema`` -- the JSON Schema of the value for the OpenAPI
      document (e.g. ``{"type": "integer", "minimum": 1}``).  Without it the
      document merges what the formatters and validators declare with the
      :func:`json_schema` decorator (``int``, ``float``, ``str`` and ``bool``
      declare their type), in that order.  Documentation only: it validates
      nothing.
    """

    required: bool = False
    default: Any = NO_DEFAULT
    formatter: tuple[Callable[..., Any], ...] = attrs.field(default=(), converter=_as_tuple)
    validator: tuple[Callable[..., Any], ...] = attrs.field(default=(), converter=_as_tuple)
    schema: Mapping[str, "Input"] | None = None
    json_schema: Mapping[str, Any] | None = None

    @property
    def has_default(self) -> bool:
        return self.default is not NO_DEFAULT

    def documentation(self) -> dict[str, Any]:
        """``{"required": ...}`` plus a literal (non-callable) default."""
        doc: dict[str, Any] = {"required": self.required}
        if self.has_default and not callable(self.default):
            doc["default"] = self.default
        return doc


class Action:
    """Base class of every action; subclass it and set the class attributes."""

    name: ClassVar[str | None] = None
    description: ClassVar[str | None] = None
    version: ClassVar[int | float] = 1
    inputs: ClassVar[Mapping[str, Input]] = {}
    middleware: ClassVar[Sequence[str]] = ()
    blocked_connection_types: ClassVar[Sequence[str]] = ()
    match_extension_mime_type: ClassVar[bool] = False
    to_document: ClassVar[bool] = True
    output_example: ClassVar[Mapping[str, Any]] = {}
    log_level: ClassVar[str] = "info"

    #: ``run(self, data)``; subclasses must define it.
    run: Any = None

    def documentation(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "version": render_version(self.version),
            "description": self.description,
            "inputs": {key: spec.documentation() for key, spec in self.inputs.items()},
        }
        doc["outputExample"] = dict(self.output_example)
        return doc


def render_version(version: int | float) -> int | float:
    """Integral versions render as integers (``1``, not ``1.0``)."""
    if isinstance(version, float) and version.is_integer():
        return int(version)
    return version


RESERVED_VERBS = frozenset(
    "quit exit documentation paramAdd paramDelete paramView paramsView paramsDelete "
    "roomAdd roomLeave roomView detailsView say".split()
)

_LOG_LEVELS = ("debug", "info", "warn", "error", "critical")


def validate_action(action: Action) -> None:
    """Raise :class:`ConfigError` with ActionHero's text for a bad definition."""
    name = action.name
    if not name or not isinstance(name, str):
        raise ConfigError("an action is missing 'action.name'")
    if not action.description:
        raise ConfigError(f"Action {name} is missing 'action.description'")
    if not callable(getattr(action, "run", None)):
        raise ConfigError(f"Action {name} has no run method")
    if name in RESERVED_VERBS:
        raise ConfigError(f"{name} is a reserved verb for connections. choose a new name")
    version = action.version
    if isinstance(version, bool) or not isinstance(version, (int, float)):
        raise ConfigError(f"Action {name}: version must be a number, got {version!r}")
    if not isinstance(action.inputs, Mapping) or not all(
        isinstance(spec, Input) for spec in action.inputs.values()
    ):
        raise ConfigError(f"Action {name}: inputs must map names to ahtwist.Input(...)")
    if action.log_level not in _LOG_LEVELS:
        raise ConfigError(
            f"Action {name}: log_level must be one of {', '.join(_LOG_LEVELS)}, got {action.log_level!r}"
        )
    if isinstance(action.blocked_connection_types, str) or isinstance(action.middleware, str):
        raise ConfigError(f"Action {name}: blocked_connection_types and middleware must be lists")
    # ActionHero's "webSocket" names the same connections as "websocket"
    blocked = tuple(dict.fromkeys(canonical_type(t) for t in action.blocked_connection_types))
    setattr(action, "blocked_connection_types", blocked)  # noqa: B010 -- a class attribute, set once
