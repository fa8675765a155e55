"""MIME types by file extension (Python's table plus the types ActionHero's
``mime`` package gives for the common web extensions)."""

import mimetypes

_OVERRIDES = {
    ".js": "application/javascript",
    ".mjs": "application/javascript",
    ".json": "application/json",
    ".ico": "image/x-icon",
    ".html": "text/html",
    ".htm": "text/html",
    ".css": "text/css",
    ".txt": "text/plain",
    ".png": "image/png",
    ".gif": "image/gif",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
    ".wasm": "application/wasm",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".map": "application/json",
}

_TABLE = mimetypes.MimeTypes()

DEFAULT = "application/octet-stream"


def mime_for_extension(extension: str) -> str | None:
    """The type for ``extension`` (with or without the dot), or None."""
    if not extension:
        return None
    ext = "." + extension.lstrip(".").lower()
    return _OVERRIDES.get(ext) or _TABLE.types_map[1].get(ext) or _TABLE.types_map[0].get(ext)


def mime_for_path(path: str) -> str:
    """The type for a file name; ``application/octet-stream`` when unknown."""
    name = path.rsplit("/", 1)[-1]
    _, dot, extension = name.rpartition(".")
    return (mime_for_extension(extension) if dot else None) or DEFAULT
