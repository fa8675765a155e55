"""JSON encoding shared by every transport (orjson, with a stdlib fallback).

ActionHero's JSON is JavaScript's: UTF-8, non-ASCII unescaped, compact
(``{"a":1}``) on the socket and websocket, indented by ``padding`` spaces over
HTTP.  orjson produces exactly that for padding 0 and 2 and preserves key
order; other paddings, and values orjson refuses (integers over 64 bits),
fall back to the stdlib encoder with the same separators.
"""

import json
from decimal import Decimal
from typing import Any

import orjson

_COMPACT = orjson.OPT_NON_STR_KEYS
_INDENT2 = _COMPACT | orjson.OPT_INDENT_2


def _default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


#: :func:`dumps`' first try is ``orjson.dumps(value, default=JSON_DEFAULT,
#: option=COMPACT_OPTION)``: hot paths call it so, without dumps' Python
#: frame (a ``functools.partial`` with keywords costs more than the frame),
#: and call :func:`dumps` when it raises TypeError
COMPACT_OPTION = _COMPACT
JSON_DEFAULT = _default


def _stdlib(value: Any, indent: int | None, default: Any = _default) -> bytes:
    separators = (",", ": ") if indent else (",", ":")
    return json.dumps(
        value, indent=indent or None, separators=separators, ensure_ascii=False, default=default
    ).encode("utf-8")


def dumps(value: Any, default: Any = _default) -> bytes:
    """Compact JSON bytes (socket lines, websocket frames); ``default``
    converts values JSON has no type for (or raises TypeError)."""
    try:
        return orjson.dumps(value, default=default, option=_COMPACT)
    except TypeError:
        return _stdlib(value, None, default)


def dumps_padded(value: Any, padding: int) -> bytes:
    """JSON bytes indented by ``padding`` spaces (0: compact)."""
    try:
        if padding == 2:
            return orjson.dumps(value, default=_default, option=_INDENT2)
        if padding <= 0:
            return orjson.dumps(value, default=_default, option=_COMPACT)
    except TypeError:
        pass
    return _stdlib(value, padding if padding > 0 else None)


class NestedTooDeep(ValueError):
    """JSON nested deeper than the parser goes (1,024 levels): the client
    gets :data:`~ahtwist.errors.TOO_DEEP` instead of "not JSON"."""


def loads(data: bytes | str) -> Any:
    """Parse JSON; raises ValueError (orjson.JSONDecodeError, or
    :class:`NestedTooDeep`) when invalid."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        if str(e).startswith("depth limit exceeded"):
            raise NestedTooDeep(str(e)) from None
        raise
