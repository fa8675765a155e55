"""Form and query-string decoding with the semantics of Node's ``qs``.

``a=1&a=2`` -> ``["1", "2"]``; ``a[b]=c`` -> ``{"a": {"b": "c"}}``;
``a[]=1&a[]=2`` -> ``["1", "2"]``; ``+`` is a space; %-escapes are UTF-8.
Limits follow ``servers.web.queryParseOptions`` (depth, parameterLimit,
arrayLimit).  A malformed %-escape raises ``ValueError``; so does invalid
UTF-8 in a body (in the query string it becomes U+FFFD).
"""

import re
from typing import Any
from urllib.parse import unquote_to_bytes

_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_CHILD = re.compile(r"\[([^\[\]]*)\]")


def decode_component(raw: bytes, errors: str = "strict") -> str:
    """``+`` -> space, then %-decoding as UTF-8: invalid UTF-8 raises
    (``errors="strict"``, bodies) or becomes U+FFFD (``"replace"``, the
    query string, as ActionHero and our socket do)."""
    if b"+" in raw:
        raw = raw.replace(b"+", b" ")
    if b"%" in raw:
        if _BAD_ESCAPE.search(raw):
            raise ValueError("malformed %-escape")
        raw = unquote_to_bytes(raw)
    return raw.decode("utf-8", errors)  # UnicodeDecodeError is a ValueError


def _pairs(data: bytes, limit: int, errors: str = "strict"):
    count = 0
    for chunk in data.split(b"&"):
        if not chunk:
            continue
        if count >= limit:
            break
        count += 1
        key, sep, value = chunk.partition(b"=")
        key_text = decode_component(key, errors)
        if not key_text:
            continue
        yield key_text, decode_component(value, errors) if sep else ""


def add_value(result: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key``; a repeated key becomes a list of its values."""
    if key in result:
        existing = result[key]
        if isinstance(existing, list):
            existing.append(value)
        else:
            result[key] = [existing, value]
    else:
        result[key] = value


def parse_flat(data: bytes, parameter_limit: int = 1000) -> dict[str, Any]:
    """An urlencoded body: keys kept literally (``a[b]`` stays a key),
    repeated keys become arrays."""
    result: dict[str, Any] = {}
    for key, value in _pairs(data, parameter_limit):
        add_value(result, key, value)
    return result


class _Array(dict):
    """A sparse array while parsing (index -> value); compacted to a list."""


def _key_chain(key: str, depth: int) -> list[str]:
    """``a[b][c]`` -> ``["a", "[b]", "[c]"]`` (at most ``depth`` children; the
    rest of the key becomes one more bracketed segment, as ``qs`` does)."""
    first = key.find("[")
    parent = key[:first] if first >= 0 else key
    chain = [parent] if parent else []
    pos = first
    matched = 0
    while matched < depth:
        m = _CHILD.match(key, pos)
        if not m:
            break
        chain.append(m.group(0))
        pos = m.end()
        matched += 1
    if pos < len(key):
        chain.append("[" + key[pos:] + "]")
    return chain


def _build(chain: list[str], value: Any, array_limit: int) -> Any:
    leaf = value
    for segment in reversed(chain):
        if segment == "[]":
            obj: Any = _Array({0: leaf})
        elif segment.startswith("[") and segment.endswith("]"):
            clean = segment[1:-1]
            if clean.isdigit() and str(int(clean)) == clean and int(clean) <= array_limit:
                obj = _Array({int(clean): leaf})
            else:
                obj = {clean: leaf}
        else:
            obj = {segment: leaf}
        leaf = obj
    return leaf


def _next_index(array: "_Array") -> int:
    return max(array) + 1 if array else 0


def _merge(target: Any, source: Any) -> Any:
    """Deep merge with ``qs``'s rules (arrays append, objects merge by key)."""
    if not isinstance(source, dict):
        if isinstance(target, _Array):
            target[_next_index(target)] = source
            return target
        if isinstance(target, dict):
            target.setdefault(str(source), True)
            return target
        return _Array({0: target, 1: source})
    if not isinstance(target, dict):
        merged = _Array({0: target})
        if isinstance(source, _Array):
            for k in sorted(source):
                merged[_next_index(merged)] = source[k]
        else:
            merged[1] = source
        return merged
    if isinstance(target, _Array) and isinstance(source, _Array):
        for index, item in source.items():
            if index in target:
                if isinstance(target[index], dict) and isinstance(item, dict):
                    target[index] = _merge(target[index], item)
                else:
                    target[_next_index(target)] = item
            else:
                target[index] = item
        return target
    if isinstance(target, _Array) or isinstance(source, _Array):
        target = {str(k): v for k, v in target.items()}
        source = {str(k): v for k, v in source.items()}
    for key, item in source.items():
        target[key] = _merge(target[key], item) if key in target else item
    return target


def _compact(value: Any) -> Any:
    if isinstance(value, _Array):
        return [_compact(value[k]) for k in sorted(value)]
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items()}
    return value


def parse_query(
    data: bytes, depth: int = 5, parameter_limit: int = 1000, array_limit: int = 20
) -> dict[str, Any]:
    """A query string with ``qs`` semantics (nested keys, arrays); invalid
    UTF-8 becomes U+FFFD, a malformed %-escape raises ValueError."""
    result: dict[str, Any] = {}
    nested = False
    for key, value in _pairs(data, parameter_limit, "replace"):
        if "[" not in key or depth <= 0:
            result[key] = _merge(result[key], value) if key in result else value
            continue
        nested = True
        built = _build(_key_chain(key, depth), value, array_limit)
        for k, v in built.items():
            k = str(k)
            result[k] = _merge(result[k], v) if k in result else v
    if not nested and not any(isinstance(v, _Array) for v in result.values()):
        return result
    return _compact(result)
