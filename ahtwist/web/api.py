"""The web server's dispatch: request modes, connections, OPTIONS, redirects, files.

One :class:`WebServer` per node serves every ``--web`` listener.  For each
request it decides the mode (docs/protocol-http.md, 'How a request is routed'), builds a ``web``
:class:`~ahtwist.connection.Connection` (connection middleware may refuse it:
403) and hands it on: api mode to :class:`~ahtwist.web.action_api.ActionAPI`,
file mode to the :class:`~ahtwist.web.static.FileResponder`, the websocket
path to the websocket resource.  Complete responses are written by the
:class:`~ahtwist.web.response.ResponseWriter` in one write each.
"""

import hashlib
import io
from email.utils import formatdate
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.http_headers import _nameEncoder
from zope.interface import implementer

from ahtwist import errors
from ahtwist.connection import Connection, IConnectionTransport
from ahtwist.errors import ConnectionRefused
from ahtwist.ids import new_id, random_bytes
from ahtwist.node import WEB_REQUESTS, Node
from ahtwist.proxies import TrustedProxies
from ahtwist.servers.base import lookup_file
from ahtwist.servers.peer import is_secure, parse_cookies, peer_address, peer_certificate
from ahtwist.web.action_api import ActionAPI
from ahtwist.web.body import FormLimits
from ahtwist.web.mounts import mount_table
from ahtwist.web.response import JSON_TYPE, ResponseWriter, header_bytes, lines
from ahtwist.web.routes import split_path
from ahtwist.web.site import MAX_URL_LENGTH, WebRequest
from ahtwist.web.static import FileResponder

log = Logger(namespace="ahtwist.web")

_DEFAULT_OPTIONS_METHODS = "HEAD, GET, POST, PUT, DELETE, OPTIONS, TRACE"



class WebConnection(Connection):
    """A web request's connection: :class:`Connection` plus the slots
    ``extension`` and ``matched_route`` (set for every one where it is made,
    :meth:`WebServer._connection`); connections of other transports have
    neither and read Connection's class default, None."""

    __slots__ = ("extension", "matched_route")


@implementer(IConnectionTransport)
@attrs.define(slots=True, eq=False)
class WebRaw:
    """``connection.raw`` for web connections (ActionHero's ``rawConnection``),
    and the connection's transport.

    Actions may append ``(name, value)`` to ``response_headers`` and set
    ``response_code``; ``query``, ``body`` and ``files`` are the unfiltered
    parsed request data, ``raw_body`` the bytes as received.  With
    ``data.to_render = False`` an action answers
    itself: ``connection.send_file(name)``, :meth:`send_bytes` or
    :meth:`send_stream`.
    """

    request: Any
    method: str
    server: Any = None
    connection: Any = None
    query: dict[str, Any] = attrs.Factory(dict)
    body: dict[str, Any] = attrs.Factory(dict)
    files: dict[str, Any] = attrs.Factory(dict)
    #: the request body exactly as received: always for bodies that are not
    #: JSON, urlencoded or multipart; for every body with ``saveRawBody``
    raw_body: bytes = b""
    response_headers: list[tuple[str, str]] = attrs.Factory(list)
    response_code: int = 200
    set_cookie: str | None = None
    arrived_ms: int = 0
    #: True once something (send_file, a stream) took over the response
    responding: bool = False

    @property
    def headers(self) -> dict[str, str]:
        """The request headers, lower-case names (repeated ones joined by ``, ``)."""
        return {
            name.decode("latin-1").lower(): ", ".join(v.decode("latin-1") for v in values)
            for name, values in self.request.requestHeaders.getAllRawHeaders()
        }

    @property
    def cookies(self) -> dict[str, str]:
        """The request's cookies (:func:`ahtwist.servers.peer.parse_cookies`)."""
        return parse_cookies(_header_text(self.request, b"cookie"))

    @property
    def secure(self) -> bool:
        """True over TLS."""
        return is_secure(self.request.channel.transport)

    @property
    def peer_certificate(self) -> Any:
        """The client's TLS certificate when it presented one, else None."""
        return peer_certificate(self.request.channel.transport)

    # IConnectionTransport
    def send_message(self, message: dict[str, Any]) -> None:
        """Web clients cannot be pushed to; the message is dropped (logged)."""
        log.debug("send_message on a web connection ignored: {message!r}", message=message)

    def send_file(self, path: str) -> None:
        """Answer with a file from the public folders (a name, or an absolute
        path inside one of them), exactly as a static file request."""
        if self.connection is None or self.responding:
            return
        self.server.static.serve(self.request, self.connection, lookup_file(self.server.node.files, path))

    def send_bytes(self, data: bytes, mime: str = "application/octet-stream") -> None:
        """Answer with ``data`` under ``mime``."""
        self.send_stream(io.BytesIO(bytes(data)), mime, len(data))

    def send_stream(self, source: Any, mime: str = "application/octet-stream", length: int | None = None) -> None:
        """Answer with a binary stream (``read(n)``/``close()``); without a
        ``length`` it is sent chunked."""
        if self.connection is None or self.responding:
            return
        self.server.static.stream(
            self.request, self.connection, source, length, [(b"Content-Type", header_bytes(mime))]
        )

    def close(self) -> None:
        """Drop the client (server-side ``connection.destroy()``)."""
        if self.connection is not None:
            self.request.loseConnection()
            self.server.release(self.request, self.connection)




def _header_text(request: WebRequest, name: bytes) -> str | None:
    """A request header as text (the first one), or None."""
    values = request.requestHeaders.getRawHeaders(name)
    return values[0].decode("latin-1") if values else None




class FingerprintCookie:
    """Writes the fingerprint cookie: ``HttpOnly`` and ``SameSite=Lax`` unless
    the settings say otherwise, ``Secure`` when the client used TLS (directly
    or through a trusted proxy) unless ``secure`` is set.  A new web client
    gets one on every request, so everything but the fingerprint, the expiry
    (once a second) and the TLS check is built once."""

    def __init__(self, key: str, settings: dict[str, Any], proxies: TrustedProxies, clock: Any) -> None:
        self.key = key
        self.proxies = proxies
        self.clock = clock
        self.lifetime = settings.get("expires", 3600000) / 1000
        self.path = settings.get("path", "/")
        self.secure = settings.get("secure")
        head = f"domain={settings['domain']};" if settings.get("domain") else ""
        if settings.get("httpOnly", True):
            head += "HttpOnly;"
        same_site = settings.get("sameSite", "Lax")
        tail = f"SameSite={same_site};" if same_site else ""
        #: the attributes after the expiry, without and with ``Secure``
        self.tails = (head + tail, head + "Secure;" + tail)
        self._expires: tuple[int, str] = (-1, "")

    def __call__(self, fingerprint: str, request: WebRequest) -> str:
        now = int(self.clock.seconds())
        when, middle = self._expires
        if when != now:
            middle = f";path={self.path};expires={formatdate(now + self.lifetime, usegmt=True)};"
            self._expires = (now, middle)
        secure = self.secure
        if secure is None:
            channel = request.channel
            proto = request.requestHeaders._rawHeaders.get(b"X-Forwarded-Proto") if self.proxies.networks else None
            tls = getattr(channel, "tls", None)  # WebChannel knows it once per connection
            secure = (request.isSecure() if tls is None else tls) or (
                proto is not None
                and self.proxies.scheme(channel.peer()[0], proto[-1].decode("latin-1"), False) == "https"
            )
        return f"{self.key}={fingerprint}{middle}{self.tails[bool(secure)]}"


class WebServer:
    """Serves HTTP for one node (all web listeners share it)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        config = node.config
        web = config.servers.web
        self.web = web
        self.registry = node.registry
        self.routes = config.routes
        self.padding = web.padding
        self.api_prefix = split_path(web.urlPathForActions)
        self.file_prefix = split_path(web.urlPathForFiles)
        self.allowed_hosts = web.allowedRequestHosts
        self.proxies = TrustedProxies.from_strings(web.trustedProxies)
        self.query_options = web.queryParseOptions
        form = web.formOptions
        self.form_limits = FormLimits(
            max_fields_size=form.maxFieldsSize,
            max_file_size=form.maxFileSize,
            max_total_file_size=form.maxTotalFileSize,
            upload_dir=form.uploadDir,
            keep_extensions=form.keepExtensions,
            parameter_limit=web.queryParseOptions.parameterLimit,
        )
        fp = web.fingerprintOptions
        self.cookie_key = fp.cookieKey
        self.cookie_key_bytes = fp.cookieKey.encode()
        #: the fingerprint header's name as Twisted's Headers store it
        self.fingerprint_header = _nameEncoder.encode(b"x-" + fp.cookieKey.lower().encode())
        self.set_cookies = fp.toSetCookie
        self.static_fingerprint = fp.onlyStaticElements
        self.cookie_settings = dict(fp.settings)
        #: complete responses; the JSON action API
        self.writer = writer = ResponseWriter(node)
        self.api = ActionAPI(node, writer)
        # the writer's methods, for the file responder and WebRaw
        self.send = writer.send
        self.release = writer.release
        self.header_pairs = writer.header_pairs
        self.header_block = writer.header_block
        self.apply_headers = writer.apply_headers
        self.encoding_for = writer.encoding_for
        self._date = writer.date
        self._lower_static = {k.lower() for k, _ in writer.static_headers}
        self.static = FileResponder(self)
        #: the websocket resource mounted at servers.websocket.path, if any
        self.websocket_resource: Any = None
        self.websocket_path = config.servers.websocket.path.encode()
        #: the Primus-compatible websocket resource (servers.websocket.primusPath), if any
        self.primus_resource: Any = None
        self.primus_path = config.servers.websocket.primusPath.encode()
        #: Klein apps (and other resources) at path prefixes (:mod:`ahtwist.web.mounts`)
        self.mounts = mount_table(node)
        self.mount_index = self.mounts.by_segment
        self.save_raw_body = web.saveRawBody
        self._cookie = FingerprintCookie(fp.cookieKey, self.cookie_settings, self.proxies, node.reactor)

    # --- entry point ---------------------------------------------------------

    def handle(self, request: WebRequest) -> None:
        if self.websocket_resource is not None and (
            request.path == self.websocket_path
            or (request.path == self.primus_path and self.primus_resource is not None)
        ):
            if self.allowed_hosts and not self._host_allowed(request):
                self._redirect(request)
            elif self.node.stopping:
                self.writer.respond_bare(request, 503)  # draining: no new websockets
            else:
                self._serve_websocket(request)
            return
        if request.mount is not None and self.mounts.dispatch(request):
            return
        node = self.node
        node.stats.increment(WEB_REQUESTS)
        arrived = node.now_ms()
        if len(request.uri) > MAX_URL_LENGTH:
            self.writer.respond_bare(request, 414)
            return
        if self.allowed_hosts and not self._host_allowed(request):
            self._redirect(request)
            return
        try:
            path = request.path.decode("utf-8")
        except UnicodeDecodeError:
            path = request.path.decode("latin-1")
        connection = self._connection(request, arrived)
        opened = self.node.add_connection(connection)
        if not isinstance(opened, Connection):  # a Deferred: connection middleware waited or refused
            opened.addCallbacks(
                lambda _: self._serve(request, connection, path),
                self._refused,
                errbackArgs=(request, connection),
            )
            return
        self._serve(request, connection, path)

    def _serve(self, request: WebRequest, connection: WebConnection, path: str) -> None:
        if request._disconnected:
            self.release(request, connection)
            return
        if request.method == b"OPTIONS":
            self._options(request, connection)
            return
        parts = split_path(path)
        mode, rest = self._mode(parts)
        connection.extension = _extension(path)
        if mode == "api":
            self.api.serve(request, connection, rest)
        else:
            self._file(request, connection, rest)

    def _refused(self, failure: Any, request: WebRequest, connection: Connection) -> None:
        """Connection middleware refused the request: 403, the error envelope."""
        if not failure.check(ConnectionRefused):
            log.failure("accepting a web request failed", failure)
            self.writer.respond_error(request, connection, 500, errors.INTERNAL_ERROR, {})
            return
        self.writer.respond_error(request, connection, 403, failure.value.error, {})

    def _mode(self, parts: list[str]) -> tuple[str, list[str]]:
        api, files = self.api_prefix, self.file_prefix
        if parts:
            first = parts[0]
            if len(api) == 1 and first == api[0]:
                return "api", parts[1:]
            if (len(files) == 1 and first == files[0]) or first == "file":
                return "file", parts[1:]
            if len(api) > 1 and parts[: len(api)] == api:
                return "api", parts[len(api) :]
            if len(files) > 1 and parts[: len(files)] == files:
                return "file", parts[len(files) :]
        return self.web.rootEndpointType, parts

    # --- connections ---------------------------------------------------------

    def _connection(self, request: WebRequest, arrived: int) -> WebConnection:
        fingerprint = None
        headers = request.requestHeaders._rawHeaders  # canonical names (Twisted's Headers)
        cookie_header = headers.get(b"Cookie")
        cookie = (
            parse_cookies(b"; ".join(cookie_header).decode("latin-1")).get(self.cookie_key)
            if cookie_header
            else None
        )
        if cookie:
            fingerprint = cookie
        else:
            header = headers.get(self.fingerprint_header)
            if header and header[0]:
                fingerprint = header[0].decode("latin-1")
        set_cookie = None
        ip, port = request.channel.peer()
        # X-Forwarded-For counts only from a trusted proxy: none trusted, no lookup
        forwarded = headers.get(b"X-Forwarded-For") if self.proxies.networks else None
        if forwarded:
            fport = headers.get(b"X-Forwarded-Port")
            ip, port = self.proxies.client(
                ip, port, forwarded[-1].decode("latin-1"), fport[-1].decode("latin-1") if fport else None
            )
        if fingerprint is None:
            fingerprint = self._new_fingerprint(request, ip)
            if self.set_cookies:
                set_cookie = self._cookie(fingerprint, request)
        message_id = new_id()
        connection = WebConnection(
            "web",
            ip,
            port,
            arrived,
            id=f"{fingerprint}-{message_id}",
            fingerprint=fingerprint,
        )
        connection.extension = connection.matched_route = None
        raw = WebRaw(
            request=request,
            method=request.method.decode("latin-1"),
            server=self,
            connection=connection,
            set_cookie=set_cookie,
            arrived_ms=arrived,
        )
        connection.raw = connection.transport = raw
        return connection

    def _new_fingerprint(self, request: WebRequest, ip: str) -> str:
        if not self.static_fingerprint:
            return random_bytes(20).hex()
        traits = [ip.encode()]
        for name in (b"user-agent", b"accept", b"accept-language", b"accept-encoding"):
            traits.append(b",".join(request.requestHeaders.getRawHeaders(name, [])))
        return hashlib.sha1(b"\0".join(traits)).hexdigest()

    def respond_too_large(self, request: WebRequest) -> None:
        """413 for a body over the form limits (called before it is complete)."""
        self.node.stats.increment(WEB_REQUESTS)
        connection = self._connection(request, self.node.now_ms())
        opened = self.node.add_connection(connection)
        if isinstance(opened, Deferred):  # refused or waiting: the 413 is the answer regardless
            opened.addErrback(lambda _: None)
        self.writer.respond_error(request, connection, 413, errors.BODY_TOO_LARGE, {})

    # --- OPTIONS, redirects ------------------------------------------------------

    def _options(self, request: WebRequest, connection: Connection) -> None:
        pairs = self.header_pairs(connection)
        if "access-control-allow-methods" not in self._lower_static:
            pairs.append((b"Access-Control-Allow-Methods", _DEFAULT_OPTIONS_METHODS.encode()))
        if "access-control-allow-origin" not in self._lower_static:
            pairs.append((b"Access-Control-Allow-Origin", b"*"))
        pairs += [(b"Content-Type", JSON_TYPE), (b"Content-Length", b"0"), (b"Date", self.writer.date())]
        request.respond(200, lines(pairs), b"")
        self.release(request, connection)

    def _host_allowed(self, request: WebRequest) -> bool:
        proto = request.getHeader(b"x-forwarded-proto")
        scheme = self.proxies.scheme(
            peer_address(request.getClientAddress())[0], proto.decode("latin-1") if proto else None, request.isSecure()
        )
        host = (request.getHeader(b"host") or b"").decode("latin-1")
        return f"{scheme}://{host}" in self.allowed_hosts

    def _redirect(self, request: WebRequest) -> None:
        url = self.allowed_hosts[0] + request.uri.decode("latin-1")
        body = errors.REDIRECTING.format(url=url).encode("utf-8")
        pairs = [(b"Location", header_bytes(url)), (b"Content-Length", b"%d" % len(body))]
        request.respond(302, lines(pairs), body)

    # --- file mode ----------------------------------------------------------------

    def _file(self, request: WebRequest, connection: Connection, parts: list[str]) -> None:
        files = self.node.files
        info = None
        if self.routes.has_dir_routes:
            verb = request.method.decode("latin-1").lower()
            for v in ("head", "get") if verb == "head" else ("get",) if verb == "trace" else (verb,):
                found = self.routes.match_dir(v, parts)
                if found is not None:
                    route, rest = found
                    connection.matched_route = route
                    self.static.serve(request, connection, files.resolve_in([route.dir], rest, decode=True))
                    return
        info = files.resolve(parts, decode=True)
        self.static.serve(request, connection, info)

    # --- websocket ----------------------------------------------------------------

    def _serve_websocket(self, request: WebRequest) -> None:
        """Hand the request to the websocket resource (not a web request).

        When the resource takes the transport over, the HTTP channel is done:
        it is dropped from the site's open channels (it will never see
        ``connectionLost``), so a stop does not try to drain it and it can
        be collected.
        """
        from twisted.web.server import NOT_DONE_YET

        channel = request.channel
        resource = self.websocket_resource if request.path == self.websocket_path else self.primus_resource
        result = resource.render(request)
        if result is NOT_DONE_YET:
            channels = getattr(getattr(channel, "site", None), "channels", None)
            if channels is not None:
                channels.discard(channel)
            return
        if isinstance(result, bytes) and result:
            request.write(result)
        request.finish()


def _extension(path: str) -> str | None:
    name = path.rsplit("/", 1)[-1]
    if "." not in name:
        return None
    return name.rsplit(".", 1)[1] or None

