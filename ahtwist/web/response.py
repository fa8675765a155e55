"""The HTTP response writer: headers, metadata, compression, one write per reply.

Every complete web reply -- an action's JSON, an error envelope, a file
answered in one piece, OPTIONS -- is written here: config headers, then the
action's (last value wins per name), then Set-Cookies; ``Content-Length`` and
``Date``; the whole response in a single ``transport.write``
(:meth:`~ahtwist.web.site.WebRequest.respond`).  Streamed files use
:meth:`ResponseWriter.apply_headers` and Twisted's own writer.
"""

import gzip
import re
import time
import zlib
from email.utils import formatdate
from typing import Any

from ahtwist.connection import Connection
from ahtwist.encoding import dumps_padded
from ahtwist.web.site import WebRequest

JSON_TYPE = b"application/json; charset=utf-8"
JSONP_TYPE = b"application/javascript"
_ENCODING_TOKEN = re.compile(r"\b(gzip|deflate)\b")
_LINE_BREAKS = str.maketrans({"\r": " ", "\n": " ", "\0": " "})


def header_bytes(value: str) -> bytes:
    """Header text as bytes; line breaks become spaces (no header injection)."""
    if "\r" in value or "\n" in value or "\0" in value:  # three C scans: cheaper than translate
        value = value.translate(_LINE_BREAKS)
    return value.encode("latin-1", "replace")


def lines(pairs: list[tuple[bytes, bytes]]) -> bytes:
    """Header pairs as ``Name: value\\r\\n`` lines."""
    return b"".join(b"%s: %s\r\n" % pair for pair in pairs)


def choose_encoding(request: WebRequest) -> str | None:
    """``gzip`` or ``deflate`` (whichever appears first as a whole word)."""
    header = request.getHeader(b"accept-encoding")
    if not header:
        return None
    match = _ENCODING_TOKEN.search(header.decode("latin-1"))
    return match.group(1) if match else None


def raw_message_id(connection: Connection) -> str:
    """The web message id: the uuid after the fingerprint in the id."""
    return connection.id[len(connection.fingerprint) + 1 :]


class ResponseWriter:
    """Writes the web server's complete responses (one per node)."""

    def __init__(self, node: Any) -> None:
        self.node = node
        web = node.config.servers.web
        self.web = web
        self.registry = node.registry
        self.padding = web.padding
        self.server_information = web.metadataOptions.serverInformation
        self.requester_information = web.metadataOptions.requesterInformation
        self.static_headers = [(k, v) for k, v in web.httpHeaders.items()]
        self._static_pairs = [(header_bytes(k), header_bytes(v)) for k, v in self.static_headers]
        self._static_block = lines(self._static_pairs)
        self._date_cache: tuple[int, bytes] = (-1, b"")

    def release(self, request: WebRequest, connection: Connection) -> None:
        """The response is over: remove uploads not moved, forget the connection."""
        body = getattr(request, "body", None)
        if body is not None:
            body.cleanup()
        raw = connection.raw
        if raw is not None:
            raw.connection = None  # break the connection <-> transport cycle
        self.node.discard_connection(connection)

    def send(
        self,
        request: WebRequest,
        connection: Connection,
        status: int,
        content_type: bytes | None,
        body: bytes,
    ) -> None:
        """Write a complete response with a Content-Length, then release."""
        head = self.header_block(connection)
        if content_type is not None and not (
            connection.raw.response_headers
            and any(name.lower() == "content-type" for name, _ in connection.raw.response_headers)
        ):
            head += b"Content-Type: " + content_type + b"\r\n"
        if body and self.web.compress:
            body, coding = self._compress(request, body)
            if coding:
                head += b"Content-Encoding: " + coding + b"\r\n"
        length = b"0" if request.method == b"HEAD" else b"%d" % len(body)
        head += b"Content-Length: " + length + b"\r\nDate: " + self.date() + b"\r\n"
        request.respond(status, head, body)
        self.release(request, connection)

    def respond_error(
        self,
        request: WebRequest,
        connection: Connection,
        status: int,
        message: str,
        params: dict[str, Any],
    ) -> None:
        response: dict[str, Any] = {"error": message}
        if self.server_information:
            response["serverInformation"] = self.server_info(connection.raw.arrived_ms)
        if self.requester_information:
            received = {k: v for k, v in params.items() if k in self.registry.post_variables}
            response["requesterInformation"] = self.requester(connection, received)
        self.send(request, connection, status, JSON_TYPE, dumps_padded(response, self.padding))

    def respond_bare(self, request: WebRequest, status: int) -> None:
        request.channel.persistent = False
        request.respond(status, b"Content-Length: 0\r\nConnection: close\r\n", b"")

    def server_info(self, arrived: int) -> dict[str, Any]:
        now = self.node.now_ms()
        general = self.node.config.general
        return {
            "serverName": general.serverName,
            "apiVersion": general.apiVersion,
            "requestDuration": now - arrived,
            "currentTime": now,
        }

    def requester(self, connection: Connection, received: dict[str, Any]) -> dict[str, Any]:
        message_id = raw_message_id(connection)
        return {
            "id": connection.id,
            "fingerprint": connection.fingerprint,
            "messageId": message_id,
            "remoteIP": connection.remote_ip,
            "receivedParams": received,
        }

    def header_pairs(self, connection: Connection) -> list[tuple[bytes, bytes]]:
        """Config headers, then the action's (last value wins per name,
        case-insensitively), then Set-Cookies most-recent first."""
        raw = connection.raw  # a WebRaw
        if not raw.response_headers:
            pairs = list(self._static_pairs)
            if raw.set_cookie:
                pairs.append((b"Set-Cookie", header_bytes(raw.set_cookie)))
            return pairs
        cookies = [raw.set_cookie] if raw.set_cookie else []
        merged: dict[str, tuple[str, str]] = {}
        for name, value in self.static_headers:
            merged[name.lower()] = (name, value)
        for name, value in raw.response_headers:
            if name.lower() == "set-cookie":
                cookies.append(str(value))
            else:
                merged[name.lower()] = (name, str(value))
        pairs = [(header_bytes(name), header_bytes(value)) for name, value in merged.values()]
        pairs.extend((b"Set-Cookie", header_bytes(c)) for c in reversed(cookies))
        return pairs

    def header_block(self, connection: Connection) -> bytes:
        """:meth:`header_pairs` as ready-to-send header lines."""
        raw = connection.raw  # a WebRaw
        if not raw.response_headers:
            if raw.set_cookie:
                return self._static_block + b"Set-Cookie: " + header_bytes(raw.set_cookie) + b"\r\n"
            return self._static_block
        return lines(self.header_pairs(connection))

    def apply_headers(self, request: WebRequest, connection: Connection) -> None:
        """:meth:`header_pairs` onto a request that writes through Twisted
        (streamed responses such as files)."""
        headers = request.responseHeaders
        for name, value in self.header_pairs(connection):
            headers.addRawHeader(name, value)

    def _compress(self, request: WebRequest, body: bytes) -> tuple[bytes, bytes | None]:
        coding = choose_encoding(request)
        if coding == "gzip":
            return gzip.compress(body, mtime=0), b"gzip"
        if coding == "deflate":
            return zlib.compress(body), b"deflate"
        return body, None

    def date(self) -> bytes:
        now = int(time.time())
        when, text = self._date_cache
        if when != now:
            text = formatdate(now, usegmt=True).encode()
            self._date_cache = (now, text)
        return text

    def encoding_for(self, request: WebRequest) -> bytes | None:
        """The content coding to stream with, or None (``compress`` off or not accepted)."""
        if not self.web.compress:
            return None
        coding = choose_encoding(request)
        return coding.encode() if coding else None
