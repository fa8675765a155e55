"""Serving files over HTTP: caching headers, conditional requests, streaming.

Every web file response goes through :class:`FileResponder` -- file mode
(``/public/...``, ``/file/...``, the site root, ``dir`` routes), the ``file``
action and ``connection.send_file`` -- after :class:`ahtwist.files.StaticFiles`
has resolved the name (containment is checked there, once, for every
transport).  Headers and 304 rules follow docs/protocol-http.md, 'Static files'.

Files up to one read buffer (64 KiB) are answered with a single write; larger
ones are streamed by a pull producer, so memory per download stays at one
buffer whatever the file size, and a slow client slows only its own download.
"""

import zlib
from email.utils import formatdate, parsedate_to_datetime
from typing import IO, TYPE_CHECKING, Any

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from ahtwist import errors
from ahtwist.files import FileInfo
from ahtwist.web.mime import mime_for_path

if TYPE_CHECKING:
    from ahtwist.connection import Connection
    from ahtwist.web.site import WebRequest

log = Logger(namespace="ahtwist.web.static")

CHUNK = 65536


def weak_etag(info: FileInfo) -> str:
    """``W/"<size hex>-<mtime ms hex>"`` (ActionHero's, from the ``etag`` package)."""
    return f'W/"{info.size:x}-{int(info.mtime * 1000):x}"'


def _etag_matches(header: str, etag: str) -> bool:
    opaque = etag[2:]
    for item in header.split(","):
        item = item.strip()
        if item in ("*", etag, opaque, "W/" + etag):
            return True
    return False


def _not_modified_since(header: str, mtime: float) -> bool:
    try:
        since = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return False
    if since is None:
        return False
    return int(mtime) <= since.timestamp()


@implementer(IPushProducer)
class FileProducer:
    """Writes a file (or any binary stream) to a request one buffer per
    reactor turn, optionally compressing; calls ``done`` once, finished or
    aborted.

    A push producer: when the client reads slower than we send, the
    transport pauses us, so at most a buffer or two per download is held in
    memory, and other connections get their turn between buffers.
    """

    def __init__(
        self,
        request: "WebRequest",
        source: "IO[bytes] | _Replay",
        done: Any,
        reactor: Any,
        compressor: Any = None,
    ) -> None:
        self.request: WebRequest | None = request
        self.source = source
        self.done = done
        self.reactor = reactor
        self.compressor = compressor
        self.paused = False
        self._call: Any = None

    def start(self) -> None:
        request = self.request
        assert request is not None  # started once, before anything can end it
        request.registerProducer(self, True)
        self._schedule()

    def _schedule(self) -> None:
        if self._call is None and not self.paused and self.request is not None:
            self._call = self.reactor.callLater(0, self._produce)

    def _produce(self) -> None:
        self._call = None
        request = self.request
        if request is None or self.paused:
            return
        if request._disconnected:
            self._end()
            return
        try:
            data = self.source.read(CHUNK)
        except OSError as e:
            log.error("{message}", message=errors.FILE_READ_ERROR.format(error=e))
            request.unregisterProducer()
            request.loseConnection()
            self._end()
            return
        if not data:
            if self.compressor is not None:
                tail = self.compressor.flush()
                if tail:
                    request.write(tail)
            request.unregisterProducer()
            request.finish()
            self._end()
            return
        if self.compressor is not None:
            data = self.compressor.compress(data)
        if data:
            request.write(data)
        self._schedule()

    def pauseProducing(self) -> None:
        self.paused = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def resumeProducing(self) -> None:
        self.paused = False
        self._schedule()

    def stopProducing(self) -> None:
        self._end()

    def _end(self) -> None:
        if self.request is None:
            return
        self.request = None
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        try:
            self.source.close()
        finally:
            done, self.done = self.done, None
            if done is not None:
                done()


class FileResponder:
    """Answers web requests with files (see the module docstring)."""

    def __init__(self, server: Any) -> None:
        self.server = server
        web = server.web
        self.cache_control = f"max-age={web.flatFileCacheDuration}, must-revalidate, public".encode()
        self.enable_etag = web.enableEtag

    def not_found(self, request: "WebRequest", connection: "Connection") -> None:
        """404, ``text/html``, ``That file is not found`` -- never the name."""
        self.server.send(request, connection, 404, b"text/html", errors.FILE_NOT_FOUND.encode())

    def serve(self, request: "WebRequest", connection: "Connection", info: FileInfo | None) -> None:
        """Answer with ``info`` (or 404 when None), honouring conditionals."""
        if info is None:
            self.not_found(request, connection)
            return
        raw = connection.raw
        raw.responding = True
        extra = []
        action_headers = {name.lower() for name, _ in raw.response_headers}
        if "cache-control" not in action_headers:
            extra.append((b"Cache-Control", self.cache_control))
        if "content-type" not in action_headers:
            extra.append((b"Content-Type", mime_for_path(info.path).encode()))
        headers = request.requestHeaders
        no_cache = any(b"no-cache" in v.lower() for v in headers.getRawHeaders(b"cache-control", []))
        since = headers.getRawHeaders(b"if-modified-since")
        if since is not None:
            if not no_cache and _not_modified_since(since[0].decode("latin-1"), info.mtime):
                self._not_modified(request, connection, extra)
                return
        elif self.enable_etag:
            etag = weak_etag(info)
            extra.append((b"ETag", etag.encode()))
            match = headers.getRawHeaders(b"if-none-match")
            if match is not None and not no_cache and _etag_matches(match[0].decode("latin-1"), etag):
                self._not_modified(request, connection, extra)
                return
        if not self.enable_etag:
            extra.append((b"Last-Modified", formatdate(info.mtime, usegmt=True).encode()))
        try:
            source = open(info.path, "rb")  # noqa: SIM115 -- closed by the producer
        except OSError as e:
            log.error("{message}", message=errors.FILE_READ_ERROR.format(error=e))
            raw.responding = False
            self.not_found(request, connection)
            return
        self.stream(request, connection, source, info.size, extra)

    def _not_modified(self, request: "WebRequest", connection: "Connection", extra: list[tuple[bytes, bytes]]) -> None:
        head = self.server.header_block(connection)
        head += b"".join(b"%s: %s\r\n" % pair for pair in extra)
        head += b"Date: " + self.server._date() + b"\r\n"
        request.respond(304, head, b"")
        self.server.release(request, connection)

    def stream(
        self,
        request: "WebRequest",
        connection: "Connection",
        source: "IO[bytes] | _Replay",
        length: int | None,
        extra: list[tuple[bytes, bytes]],
    ) -> None:
        """Send ``source`` with the usual headers plus ``extra``.

        A known ``length`` sends ``Content-Length`` (unless compressing);
        None streams chunked.  Small files go out in one write.
        """
        server = self.server
        connection.raw.responding = True
        coding = server.encoding_for(request)
        head_only = request.method == b"HEAD"
        if coding is None and length is not None and length <= CHUNK and not head_only:
            try:
                body = source.read(length + 1)
            finally:
                source.close()
            if len(body) == length:
                head = server.header_block(connection) + b"".join(b"%s: %s\r\n" % p for p in extra)
                head += b"Content-Length: %d\r\nDate: %s\r\n" % (length, server._date())
                request.respond(200, head, body)
                server.release(request, connection)
                return
            source = _Replay(body)  # the file changed size under us: stream what we read
            length = None
        request.setResponseCode(200)
        server.apply_headers(request, connection)
        response_headers = request.responseHeaders
        for name, value in extra:
            response_headers.setRawHeaders(name, [value])
        response_headers.setRawHeaders(b"date", [server._date()])
        compressor = None
        if coding is not None:
            response_headers.setRawHeaders(b"content-encoding", [coding])
            wbits = 31 if coding == b"gzip" else 15
            compressor = zlib.compressobj(6, zlib.DEFLATED, wbits)
        elif length is not None:
            response_headers.setRawHeaders(b"content-length", [b"%d" % length])
        if head_only:
            source.close()
            request.finish()
            server.release(request, connection)
            return
        FileProducer(
            request, source, lambda: server.release(request, connection), server.node.reactor, compressor
        ).start()


class _Replay:
    """A consumed read, offered again as a stream."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, size: int) -> bytes:
        chunk, self.data = self.data[:size], self.data[size:]
        return chunk

    def close(self) -> None:
        self.data = b""

