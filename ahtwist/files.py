"""Static-file resolution shared by every transport (docs/protocol-http.md, 'Static files').

:meth:`StaticFiles.resolve` turns a requested name into the real path of a
regular file inside one of the public folders, or None.  It is the only way
any transport finds a file: the web file mode, the ``file`` action and
``/file/`` alias, the socket ``file`` verb, the websocket ``file`` event and
``connection.send_file`` all go through it, so containment is checked in one
place:

* empty parts in the middle, absolute names, drive letters, and parts holding
  ``/``, ``\\`` or NUL after decoding are refused;
* literal ``.``/``..`` are resolved lexically and may not climb out; a part
  that becomes ``.``/``..`` only through %-decoding is refused;
* the canonical real path (symlinks followed) must stay inside the folder's
  canonical real path;
* a directory means its ``directoryFileType``; anything but a regular file is
  refused.
"""

import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import attrs

_DRIVE = re.compile(r"^[A-Za-z]:")
_MAX_NAME = 4096


@attrs.frozen
class FileInfo:
    """A resolved file: where it is and what ``stat`` said."""

    path: str
    size: int
    mtime: float


def percent_decode(part: str) -> str | None:
    """Strict %-decoding as UTF-8 (``+`` stays ``+``); None when malformed."""
    if "%" not in part:
        return part
    if re.search(r"%(?![0-9A-Fa-f]{2})", part):
        return None
    try:
        return unquote_to_bytes(part).decode("utf-8")
    except UnicodeDecodeError:
        return None


class StaticFiles:
    """The public folders, searched in order."""

    def __init__(self, locations: Sequence[str], directory_file: str = "index.html") -> None:
        self.locations = [str(Path(p)) for p in locations]
        self.directory_file = directory_file

    def resolve(self, name: str | Sequence[str], *, decode: bool = False) -> FileInfo | None:
        """Find ``name`` in the public folders.

        ``name`` is a string split on ``/`` (socket, websocket, the file
        action) or the already-split URL path parts; ``decode=True`` %-decodes
        each part once (web file mode).
        """
        return self.resolve_in(self.locations, name, decode=decode)

    def resolve_in(
        self, locations: Sequence[str], name: str | Sequence[str], *, decode: bool = False
    ) -> FileInfo | None:
        """Like :meth:`resolve` with explicit folders (``dir`` routes)."""
        parts = self._clean_parts(name, decode)
        if parts is None:
            return None
        for location in locations:
            found = self._resolve_one(location, parts)
            if found is not None:
                return found
        return None

    def lookup(self, path: Any) -> FileInfo | None:
        """``connection.send_file(path)`` for every server: a public name, or
        a server-side absolute path lying inside a public folder; anything
        else (not a string, empty) is None."""
        if not isinstance(path, str) or not path:
            return None
        if os.path.isabs(path):
            return self.resolve_absolute(path)
        return self.resolve(path)

    def resolve_absolute(self, path: str) -> FileInfo | None:
        """A server-side absolute path (``connection.send_file``): accepted
        only when it lies inside a public folder."""
        if "\0" in path:
            return None
        try:
            real = os.path.realpath(path)
        except (OSError, ValueError):
            return None
        for location in self.locations:
            root = os.path.realpath(location)
            if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
                return self._file_info(real, root)
        return None

    def _clean_parts(self, name: str | Sequence[str], decode: bool) -> list[str] | None:
        if isinstance(name, str):
            if len(name) > _MAX_NAME or "\0" in name:
                return None
            if name.startswith(("/", "\\")) or _DRIVE.match(name):
                return None
            raw = name.split("/")
        else:
            raw = list(name)
            if sum(len(p) + 1 for p in raw) > _MAX_NAME:
                return None
        trailing = not raw or raw[-1] == ""
        if raw and raw[-1] == "":
            raw = raw[:-1]
        parts: list[str] = []
        for i, part in enumerate(raw):
            if part == "":
                return None  # empty part in the middle ("//")
            literal_dot = part in (".", "..")
            if decode and not literal_dot:
                decoded = percent_decode(part)
                if decoded is None or decoded in (".", ".."):
                    return None
                part = decoded
            if "/" in part or "\\" in part or "\0" in part:
                return None
            if i == 0 and _DRIVE.match(part):
                return None
            if part == ".":
                continue
            if part == "..":
                if not parts:
                    return None  # would climb above the folder
                parts.pop()
                continue
            parts.append(part)
        if trailing or not parts:
            parts.append(self.directory_file)
        return parts

    def _resolve_one(self, location: str, parts: list[str]) -> FileInfo | None:
        try:
            root = os.path.realpath(location)
            candidate = os.path.join(root, *parts)
            real = os.path.realpath(candidate)
        except (OSError, ValueError):
            return None
        if not (real == root or real.startswith(root.rstrip(os.sep) + os.sep)):
            return None
        return self._file_info(real, root)

    def _file_info(self, real: str, root: str) -> FileInfo | None:
        try:
            st = os.stat(real)
        except (OSError, ValueError):
            return None
        if stat.S_ISDIR(st.st_mode):
            inner = os.path.realpath(os.path.join(real, self.directory_file))
            if not inner.startswith(root.rstrip(os.sep) + os.sep):
                return None
            try:
                st = os.stat(inner)
            except OSError:
                return None
            real = inner
        if not stat.S_ISREG(st.st_mode):
            return None
        return FileInfo(path=real, size=st.st_size, mtime=st.st_mtime)
