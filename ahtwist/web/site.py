"""HTTP plumbing on twisted.web: limits, streaming bodies, no Server header.

:class:`WebSite` is a ``twisted.web.server.Site`` whose requests skip resource
traversal and go straight to :class:`ahtwist.web.api.WebServer`, which decides
everything (the ActionHero request modes do not map onto a resource tree).
The request class reads bodies through :mod:`ahtwist.web.body` as they arrive,
so an oversize body is answered 413 and the connection closed without the
body ever being held whole; the channel answers an over-long request line
with 414.
"""

from http import HTTPStatus
from io import BytesIO
from typing import Any, cast

from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.http import NO_BODY_CODES
from twisted.web.http_headers import Headers

from ahtwist.servers.peer import is_secure, peer_address
from ahtwist.servers.write import write_now
from ahtwist.web.body import NO_BODY, BodyReader, reader_for
from ahtwist.web.request_head import parse_head

#: longest request target (path + query) accepted, in bytes
MAX_URL_LENGTH = 8192


class WebRequest(server.Request):
    """One HTTP request; see the module docstring."""

    defaultContentType = None
    channel: "WebChannel"
    site: "WebSite"
    body: BodyReader
    query = b""
    mount = None
    _rejected = False

    def __init__(self, channel: "WebChannel", queued: object = None) -> None:
        # twisted.web.server.Request.__init__ (with http.Request.__init__ and
        # Componentized.__init__) sets exactly these; the peer and host
        # addresses are the channel's, made once per connection instead of
        # twice per request, and form bodies are never parsed into args
        self.notifications = []
        self.channel = channel
        self.client, self.host = channel.addresses()
        self.requestHeaders = Headers()
        self.received_cookies = {}
        self.responseHeaders = Headers()
        self.cookies = []
        self.transport = channel.transport
        self.queued = False
        self._parsePOSTFormSubmission = False
        self._adapterCache = {}

    def gotLength(self, length: int | None) -> None:
        channel = self.channel
        self.prepare_body(length, getattr(channel, "_command", b"GET"), channel._path)

    def prepare_body(self, length: int | None, command: bytes, target: bytes) -> None:
        """The headers are complete: choose the body reader (from the method
        and Content-Type) and refuse a declared length over the limits."""
        self.content = BytesIO()  # bodies are read by self.body; Twisted closes this one
        web = self.channel.site.server  # the ahtwist.web.api.WebServer
        content_type = self.requestHeaders._rawHeaders.get(b"Content-Type")
        #: the mounted app serving this request (:mod:`ahtwist.web.mounts`), if any
        self.mount = web.mounts.match(target.partition(b"?")[0]) if web.mount_index else None
        if self.mount is not None:
            self.body = BodyReader(web.form_limits.max_fields_size, keep=True)
        else:
            self.body = reader_for(
                command,
                content_type[0] if content_type else None,
                web.form_limits,
                web.save_raw_body,
                length,
            )
        self.body.declared(length)
        if self.body.too_large:
            self._reject_body()

    def handleContentChunk(self, data: bytes) -> None:
        if self._rejected:
            return
        if self.body is NO_BODY:  # a chunked body on a GET: read it after all
            web = self.channel.site.server
            self.body = NO_BODY.reader(web.form_limits, web.save_raw_body)
        self.body.feed(data)
        if self.body.too_large:
            self._reject_body()

    def _reject_body(self) -> None:
        """Answer 413 now, before the body is complete, and close."""
        self._rejected = True
        channel = self.channel
        channel.body_rejected = True
        channel.persistent = False
        self._set_target(channel._command, channel._path, channel._version)
        self.body.cleanup()
        self.site = channel.site
        self.responseHeaders.setRawHeaders(b"connection", [b"close"])
        self.site.server.respond_too_large(self)

    def _set_target(self, command: bytes, path: bytes, version: bytes) -> None:
        self.method, self.uri, self.clientproto = command, path, version
        self.path, _, self.query = path.partition(b"?")
        self.args = {}

    def parseCookies(self) -> None:
        """Cookies are parsed once, by :func:`ahtwist.servers.peer.parse_cookies`
        (``connection.raw.cookies``), not into ``received_cookies``."""

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        # No form parsing into self.args here: bodies were read by self.body.
        self._set_target(command, path, version)
        self.process()

    def process(self) -> None:
        self.site = self.channel.site
        self.prepath = []
        self.postpath = []
        self.site.server.handle(self)

    def respond(self, status: int, headers: bytes, body: bytes) -> None:
        """Write a whole response at once -- status line, ``headers`` (complete
        ``Name: value\\r\\n`` lines, plus any already in ``responseHeaders``
        such as ``Connection: close``) and ``body`` -- then finish.  The fast
        path for complete replies: it skips Twisted's per-header bookkeeping.
        No-op if the client has gone."""
        if self._disconnected or self.finished:
            return
        self.code = status
        self.code_message = reason = reason_phrase(status)
        head = b"%s %d %s\r\n" % (self.clientproto, status, reason)
        if self.responseHeaders._rawHeaders:
            head += b"".join(
                b"%s: %s\r\n" % (name, value)
                for name, values in self.responseHeaders.getAllRawHeaders()
                for value in values
            )
        if body and self.method != b"HEAD" and status not in NO_BODY_CODES:
            self.sentLength = len(body)
            data = head + headers + b"\r\n" + body
        else:
            data = head + headers + b"\r\n"
        self.startedWriting = 1
        write_now(self.channel.transport, data)  # what channel.write does, sent at once
        self.finish()

    def connectionLost(self, reason: Any) -> None:
        producer = self.producer
        super().connectionLost(reason)
        if producer is not None:
            self.producer = None
            producer.stopProducing()  # a streamed file: close it, release the connection
        body = getattr(self, "body", None)
        if body is not None:
            body.cleanup()


# Node's phrases where Python's differ (clients of ActionHero saw these)
_REASONS: dict[int, bytes] = {413: b"Payload Too Large", 414: b"URI Too Long"}


def reason_phrase(status: int) -> bytes:
    """The standard reason phrase (Twisted's table lacks some, e.g. 422)."""
    phrase = _REASONS.get(status)
    if phrase is None:
        try:
            phrase = HTTPStatus(status).phrase.encode()
        except ValueError:
            phrase = b"Status %d" % status
        _REASONS[status] = phrase
    return phrase


class WebChannel(http.HTTPChannel):
    """HTTPChannel answering over-long request lines with 414 and ignoring
    the rest of a body already answered with 413."""

    body_rejected = False
    #: the connection is TLS (known once connected; asked per request by the cookie)
    tls = False
    #: set by the site's buildProtocol
    site: "WebSite"
    #: a TCP, TLS or unix transport (all have abortConnection)
    transport: ITCPTransport

    #: (peer, host) addresses, made at the first request
    _addresses: tuple[Any, Any] | None = None
    _peer: tuple[str, int] | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self.tls = is_secure(self.transport)
        site = self.site
        site.channels.add(self)
        site.opened += 1

    def peer(self) -> tuple[str, int]:
        """The client's ``(host, port)`` (:func:`~ahtwist.servers.peer.peer_address`)."""
        found = self._peer
        if found is None:
            found = self._peer = peer_address(self.addresses()[0])
        return found

    def addresses(self) -> tuple[Any, Any]:
        """The connection's (peer, host) addresses, as every request has them
        (``getClientAddress()``, ``getHost()``)."""
        addresses = self._addresses
        if addresses is None:
            addresses = self._addresses = (self.transport.getPeer(), self.transport.getHost())
        return addresses

    def dataReceived(self, data: bytes) -> None:
        # A read that is exactly one complete request head without a body,
        # between requests, is parsed in one go (parse_head); anything else
        # -- a partial head, pipelined requests, a body, anything parse_head
        # is not sure of -- goes through Twisted's line parser as before.
        if (
            self._HTTPChannel__first_line == 1  # type: ignore[attr-defined]
            and not self._handlingRequest
            and not self._buffer
            and self.line_mode
            and self.persistent
            and not self.paused
            and not self._busyReceiving
        ):
            head = parse_head(data, self.maxHeaders)
            if head is not None and not self.transport.disconnecting:  # type: ignore[attr-defined]
                self._simple_request(*head)
                return
        super().dataReceived(data)

    def _simple_request(self, command: bytes, target: bytes, version: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        """What Twisted's ``lineReceived`` (for the request line and each
        header), ``allHeadersReceived`` and ``allContentReceived`` do for a
        request head with no body, Expect or Content-Length/Transfer-Encoding.

        One difference: Twisted stops the idle timeout while a request is
        answered and starts a new one when it is done; a request answered
        (on a connection kept open) before this returns keeps the timeout
        this read restarted instead: the same deadline, give or take the
        microseconds of the answer, without a cancelled and a new timer.
        """
        self.resetTimeout()
        request = cast(WebRequest, self.requestFactory(self, len(self.requests)))
        self.requests.append(request)
        raw = request.requestHeaders._rawHeaders
        for name, value in headers:
            values = raw.get(name)
            if values is None:
                raw[name] = [value]
            else:
                values.append(value)
        self.persistent = self.checkPersistence(request, version)
        request.prepare_body(0, command, target)
        if request._rejected:
            return
        self._handlingRequest = True
        self.line_mode = 0  # setRawMode(): later reads are buffered until the answer
        saved, self._savedTimeOut = self._savedTimeOut, None
        request.requestReceived(command, target, version)
        if self._handlingRequest and self.timeOut:
            # not answered yet, the connection closing, or taken over (a
            # websocket): no idle timeout, as Twisted has it
            self._savedTimeOut = self.setTimeout(None)
        else:
            self._savedTimeOut = saved

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.site.channels.discard(self)
        super().connectionLost(reason)

    def lineReceived(self, line: bytes) -> None:
        # The first line of a request: refuse a target over MAX_URL_LENGTH
        # here, before Twisted's header-size limit turns it into a bare 400.
        first_line = getattr(self, "_HTTPChannel__first_line", 0)
        if first_line and len(line) > MAX_URL_LENGTH + 64:
            self._respond_raw_and_close(b"414 URI Too Long")
            return
        if not first_line and line[:1] in (b" ", b"\t"):
            # obs-fold (a header continued on the next line, RFC 9112 5.2):
            # refused, as every other way of reading a header two ways is
            self._respondToBadRequestAndDisconnect()
            return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        if getattr(self, "_HTTPChannel__first_line", 0):
            self._respond_raw_and_close(b"414 URI Too Long")
        else:
            self._respond_raw_and_close(b"431 Request Header Fields Too Large")

    def _respond_raw_and_close(self, status: bytes) -> None:
        self.transport.write(
            b"HTTP/1.1 " + status + b"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )
        self.dataReceived = lambda data: None  # type: ignore[method-assign]
        self.loseConnection()

    def allContentReceived(self) -> None:
        if self.body_rejected:
            return
        super().allContentReceived()

    def _send100Continue(self) -> None:
        if not self.body_rejected:
            super()._send100Continue()


class WebSite(server.Site):
    """A Site bound to one :class:`WebServer`; no access log (actions log).

    It knows its open channels so a stop can drain them, and counts the
    connections it ever accepted (``opened``, for the metrics).
    """

    # Twisted types this as its HTTP/1.1-or-HTTP/2 switching wrapper; any
    # HTTPChannel works here (we serve HTTP/1.x only)
    protocol = WebChannel  # type: ignore[assignment]
    # a Request subclass whose constructor wants a WebChannel
    requestFactory = WebRequest  # type: ignore[assignment]

    def __init__(self, web_server: Any, timeout: float = 60, reactor: Any = None) -> None:
        super().__init__(
            resource=None, requestFactory=WebRequest, timeout=timeout, reactor=reactor
        )
        self.server = web_server
        self.displayTracebacks = False
        self.noisy = False
        self.channels: set[WebChannel] = set()
        self.opened = 0
        web_server.node.web_sites.append(self)

    def drain(self, wait: Any) -> Any:
        """Close idle connections now and busy ones after their response;
        ``wait()`` returns a Deferred firing when the wait is over, after
        which whatever is still open is aborted."""
        for channel in list(self.channels):
            channel.persistent = False
            if not channel.requests:
                channel.loseConnection()

        def force(result: Any) -> Any:
            for channel in list(self.channels):
                channel.transport.abortConnection()
            return result

        return wait().addCallback(force)

    def log(self, request: Any) -> None:
        pass
