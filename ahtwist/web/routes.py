"""REST routes: parsing the ``[routes]`` config and matching request paths.

Semantics follow ActionHero v17 (docs/protocol-http.md, 'Routes'): per-verb lists,
top-down, first match wins; literal segments compare case-insensitively;
``:name`` captures a non-empty part; ``:name(regex)`` captures a part the regex
finds a match in; ``matchTrailingPathParts`` lets the last segment absorb the
rest of the path; ``dir`` routes map a URL prefix to a folder (file mode).
"""

import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ahtwist.files import percent_decode

VERBS = ("head", "get", "post", "put", "patch", "delete")
_TABLES = VERBS + ("all",)
_ROUTE_KEYS = {"path", "action", "apiVersion", "matchTrailingPathParts", "dir"}


@attrs.frozen
class Segment:
    """One route path segment: a literal, a ``:name`` or a ``:name(regex)``."""

    literal: str | None = None  # lower-cased
    name: str = ""  # empty for a literal
    regex: re.Pattern[str] | None = None


@attrs.frozen
class Route:
    """A configured route (immutable); ``connection.matched_route`` is one of these."""

    verb: str
    path: str
    action: str | None
    apiVersion: Any = None
    matchTrailingPathParts: bool = False
    dir: str | None = None
    segments: tuple[Segment, ...] = ()


@attrs.frozen
class RouteTable:
    """Routes by verb, in configuration order."""

    by_verb: Mapping[str, tuple[Route, ...]] = attrs.field(factory=dict)

    def match(self, verb: str, parts: Sequence[str]) -> tuple[Route, dict[str, str]] | None:
        """First action route for ``verb`` matching ``parts`` (raw path parts)."""
        for route in self.by_verb.get(verb, ()):
            if route.action is None:
                continue
            params = match_segments(route, parts)
            if params is not None:
                return route, params
        return None

    def match_dir(self, verb: str, parts: Sequence[str]) -> tuple[Route, list[str]] | None:
        """First ``dir`` route whose segments prefix ``parts``; returns the rest."""
        for route in self.by_verb.get(verb, ()):
            if route.dir is None:
                continue
            n = len(route.segments)
            if len(parts) < n or (len(parts) > n and not route.matchTrailingPathParts):
                continue
            if match_segments(attrs.evolve(route, matchTrailingPathParts=False), parts[:n]) is None:
                continue
            return route, list(parts[n:])
        return None

    @property
    def has_dir_routes(self) -> bool:
        return any(r.dir is not None for routes in self.by_verb.values() for r in routes)


def decode_part(raw: str) -> str | None:
    """``+`` -> space, then strict UTF-8 %-decoding; None when malformed."""
    return percent_decode(raw.replace("+", " "))


def match_segments(route: Route, parts: Sequence[str]) -> dict[str, str] | None:
    """Route variables when ``parts`` match ``route``; None otherwise."""
    segments = route.segments
    n = len(segments)
    if len(parts) != n and not (route.matchTrailingPathParts and len(parts) > n):
        return None
    params: dict[str, str] = {}
    for i, seg in enumerate(segments):
        part = parts[i]
        if route.matchTrailingPathParts and i == n - 1 and seg.literal is None:
            part = "/".join(parts[i:])
        if not part:
            return None
        if seg.literal is not None:
            if part.lower() != seg.literal:
                return None
            continue
        value = decode_part(part)
        if seg.regex is not None and not seg.regex.search(value if value is not None else part):
            return None
        if value is not None:
            params[seg.name] = value
    return params


def split_path(path: str) -> list[str]:
    """Path parts: split on ``/``, leading empty parts and one trailing empty part removed."""
    parts = path.split("/")
    while parts and parts[0] == "":
        parts.pop(0)
    if parts and parts[-1] == "":
        parts.pop()
    return parts


def _compile_path(path: str, fail: Any) -> tuple[Segment, ...]:
    # Find ":name(regex)" groups first so a "/" inside a regex is reported
    # instead of silently splitting the regex in two.
    i, depth = 0, 0
    while i < len(path):
        ch = path[i]
        if ch == "\\" and depth:
            i += 2
            continue
        if ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif ch == "/" and depth:
            raise fail("a route regex cannot contain '/' (path segments are split on it)")
        i += 1
    if depth:
        raise fail("unbalanced '(' in the route path")
    segments = []
    for part in split_path(path):
        if part.startswith(":"):
            name, paren, rest = part[1:].partition("(")
            if not name:
                raise fail(f"route variable without a name in {part!r}")
            if paren:
                if not rest.endswith(")"):
                    raise fail(f"route variable {part!r} must end with ')'")
                try:
                    regex = re.compile(rest[:-1])
                except re.error as e:
                    raise fail(f"invalid regex {rest[:-1]!r}: {e}") from None
                segments.append(Segment(name=name, regex=regex))
            else:
                segments.append(Segment(name=name))
        else:
            segments.append(Segment(literal=part.lower()))
    return tuple(segments)


def parse_routes(raw: Any, loader: Any) -> RouteTable:
    """Validate and compile the ``routes`` config value.

    ``raw`` is None, a table of verb -> list of route tables, or a string
    naming a TOML file (relative to the config file) holding such tables.
    Errors raise ConfigError via ``loader.fail`` naming the route.
    """
    if raw is None:
        return RouteTable(by_verb={})
    source_key = "routes"
    if isinstance(raw, str):
        file = Path(loader.path(raw))
        try:
            raw = tomllib.loads(file.read_text("utf-8"))
        except OSError as e:
            raise loader.fail("routes", f"cannot read routes file {str(file)!r}: {e.strerror or e}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise loader.fail("routes", f"invalid TOML in {str(file)!r}: {e}") from None
        raw = raw.get("routes", raw)
        source_key = f"routes ({file.name})"
    if not isinstance(raw, Mapping):
        raise loader.fail("routes", "expected a table of verbs or the name of a routes file")
    by_verb: dict[str, list[Route]] = {v: [] for v in VERBS}
    for table_name, entries in raw.items():
        verb = table_name.lower()
        key = f"{source_key}.{table_name}"
        if verb not in _TABLES:
            raise loader.fail(key, f"unknown verb; use one of {', '.join(_TABLES)}")
        if not isinstance(entries, list):
            raise loader.fail(key, f"expected an array of tables ([[routes.{table_name}]])")
        for index, entry in enumerate(entries):
            route_key = f"{key}[{index}]"
            if not isinstance(entry, Mapping):
                raise loader.fail(route_key, "expected a table")
            path = entry.get("path")
            if isinstance(path, str):
                route_key = f"{key}[{index}] ({path})"

            def fail(reason: str, route_key: str = route_key) -> Exception:
                return loader.fail(route_key, reason)

            unknown = set(entry) - _ROUTE_KEYS
            if unknown:
                raise fail(f"unknown route key(s): {', '.join(sorted(unknown))}")
            if not isinstance(path, str) or not path:
                raise fail("'path' is required and must be a string")
            action = entry.get("action")
            directory = entry.get("dir")
            if directory is not None and not isinstance(directory, str):
                raise fail("'dir' must be a string")
            if action is None and directory is None:
                raise fail("'action' is required (unless the route has a 'dir')")
            if action is not None and not isinstance(action, str):
                raise fail("'action' must be a string")
            trailing = entry.get("matchTrailingPathParts", False)
            if not isinstance(trailing, bool):
                raise fail("'matchTrailingPathParts' must be true or false")
            version = entry.get("apiVersion")
            if version is not None and (
                isinstance(version, bool) or not isinstance(version, (int, float, str))
            ):
                raise fail("'apiVersion' must be a number or a string")
            segments = _compile_path(path, fail)
            verbs = VERBS if verb == "all" else (verb,)
            for v in verbs:
                by_verb[v].append(
                    Route(
                        verb=v,
                        path=path,
                        action=action,
                        apiVersion=version,
                        matchTrailingPathParts=trailing,
                        dir=loader.path(directory) if directory else None,
                        segments=segments,
                    )
                )
    return RouteTable(by_verb={v: tuple(r) for v, r in by_verb.items() if r})
