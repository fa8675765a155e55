"""Request bodies, read as they arrive and never beyond the form limits.

A :class:`BodyReader` is chosen from the request's method and Content-Type
when the headers are complete; the HTTP layer feeds it chunks and asks for the
result once the body is complete:

* ``application/json`` -- buffered up to ``maxFieldsSize``; an object gives
  fields, an array gives ``{"payload": [...]}``;
* ``application/x-www-form-urlencoded`` -- buffered up to ``maxFieldsSize``;
* ``multipart/form-data`` -- streamed: fields count against ``maxFieldsSize``,
  files are written to ``uploadDir`` with ``maxFileSize`` per file and
  ``maxTotalFileSize`` for all of them;
* any other type (``text/plain``, ``application/octet-stream``, none...) --
  buffered up to ``maxFieldsSize``: no params, the bytes are ``raw_body``;
* GET/HEAD bodies -- counted and dropped (kept with ``saveRawBody``).

With ``servers.web.saveRawBody`` every reader also keeps the exact bytes it
was fed (``raw_body``), within the same limits.

Going over a limit sets ``too_large`` at once (the HTTP layer answers 413 and
closes); a malformed body raises :class:`FormError` from :meth:`finish` (400).
Upload files are removed by :meth:`cleanup` unless an action moved them.
"""

import logging
import os
import tempfile
from typing import Any

import attrs
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from ahtwist.encoding import loads
from ahtwist.web.query import add_value, parse_flat

# python-multipart also reports a bad body through the logging module; with no
# handler configured Python prints that to stderr (under twistd a stray
# "[stderr#error]" line).  The request's own log line says what was wrong.
logging.getLogger("python_multipart").addHandler(logging.NullHandler())


class FormError(Exception):
    """The body could not be parsed (answered 400)."""


@attrs.frozen
class FormLimits:
    max_fields_size: int
    max_file_size: int
    max_total_file_size: int
    upload_dir: str
    keep_extensions: bool
    parameter_limit: int = 1000


class BodyReader:
    """Counts and drops the body (GET/HEAD), or with ``keep`` buffers it."""

    too_large = False

    def __init__(self, limit: int, keep: bool = False) -> None:
        self.limit = limit
        self.received = 0
        #: the exact bytes received (only when kept)
        self.raw: bytearray | None = bytearray() if keep else None
        #: whether actions see :attr:`raw_body` (``connection.raw.raw_body``)
        self.exposes_raw = keep

    @property
    def raw_body(self) -> bytes:
        """The request body as received (b"" when not kept)."""
        return bytes(self.raw) if self.raw else b""

    def declared(self, length: int | None) -> None:
        """The Content-Length (None when chunked); may set ``too_large`` early."""
        if length is not None and length > self.limit:
            self.too_large = True

    def feed(self, data: bytes) -> None:
        self.received += len(data)
        if self.received > self.limit:
            self.too_large = True
            self.raw = None
        elif self.raw is not None:
            self.raw += data

    def finish(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(fields, files)``; raises :class:`FormError` when malformed."""
        return {}, {}

    def cleanup(self) -> None:
        """Remove upload files the action did not move."""


class _BufferedReader(BodyReader):
    """Holds the whole body (it is the raw body too)."""

    def __init__(self, limit: int, expose: bool = False) -> None:
        super().__init__(limit, keep=True)
        self.exposes_raw = expose

    @property
    def buffer(self) -> bytearray:
        return self.raw if self.raw is not None else bytearray()


class JSONReader(_BufferedReader):
    def finish(self) -> tuple[dict[str, Any], dict[str, Any]]:
        if not self.buffer.strip():
            return {}, {}
        try:
            value = loads(bytes(self.buffer))
        except ValueError as e:
            raise FormError(f"invalid JSON body: {e}") from None
        if isinstance(value, dict):
            return value, {}
        if isinstance(value, list):
            return {"payload": value}, {}
        return {}, {}


class UrlencodedReader(_BufferedReader):
    def __init__(self, limit: int, parameter_limit: int, expose: bool = False) -> None:
        super().__init__(limit, expose)
        self.parameter_limit = parameter_limit

    def finish(self) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            return parse_flat(bytes(self.buffer).strip(), self.parameter_limit), {}
        except ValueError as e:
            raise FormError(f"invalid urlencoded body: {e}") from None


class MultipartReader(BodyReader):
    """Streams ``multipart/form-data``: fields in memory, files to disk."""

    def __init__(self, boundary: bytes, limits: FormLimits, keep: bool = False) -> None:
        super().__init__(limits.max_fields_size + limits.max_total_file_size, keep)
        self.limits = limits
        self.fields: dict[str, Any] = {}
        self.files: dict[str, Any] = {}
        self.paths: list[str] = []
        self.error: str | None = None
        self.field_bytes = 0
        self.file_bytes = 0
        self._headers: dict[bytes, bytes] = {}
        self._header_field = b""
        self._header_value = b""
        self._part: dict[str, Any] | None = None
        self._ended = False
        if not boundary:
            self.parser = None
            self.error = "multipart body without a boundary"
            return
        try:
            self.parser = MultipartParser(
                boundary,
                {
                    "on_part_begin": self._part_begin,
                    "on_header_field": self._header_field_data,
                    "on_header_value": self._header_value_data,
                    "on_header_end": self._header_end,
                    "on_headers_finished": self._headers_finished,
                    "on_part_data": self._part_data,
                    "on_part_end": self._part_end,
                    "on_end": self._end,
                },
            )
        except Exception as e:
            self.parser = None
            self.error = f"bad multipart boundary: {e}"

    # parser callbacks
    def _part_begin(self) -> None:
        self._headers = {}
        self._header_field = b""
        self._header_value = b""
        self._part = None

    def _header_field_data(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_field.strip().lower()] = self._header_value.strip()
        self._header_field = b""
        self._header_value = b""

    def _headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if disposition != b"form-data" or b"name" not in options:
            raise FormError("multipart part without a form-data name")
        name = options[b"name"].decode("utf-8", "replace")
        filename = options.get(b"filename")
        if filename is None:
            self._part = {"kind": "field", "name": name, "data": bytearray()}
            return
        original = filename.decode("utf-8", "replace")
        suffix = ""
        if self.limits.keep_extensions:
            suffix = os.path.splitext(os.path.basename(original.replace("\\", "/")))[1]
        fd, path = tempfile.mkstemp(prefix="upload_", suffix=suffix, dir=self.limits.upload_dir)
        self.paths.append(path)
        content_type = self._headers.get(b"content-type", b"application/octet-stream")
        self._part = {
            "kind": "file",
            "name": name,
            "file": os.fdopen(fd, "wb"),
            "path": path,
            "filename": original,
            "type": content_type.decode("latin-1"),
            "size": 0,
        }

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        if part is None:
            return
        size = end - start
        if part["kind"] == "field":
            self.field_bytes += size
            if self.field_bytes > self.limits.max_fields_size:
                self.too_large = True
                return
            part["data"] += data[start:end]
        else:
            part["size"] += size
            self.file_bytes += size
            if (
                part["size"] > self.limits.max_file_size
                or self.file_bytes > self.limits.max_total_file_size
            ):
                self.too_large = True
                return
            part["file"].write(data[start:end])

    def _part_end(self) -> None:
        part = self._part
        self._part = None
        if part is None:
            return
        if part["kind"] == "field":
            try:
                value = bytes(part["data"]).decode("utf-8")
            except UnicodeDecodeError:
                raise FormError("multipart field is not UTF-8") from None
            add_value(self.fields, part["name"], value)
        else:
            part["file"].close()
            add_value(
                self.files,
                part["name"],
                {
                    "path": part["path"],
                    "name": part["filename"],
                    "type": part["type"],
                    "size": part["size"],
                },
            )

    def _end(self) -> None:
        self._ended = True

    # reader API
    def feed(self, data: bytes) -> None:
        super().feed(data)
        if self.too_large or self.error is not None or self.parser is None:
            return
        try:
            self.parser.write(data)
        except FormError as e:
            self.error = str(e)
        except MultipartParseError as e:
            self.error = f"malformed multipart body: {e}"
        if self.too_large:
            self.cleanup()

    def finish(self) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.error is None and not self._ended:
            self.error = "multipart body ended early"
        if self.error is not None:
            self.cleanup()
            raise FormError(self.error)
        return self.fields, self.files

    def cleanup(self) -> None:
        if self._part is not None and self._part["kind"] == "file":
            self._part["file"].close()
        for path in self.paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass  # moved (or removed) by the action
        self.paths = []


class _NoBody(BodyReader):
    """The reader of a GET/HEAD request that declared no body (shared: it
    holds nothing).  A body arriving anyway (chunked) is read by a real
    reader: :meth:`reader` makes one."""

    def __init__(self) -> None:
        super().__init__(0)

    def feed(self, data: bytes) -> None:  # pragma: no cover - replaced before feeding
        raise AssertionError("NO_BODY is shared: feed the reader from NO_BODY.reader()")

    def reader(self, limits: FormLimits, save_raw: bool) -> BodyReader:
        return BodyReader(limits.max_fields_size, save_raw)


#: the shared reader of bodiless GET/HEAD requests (the common case)
NO_BODY = _NoBody()


def reader_for(
    method: bytes,
    content_type: bytes | None,
    limits: FormLimits,
    save_raw: bool = False,
    length: int | None = None,
) -> BodyReader:
    """The reader for a request, from its method and Content-Type;
    ``save_raw`` keeps the exact bytes of every body (``saveRawBody``);
    ``length`` is the declared Content-Length (None: none or chunked)."""
    if method in (b"GET", b"HEAD"):
        if not length and not save_raw:
            return NO_BODY
        return BodyReader(limits.max_fields_size, save_raw)
    if not content_type:
        return BodyReader(limits.max_fields_size, True)
    mime, options = parse_options_header(content_type)
    if mime == b"application/json":
        return JSONReader(limits.max_fields_size, save_raw)
    if mime == b"application/x-www-form-urlencoded":
        return UrlencodedReader(limits.max_fields_size, limits.parameter_limit, save_raw)
    if mime == b"multipart/form-data":
        return MultipartReader(options.get(b"boundary", b""), limits, save_raw)
    return BodyReader(limits.max_fields_size, True)
