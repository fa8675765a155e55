"""The web server: request modes, the JSON action API, OPTIONS/TRACE, headers.

One :class:`WebServer` per node serves every ``--web`` listener.  For each
request it decides the mode (docs/protocol-http.md, 'How a request is routed'), builds a ``web``
:class:`~ahtwist.connection.Connection`, gathers params (query < files <
body fields < route variables), resolves the action and hands it to the
transport-neutral processor, then renders ActionHero's JSON reply.
"""

import gzip
import hashlib
import io
import os
import re
import time
import zlib
from email.utils import formatdate
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from ahtwist import errors
from ahtwist.actions import processor as status_names
from ahtwist.actions.processor import ActionData
from ahtwist.connection import Connection, IConnectionTransport, new_id
from ahtwist.encoding import dumps_padded
from ahtwist.errors import ConnectionRefused
from ahtwist.files import percent_decode
from ahtwist.node import WEB_REQUESTS, Node
from ahtwist.proxies import TrustedProxies
from ahtwist.servers.base import lookup_file
from ahtwist.servers.peer import is_secure, parse_cookies, peer_address, peer_certificate
from ahtwist.web.body import FormError, FormLimits
from ahtwist.web.mime import mime_for_extension
from ahtwist.web.query import parse_query
from ahtwist.web.routes import VERBS, split_path
from ahtwist.web.site import MAX_URL_LENGTH, WebRequest
from ahtwist.web.static import FileResponder

log = Logger(namespace="ahtwist.web")

JSON_TYPE = b"application/json; charset=utf-8"
JSONP_TYPE = b"application/javascript"
_DEFAULT_OPTIONS_METHODS = "HEAD, GET, POST, PUT, DELETE, OPTIONS, TRACE"
_ENCODING_TOKEN = re.compile(r"\b(gzip|deflate)\b")
_JSONP_ESCAPES = str.maketrans(
    {"&": "&amp;", '"': "&quot;", "'": "&#39;", "<": "&lt;", ">": "&gt;", "(": None, ")": None}
)

_STATUS_CODES: dict[str | None, int] = {
    status_names.UNKNOWN_ACTION: 404,
    status_names.MISSING_PARAMS: 422,
    status_names.SERVER_ERROR: 500,
}


@implementer(IConnectionTransport)
@attrs.define(slots=True, eq=False)
class WebRaw:
    """``connection.raw`` for web connections (ActionHero's ``rawConnection``),
    and the connection's transport.

    Actions may append ``(name, value)`` to ``response_headers`` and set
    ``response_code``; ``query``, ``body`` and ``files`` are the unfiltered
    parsed request data.  With ``data.to_render = False`` an action answers
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
            self.request, self.connection, source, length, [(b"Content-Type", _header_bytes(mime))]
        )

    def close(self) -> None:
        """Drop the client (server-side ``connection.destroy()``)."""
        if self.connection is not None:
            self.request.loseConnection()
            self.server.release(self.request, self.connection)


_LINE_BREAKS = str.maketrans({"\r": " ", "\n": " ", "\0": " "})


def _header_text(request: WebRequest, name: bytes) -> str | None:
    """A request header as text (the first one), or None."""
    values = request.requestHeaders.getRawHeaders(name)
    return values[0].decode("latin-1") if values else None


def _header_bytes(value: str) -> bytes:
    """Header text as bytes; line breaks become spaces (no header injection)."""
    return value.translate(_LINE_BREAKS).encode("latin-1", "replace")


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
        self.fingerprint_header = b"x-" + fp.cookieKey.lower().encode()
        self.set_cookies = fp.toSetCookie
        self.static_fingerprint = fp.onlyStaticElements
        self.cookie_settings = dict(fp.settings)
        self.static_headers = [(k, v) for k, v in web.httpHeaders.items()]
        self._static_pairs = [(_header_bytes(k), _header_bytes(v)) for k, v in self.static_headers]
        self._static_block = _lines(self._static_pairs)
        self._lower_static = {k.lower() for k, _ in self.static_headers}
        self.server_information = web.metadataOptions.serverInformation
        self.requester_information = web.metadataOptions.requesterInformation
        self.static = FileResponder(self)
        #: the OpenAPI document and /docs (ahtwist.apidocs.APIDocs), if enabled
        self.apidocs: Any = None
        #: the websocket resource mounted at servers.websocket.path, if any
        self.websocket_resource: Any = None
        self.websocket_path = config.servers.websocket.path.encode()
        self._expires_cache: tuple[int, str] = (-1, "")
        self._date_cache: tuple[int, bytes] = (-1, b"")

    # --- entry point ---------------------------------------------------------

    def handle(self, request: WebRequest) -> None:
        if self.websocket_resource is not None and request.path == self.websocket_path:
            if self.allowed_hosts and not self._host_allowed(request):
                self._redirect(request)
            elif self.node.stopping:
                self._respond_bare(request, 503)  # draining: no new websockets
            else:
                self._serve_websocket(request)
            return
        node = self.node
        node.stats.increment(WEB_REQUESTS)
        arrived = node.now_ms()
        if len(request.uri) > MAX_URL_LENGTH:
            self._respond_bare(request, 414)
            return
        if self.allowed_hosts and not self._host_allowed(request):
            self._redirect(request)
            return
        if self.apidocs is not None and self.apidocs.claims(request.path):
            self.apidocs.serve(request)  # before the action API: it may be under /api
            return
        try:
            path = request.path.decode("utf-8")
        except UnicodeDecodeError:
            path = request.path.decode("latin-1")
        connection = self._connection(request, arrived)
        opened = self.node.add_connection(connection)
        if isinstance(opened, Deferred):  # connection middleware waited or refused
            opened.addCallbacks(
                lambda _: self._serve(request, connection, path),
                self._refused,
                errbackArgs=(request, connection),
            )
            return
        self._serve(request, connection, path)

    def _serve(self, request: WebRequest, connection: Connection, path: str) -> None:
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
            self._api(request, connection, rest)
        else:
            self._file(request, connection, rest)

    def _refused(self, failure: Any, request: WebRequest, connection: Connection) -> None:
        """Connection middleware refused the request: 403, the error envelope."""
        if not failure.check(ConnectionRefused):
            log.failure("accepting a web request failed", failure)
            self._respond_error(request, connection, 500, errors.INTERNAL_ERROR, {})
            return
        self._respond_error(request, connection, 403, failure.value.error, {})

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

    def _connection(self, request: WebRequest, arrived: int) -> Connection:
        fingerprint = None
        cookie_header = request.requestHeaders.getRawHeaders(b"cookie")
        cookie = (
            parse_cookies(b"; ".join(cookie_header).decode("latin-1")).get(self.cookie_key)
            if cookie_header
            else None
        )
        if cookie:
            fingerprint = cookie
        else:
            header = request.requestHeaders.getRawHeaders(self.fingerprint_header)
            if header and header[0]:
                fingerprint = header[0].decode("latin-1")
        set_cookie = None
        ip, port = peer_address(request.getClientAddress())
        forwarded = request.getHeader(b"x-forwarded-for")
        if forwarded:
            fport = request.getHeader(b"x-forwarded-port")
            ip, port = self.proxies.client(
                ip, port, forwarded.decode("latin-1"), fport.decode("latin-1") if fport else None
            )
        if fingerprint is None:
            fingerprint = self._new_fingerprint(request, ip)
            if self.set_cookies:
                set_cookie = self._cookie(fingerprint, request)
        message_id = new_id()
        connection = Connection(
            "web",
            ip,
            port,
            arrived,
            id=f"{fingerprint}-{message_id}",
            fingerprint=fingerprint,
        )
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
            return os.urandom(20).hex()
        traits = [ip.encode()]
        for name in (b"user-agent", b"accept", b"accept-language", b"accept-encoding"):
            traits.append(b",".join(request.requestHeaders.getRawHeaders(name, [])))
        return hashlib.sha1(b"\0".join(traits)).hexdigest()

    def _cookie(self, fingerprint: str, request: WebRequest) -> str:
        """The fingerprint cookie: ``HttpOnly`` and ``SameSite=Lax`` unless
        the settings say otherwise, ``Secure`` when the client used TLS
        (directly or through a trusted proxy) unless ``secure`` is set."""
        settings = self.cookie_settings
        expires_ms = settings.get("expires", 3600000)
        now = int(self.node.reactor.seconds())
        when, text = self._expires_cache
        if when != now:
            text = formatdate(now + expires_ms / 1000, usegmt=True)
            self._expires_cache = (now, text)
        cookie = f"{self.cookie_key}={fingerprint};path={settings.get('path', '/')};expires={text};"
        if settings.get("domain"):
            cookie += f"domain={settings['domain']};"
        if settings.get("httpOnly", True):
            cookie += "HttpOnly;"
        secure = settings.get("secure")
        if secure is None:
            proto = request.getHeader(b"x-forwarded-proto")
            secure = request.isSecure() or (
                proto is not None
                and self.proxies.scheme(peer_address(request.getClientAddress())[0], proto.decode("latin-1"), False) == "https"
            )
        if secure:
            cookie += "Secure;"
        same_site = settings.get("sameSite", "Lax")
        if same_site:
            cookie += f"SameSite={same_site};"
        return cookie

    def release(self, request: WebRequest, connection: Connection) -> None:
        """The response is over: remove uploads not moved, forget the connection."""
        body = getattr(request, "body", None)
        if body is not None:
            body.cleanup()
        raw = connection.raw
        if raw is not None:
            raw.connection = None  # break the connection <-> transport cycle
        self.node.destroy_connection(connection)

    # --- api mode ------------------------------------------------------------

    def _api(self, request: WebRequest, connection: Connection, parts: list[str]) -> None:
        raw: WebRaw = connection.raw
        query_options = self.query_options
        try:
            query = (
                parse_query(
                    request.query,
                    query_options.depth,
                    query_options.parameterLimit,
                    query_options.arrayLimit,
                )
                if request.query
                else {}
            )
        except ValueError as e:
            log.info("{message}", message=errors.URI_DECODE_ERROR.format(error=e))
            self._respond_error(request, connection, 400, errors.FORM_ERROR, {})
            return
        try:
            fields, files = request.body.finish()
        except FormError as e:
            log.info("bad request body from {ip}: {e}", ip=connection.remote_ip, e=e)
            self._respond_error(request, connection, 400, errors.FORM_ERROR, query)
            return
        raw.query, raw.body, raw.files = query, fields, files
        params = dict(query)
        if files:
            params.update(files)
        if fields:
            params.update(fields)
        if not self.web.queryRouting:
            params.pop("action", None)
        name = params.get("action")
        if name is None or name not in self.registry:
            self._route(request.method, parts, params, connection)
        if request.method == b"TRACE":
            self._trace(request, connection, params)
            return
        self.node.processor.process(connection, params, raw_message_id(connection)).addCallbacks(
            self._render_action,
            self._render_failure,
            callbackArgs=(request, connection),
            errbackArgs=(request, connection),
        )

    def _route(
        self, method: bytes, parts: list[str], params: dict[str, Any], connection: Connection
    ) -> None:
        verb = method.decode("latin-1").lower()
        if verb == "head":
            verbs: tuple[str, ...] = ("head", "get")
        elif verb == "trace":
            verbs = ("get",)
        elif verb in VERBS:
            verbs = (verb,)
        else:
            return
        routes = self.routes
        for v in verbs:
            found = routes.match(v, parts)
            if found is not None:
                route, variables = found
                params.update(variables)
                params["action"] = route.action
                if route.apiVersion is not None and "apiVersion" not in params:
                    params["apiVersion"] = route.apiVersion
                connection.matched_route = route
                return
        if not parts:
            return
        if self.web.simpleRouting and len(parts) == 1:
            name = self.registry.simple_routes.get(parts[0].lower())
            if name is not None:
                params["action"] = name
                return
        if parts[0].lower() == "file" and len(parts) > 1:
            params["action"] = "file"
            params["fileName"] = _file_route_name(parts[1:])

    def _trace(self, request: WebRequest, connection: Connection, params: dict[str, Any]) -> None:
        received = {k: v for k, v in params.items() if k in self.registry.post_variables}
        body = dumps_padded(self._requester(connection, received), self.padding)
        self.send(request, connection, 200, JSON_TYPE, body)

    def _render_action(self, data: ActionData, request: WebRequest, connection: Connection) -> None:
        raw: WebRaw = connection.raw
        if request._disconnected:
            self.release(request, connection)
            return
        if raw.responding:
            return  # the action answered itself (send_file / a stream)
        if not data.to_render:
            # ActionHero leaks the request here; we end it.
            self.send(request, connection, raw.response_code, None, b"")
            return
        response = data.response
        error = data.error
        if error is None and isinstance(response, dict):
            error = response.get("error")
        status = raw.response_code
        if status == 200 and error is not None and self.web.returnErrorCodes:
            status = _STATUS_CODES.get(data.action_status, 400)
        template = data.action_template
        content_type = JSON_TYPE
        if template is not None and template.match_extension_mime_type and error is None:
            mime = mime_for_extension(connection.extension or "")
            if mime is not None:
                content_type = mime.encode()
        if content_type == JSON_TYPE:
            if isinstance(response, dict):
                if self.server_information:
                    response["serverInformation"] = self._server_info(raw.arrived_ms)
                if self.requester_information:
                    response["requesterInformation"] = self._requester(
                        connection,
                        data.received_params(
                            self.registry.post_variables, self.node.processor.scrub
                        ),
                    )
            body = dumps_padded(response, self.padding)
            callback = data.params.get("callback") or data.raw_params.get("callback")
            if callback and isinstance(callback, str):
                content_type = JSONP_TYPE
                body = callback.translate(_JSONP_ESCAPES).encode() + b"(" + body + b");"
        elif isinstance(response, str):
            body = response.encode("utf-8")
        elif isinstance(response, (bytes, bytearray)):
            body = bytes(response)
        else:
            body = dumps_padded(response, self.padding)
        self.send(request, connection, status, content_type, body)

    def _render_failure(self, failure: Any, request: WebRequest, connection: Connection) -> None:
        log.failure("rendering a web response failed", failure)
        if request._disconnected or request.finished:
            self.release(request, connection)
            return
        if request.startedWriting:
            request.loseConnection()
            self.release(request, connection)
            return
        self._respond_error(request, connection, 500, errors.INTERNAL_ERROR, {})

    # --- metadata --------------------------------------------------------------

    def _server_info(self, arrived: int) -> dict[str, Any]:
        now = self.node.now_ms()
        general = self.node.config.general
        return {
            "serverName": general.serverName,
            "apiVersion": general.apiVersion,
            "requestDuration": now - arrived,
            "currentTime": now,
        }

    def _requester(self, connection: Connection, received: dict[str, Any]) -> dict[str, Any]:
        message_id = raw_message_id(connection)
        return {
            "id": connection.id,
            "fingerprint": connection.fingerprint,
            "messageId": message_id,
            "remoteIP": connection.remote_ip,
            "receivedParams": received,
        }

    def _respond_error(
        self,
        request: WebRequest,
        connection: Connection,
        status: int,
        message: str,
        params: dict[str, Any],
    ) -> None:
        response: dict[str, Any] = {"error": message}
        if self.server_information:
            response["serverInformation"] = self._server_info(connection.raw.arrived_ms)
        if self.requester_information:
            received = {k: v for k, v in params.items() if k in self.registry.post_variables}
            response["requesterInformation"] = self._requester(connection, received)
        self.send(request, connection, status, JSON_TYPE, dumps_padded(response, self.padding))

    def respond_too_large(self, request: WebRequest) -> None:
        """413 for a body over the form limits (called before it is complete)."""
        self.node.stats.increment(WEB_REQUESTS)
        connection = self._connection(request, self.node.now_ms())
        opened = self.node.add_connection(connection)
        if isinstance(opened, Deferred):  # refused or waiting: the 413 is the answer regardless
            opened.addErrback(lambda _: None)
        self._respond_error(request, connection, 413, errors.BODY_TOO_LARGE, {})

    # --- output ------------------------------------------------------------------

    def header_pairs(self, connection: Connection) -> list[tuple[bytes, bytes]]:
        """Config headers, then the action's (last value wins per name,
        case-insensitively), then Set-Cookies most-recent first."""
        raw: WebRaw = connection.raw
        if not raw.response_headers:
            pairs = list(self._static_pairs)
            if raw.set_cookie:
                pairs.append((b"Set-Cookie", _header_bytes(raw.set_cookie)))
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
        pairs = [(_header_bytes(name), _header_bytes(value)) for name, value in merged.values()]
        pairs.extend((b"Set-Cookie", _header_bytes(c)) for c in reversed(cookies))
        return pairs

    def header_block(self, connection: Connection) -> bytes:
        """:meth:`header_pairs` as ready-to-send header lines."""
        raw: WebRaw = connection.raw
        if not raw.response_headers:
            if raw.set_cookie:
                return self._static_block + b"Set-Cookie: " + _header_bytes(raw.set_cookie) + b"\r\n"
            return self._static_block
        return _lines(self.header_pairs(connection))

    def apply_headers(self, request: WebRequest, connection: Connection) -> None:
        """:meth:`header_pairs` onto a request that writes through Twisted
        (streamed responses such as files)."""
        headers = request.responseHeaders
        for name, value in self.header_pairs(connection):
            headers.addRawHeader(name, value)

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
        head += b"Content-Length: " + length + b"\r\nDate: " + self._date() + b"\r\n"
        request.respond(status, head, body)
        self.release(request, connection)

    def _compress(self, request: WebRequest, body: bytes) -> tuple[bytes, bytes | None]:
        coding = choose_encoding(request)
        if coding == "gzip":
            return gzip.compress(body, mtime=0), b"gzip"
        if coding == "deflate":
            return zlib.compress(body), b"deflate"
        return body, None

    def _date(self) -> bytes:
        now = int(time.time())
        when, text = self._date_cache
        if when != now:
            text = formatdate(now, usegmt=True).encode()
            self._date_cache = (now, text)
        return text

    def _respond_bare(self, request: WebRequest, status: int) -> None:
        request.channel.persistent = False
        request.respond(status, b"Content-Length: 0\r\nConnection: close\r\n", b"")

    # --- OPTIONS, redirects ------------------------------------------------------

    def _options(self, request: WebRequest, connection: Connection) -> None:
        pairs = self.header_pairs(connection)
        if "access-control-allow-methods" not in self._lower_static:
            pairs.append((b"Access-Control-Allow-Methods", _DEFAULT_OPTIONS_METHODS.encode()))
        if "access-control-allow-origin" not in self._lower_static:
            pairs.append((b"Access-Control-Allow-Origin", b"*"))
        pairs += [(b"Content-Type", JSON_TYPE), (b"Content-Length", b"0"), (b"Date", self._date())]
        request.respond(200, _lines(pairs), b"")
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
        pairs = [(b"Location", _header_bytes(url)), (b"Content-Length", b"%d" % len(body))]
        request.respond(302, _lines(pairs), body)

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

    def encoding_for(self, request: WebRequest) -> bytes | None:
        """The content coding to stream with, or None (``compress`` off or not accepted)."""
        if not self.web.compress:
            return None
        coding = choose_encoding(request)
        return coding.encode() if coding else None

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
        result = self.websocket_resource.render(request)
        if result is NOT_DONE_YET:
            channels = getattr(getattr(channel, "site", None), "channels", None)
            if channels is not None:
                channels.discard(channel)
            return
        if isinstance(result, bytes) and result:
            request.write(result)
        request.finish()


def _lines(pairs: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(b"%s: %s\r\n" % pair for pair in pairs)


def _file_route_name(parts: list[str]) -> str:
    """``fileName`` for ``/api/file/<path>``: each part %-decoded once (``+``
    stays), unless decoding would create ``.``/``..`` or a separator -- then
    the raw parts are passed on, and find nothing."""
    decoded = []
    for part in parts:
        text = percent_decode(part)
        if text is None or (text in (".", "..") and part != text) or any(c in text for c in "/\\\0"):
            return "/".join(parts)
        decoded.append(text)
    return "/".join(decoded)


def raw_message_id(connection: Connection) -> str:
    """The web message id: the uuid after the fingerprint in the id."""
    return connection.id[len(connection.fingerprint) + 1 :]


def _extension(path: str) -> str | None:
    name = path.rsplit("/", 1)[-1]
    if "." not in name:
        return None
    return name.rsplit(".", 1)[1] or None


def choose_encoding(request: WebRequest) -> str | None:
    """``gzip`` or ``deflate`` (whichever appears first as a whole word)."""
    header = request.getHeader(b"accept-encoding")
    if not header:
        return None
    match = _ENCODING_TOKEN.search(header.decode("latin-1"))
    return match.group(1) if match else None
