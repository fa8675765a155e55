"""The websocket server: RFC 6455 at ``servers.websocket.path`` on every web listener.

Autobahn does the protocol (handshake, framing, UTF-8 validation, size
limits, ping/pong, close codes); this module only turns text frames into
calls on the node's core and the results back into frames
(docs/protocol-websocket.md):

* :class:`WebSocketServer` -- one per node: parses a frame, counts it,
  dispatches the event (action, file, room verbs, say, detailsView,
  documentation, quit) and builds the exact reply;
* :class:`WebSocketConnectionProtocol` -- one per client: the Autobahn
  protocol, and the :class:`~ahtwist.connection.IConnectionTransport` the
  core pushes chat messages and files through;
* :class:`WebSocketFactory` / :class:`WebSocketUpgradeResource` -- the
  Autobahn factory with our limits, and the resource the
  :class:`~ahtwist.web.api.WebServer` hands upgrade requests to.

Autobahn is imported here at module level, so this module must only be
imported once twistd has chosen the reactor (the service wiring does it).
"""

from typing import TYPE_CHECKING, Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import PreparedMessage, WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET
from txaio._common import _BatchedTimer
from zope.interface import implementer

import ahtwist.errors as errors
import ahtwist.replies as replies
from ahtwist.connection import Connection, ConnectionRaw, IConnectionTransport, new_id
from ahtwist.encoding import NestedTooDeep, dumps, loads
from ahtwist.errors import ConnectionRefused
from ahtwist.limits import OutboundMeter
from ahtwist.origins import OriginPolicy
from ahtwist.proxies import TrustedProxies
from ahtwist.servers.base import Server
from ahtwist.servers.peer import is_secure, parse_cookies, peer_address
from ahtwist.verbs import COMMON_VERBS
from ahtwist.web.query import parse_query

if TYPE_CHECKING:
    from ahtwist.node import Node

log = Logger(namespace="ahtwist.websocket")

#: close codes (RFC 6455 section 7.4.1)
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008
#: the close reason of a client dropped for not reading its output
OUTPUT_LIMIT_REASON = "output buffer limit exceeded"

WELCOME_FRAME = replies.WELCOME_JSON
_OPEN = WebSocketProtocol.STATE_OPEN
_CONNECTING = WebSocketProtocol.STATE_CONNECTING
_CLOSED = WebSocketProtocol.STATE_CLOSED
_REFUSED_HEAD = (
    "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json; charset=utf-8\r\n"
    "Connection: close\r\nContent-Length: {length}\r\n\r\n"
)


def send_prepared(protocol: Any, prepared: PreparedMessage) -> None:
    """Write a message framed by Autobahn.

    ``sendMessage``/``sendData`` format debug log arguments on every call
    even with debug logging off, which costs more than the framing; when
    nothing is queued on the protocol and no compression was negotiated (we
    accept none), the frame goes straight to the transport, exactly as
    ``sendData`` would write it.
    """
    if protocol.send_queue or protocol._perMessageCompress is not None:
        protocol.sendPreparedMessage(prepared)
    else:
        protocol.transport.write(prepared.payloadHybi)
    meter = protocol.meter
    if meter is not None and meter.paused:
        meter.wrote(len(prepared.payloadHybi))


def send_text(protocol: Any, payload: bytes) -> None:
    """One text message (UTF-8 JSON) to an open protocol."""
    send_prepared(protocol, PreparedMessage(payload, False, False, True))


class WebSocketServer(Server):
    """The websocket server of one node: frames in, the core's
    :meth:`~ahtwist.servers.base.Server.receive`, frames out.

    It has no listeners of its own (the web server mounts it at
    ``servers.websocket.path``) and keeps the set of open protocols so a
    stop can close them.
    """

    type = "websocket"
    sends_welcome = True
    logs_connections = False
    allowed_verbs = COMMON_VERBS

    def __init__(self, node: "Node") -> None:
        super().__init__(node)
        config = node.config
        self.config = config.servers.websocket
        self.cookie_key = config.servers.web.fingerprintOptions.cookieKey
        self.query_options = config.servers.web.queryParseOptions
        self.proxies = TrustedProxies.from_strings(config.servers.web.trustedProxies)
        self.origins = OriginPolicy(self.config.allowedOrigins, config.servers.web.allowedRequestHosts)
        self.fingerprint_from_query = self.config.fingerprintFromQuery
        self.max_file_size = self.config.maxFileSize
        #: the output policy every transport shares; its limit is maxOutboundBytes
        self.output_policy = node.limits.output_policy("websocket", self.config.maxOutboundBytes, self.stats, log)
        self.protocols: set[WebSocketConnectionProtocol] = set()
        #: set by :meth:`stop`: clients are closed once their replies are sent
        self.draining = False
        self.destroy_on_stop = False
        #: (payload, its values, its frame) of the latest chat delivery
        self._shared: tuple[dict[str, Any], tuple[Any, ...], Any] | None = None

    def build_factory(self) -> None:
        return None  # mounted on the web listeners

    # --- lifecycle -------------------------------------------------------------

    def connecting(self, protocol: "WebSocketConnectionProtocol", request: Any) -> Any:
        """The upgrade request: make the connection and run the connection
        middleware before the 101 (a refusal answers 403)."""
        headers = request.headers
        transport = protocol.transport
        assert transport is not None  # Autobahn asks on a connected protocol
        ip, port = peer_address(transport.getPeer())
        peer_ip = ip
        forwarded = headers.get("x-forwarded-for")
        if forwarded:
            ip, port = self.proxies.client(ip, port, forwarded, headers.get("x-forwarded-port"))
        origin = headers.get("origin")
        if origin is not None:
            scheme = self.proxies.scheme(peer_ip, headers.get("x-forwarded-proto"), is_secure(transport))
            if not self.origins.allows(origin, scheme, headers.get("host")):
                log.info("refused websocket upgrade from {ip}: origin {origin!r} not allowed", ip=ip, origin=origin)
                raise ConnectionDeny(403, "origin not allowed")
        cookies = parse_cookies(headers.get("cookie"))
        fingerprint = cookies.get(self.cookie_key) or None
        if fingerprint is None and self.fingerprint_from_query:
            values = request.params.get(self.cookie_key)
            if values and values[0]:
                fingerprint = values[0]
        query_string = protocol.http_request_uri.partition("?")[2]
        options = self.query_options
        try:
            query = (
                parse_query(query_string.encode("latin-1", "replace"), options.depth, options.parameterLimit, options.arrayLimit)
                if query_string
                else {}
            )
        except ValueError:
            query = {}
        raw = ConnectionRaw(
            headers=dict(headers),
            cookies=cookies,
            query=query,
            secure=is_secure(transport),
            transport=transport,
        )
        connection = self.new_connection(protocol, ip, port, raw, fingerprint)
        protocol.connection = connection
        self.protocols.add(protocol)
        result = self.open_connection(connection, greet=False)
        if isinstance(result, Deferred):
            return result.addCallbacks(lambda _: None, protocol.refuse)
        return None

    def opened(self, protocol: "WebSocketConnectionProtocol") -> None:
        """The handshake completed: watch its output, say welcome."""
        self._meter(protocol)
        send_text(protocol, WELCOME_FRAME)

    def _meter(self, protocol: "WebSocketConnectionProtocol") -> None:
        """Watch the client's unsent output (:class:`~ahtwist.limits.OutboundMeter`):
        stop reading its requests while it is behind, drop it past
        ``maxOutboundBytes``."""
        transport: Any = protocol.transport  # TCP/TLS: also a producer and consumer
        # the HTTP channel that carried the upgrade may still be registered
        transport.unregisterProducer()
        meter = OutboundMeter(
            self.output_policy.limit,
            lambda unsent: self._too_slow(protocol, unsent),
            transport.pauseProducing,
            transport.resumeProducing,
        )
        transport.registerProducer(meter, True)
        protocol.meter = meter

    def _too_slow(self, protocol: "WebSocketConnectionProtocol", unsent: int) -> None:
        connection = protocol.connection
        # the close frame goes behind what is buffered; Autobahn aborts the
        # connection when the client has not answered it within its close
        # handshake timeout, and nothing more is sent meanwhile
        self.output_policy.drop(
            connection.id if connection is not None else "?",
            unsent,
            lambda: protocol.close_with(CLOSE_POLICY_VIOLATION, OUTPUT_LIMIT_REASON),
        )

    def closed(self, protocol: "WebSocketConnectionProtocol") -> None:
        """The client went away (or we closed it): leave rooms, forget it."""
        self.protocols.discard(protocol)
        connection = protocol.connection
        if connection is not None:
            self.disconnected(connection).addErrback(
                lambda f: log.failure("destroying websocket {id}", f, id=connection.id)
            )

    def stop(self, destroy_clients: bool, wait: Any) -> Deferred[Any]:
        """Drain: new actions already answer ``the server is shutting down``;
        a client with nothing in flight is closed now, the others once their
        last reply is sent -- with 1001 (clients may reconnect), or, when
        ``destroy_clients``, destroyed first and closed with 1000 (they
        should not).  ``wait(done)`` fires once ``done()`` is true or the
        shutdown wait is over; stragglers are then dropped."""
        self.draining = True
        self.destroy_on_stop = destroy_clients
        pending = []
        for protocol in list(self.protocols):
            connection = protocol.connection
            if connection is None or not connection.pending_actions:
                pending.append(self._close_for_stop(protocol))

        def force(result: Any) -> Any:
            for protocol in list(self.protocols):
                protocol.dropConnection(abort=True)
            return result

        destroyed = DeferredList(pending, consumeErrors=True) if pending else succeed(None)
        return destroyed.addCallback(lambda _: wait(lambda: not self.protocols)).addCallback(force)

    def _close_for_stop(self, protocol: "WebSocketConnectionProtocol") -> Deferred[Any]:
        connection = protocol.connection
        if self.destroy_on_stop and connection is not None:
            destroyed = self.node.destroy_connection(connection)
            protocol.close_with(CLOSE_NORMAL)
            return destroyed
        protocol.close_with(CLOSE_GOING_AWAY)
        return succeed(None)

    def _answered(self, protocol: "WebSocketConnectionProtocol") -> None:
        """While draining: a client whose last in-flight action just answered is closed."""
        connection = protocol.connection
        if connection is not None and not connection.pending_actions:
            self._close_for_stop(protocol)

    # --- frames ------------------------------------------------------------------

    def frame(self, protocol: "WebSocketConnectionProtocol", payload: bytes) -> None:
        """One text frame from a client (docs/protocol-websocket.md, 'Client to server')."""
        connection = protocol.connection
        if connection is None or connection.destroyed:
            return
        try:
            message = loads(payload)
        except NestedTooDeep:
            connection.message_count += 1
            self.send_reply(connection, replies.verb_reply(errors.TOO_DEEP, None, connection.message_count, new_id()))
            return
        except ValueError:
            return  # not JSON: no reply, not counted, connection stays open
        self.receive(connection, message)

    def received(self, connection: Connection, count: int, message_id: Any) -> None:
        connection.transport.last_message = (count, message_id)

    def send_reply(self, connection: Connection, reply: dict[str, Any]) -> None:
        protocol = connection.transport
        if protocol.state == _OPEN:
            send_text(protocol, dumps(reply))

    def _action_done(self, data: Any, connection: Connection, count: int, message_id: Any) -> None:
        super()._action_done(data, connection, count, message_id)
        if self.draining:
            self._answered(connection.transport)

    # --- what the core pushes ------------------------------------------------------

    def send_message(self, protocol: "WebSocketConnectionProtocol", message: dict[str, Any]) -> None:
        """A message from the core: ``context: "response"`` added when absent.

        A chat delivery hands the *same* payload dict to every member of the
        room one after the other; it is encoded and framed once
        (``PreparedMessage``) and the frame reused while the next recipient
        gets that same, unchanged dict.
        """
        if protocol.state != _OPEN:
            if protocol.state == _CONNECTING and protocol.early is not None:
                protocol.early.append(message)  # from a create hook: after the 101
            return
        if "context" not in message:
            send_text(protocol, dumps({**message, "context": "response"}))
            return
        if message.get("context") != "user":
            send_text(protocol, dumps(message))
            return
        values = tuple(message.values())
        shared = self._shared
        if shared is None or shared[0] is not message or shared[1] != values:
            shared = self._shared = (message, values, PreparedMessage(dumps(message), False, False, True))
        send_prepared(protocol, shared[2])

    def send_file(self, protocol: "WebSocketConnectionProtocol", path: str) -> None:
        """A file pushed by server code (the ``file`` action, ``sendFile``):
        the same reply as the ``file`` event, for the latest message."""
        count, message_id = protocol.last_message
        if protocol.state == _OPEN:
            send_text(protocol, dumps(self.file_message(path, count, message_id)))


@implementer(IConnectionTransport)
class WebSocketConnectionProtocol(WebSocketServerProtocol):
    """One websocket client: Autobahn protocol + the connection's transport."""

    _log = log
    factory: "WebSocketFactory"
    #: a TCP, TLS or unix transport: an ITransport that is also an IConsumer
    #: and IPushProducer (zope interfaces cannot state the three at once)
    transport: Any
    connection: Connection | None = None
    #: messages pushed while connection middleware decides (sent after the 101)
    early: list[Any] | None = None
    #: the 403 body while a refusal is being answered
    refusal: bytes | None = None
    #: (messageCount, messageId) of the latest counted message
    last_message: tuple[int, Any] = (0, None)
    #: the client's unsent output (set once open)
    meter: OutboundMeter | None = None

    def onConnect(self, request: Any) -> Any:
        """Make the connection from the upgrade request and let connection
        middleware decide before the 101; no subprotocol is selected."""
        self.early = []
        return self.factory.ws_server.connecting(self, request)

    def refuse(self, failure: Failure) -> None:
        """Connection middleware refused: answer the upgrade with 403 and a
        JSON body (``failHandshake`` writes it), before any frame."""
        self.early = None
        error = failure.value
        if isinstance(error, ConnectionRefused):
            self.refusal = dumps(replies.refusal(error.error))
        else:
            log.failure("accepting a websocket failed", failure)
            self.refusal = dumps(replies.refusal("internal server error"))
        raise ConnectionDeny(403, "Forbidden")

    def failHandshake(self, reason: str, code: int = 400, responseHeaders: Any = None) -> None:
        if self.refusal is None:
            super().failHandshake(reason, code, responseHeaders)
            return
        body, self.refusal = self.refusal, None
        self.wasNotCleanReason = reason
        self.sendData(_REFUSED_HEAD.format(length=len(body)).encode() + body)
        self.dropConnection(abort=False)

    def dataReceived(self, data: bytes) -> None:
        # Autobahn's dataReceived formats the arguments of a debug line
        # (hltype/hlval) on every read even with debug logging off; this is
        # the same call without it.
        self._dataReceived(data)

    def onMessageEnd(self) -> None:
        # Autobahn's onMessageEnd also fires a "message" observer event, which
        # builds a Deferred and adds an errback per message even when nobody
        # observes (we never register any); without observers, this is the
        # same delivery without that.
        if self._listeners is not None or self.failedByMe or self.trackedTimings:
            super().onMessageEnd()
            return
        payload = b"".join(self.message_data)
        self.message_data = None
        self._onMessage(payload, self.message_is_binary)

    def onOpen(self) -> None:
        early, self.early = self.early, None
        for message in early or ():
            self.send_message(message)
        self.factory.ws_server.opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            return  # binary frames are ignored
        try:
            self.factory.ws_server.frame(self, payload)
        except Exception:
            # a bug on our side must not cost the client its connection
            self._log.failure("handling a websocket frame failed")

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.ws_server.closed(self)

    def close_with(self, code: int, reason: str | None = None) -> None:
        """Start the closing handshake with ``code`` (Autobahn's sendClose
        refuses 1001, which a stop needs)."""
        if self.state == _OPEN:
            self.sendCloseFrame(
                code=code, reasonUtf8=reason.encode() if reason else None, isReply=False
            )
        elif self.state == _CONNECTING:
            self.dropConnection(abort=True)

    # --- IConnectionTransport -------------------------------------------------------

    def send_message(self, message: dict[str, Any]) -> None:
        self.factory.ws_server.send_message(self, message)

    def send_file(self, path: str) -> None:
        self.factory.ws_server.send_file(self, path)

    def close(self) -> None:
        """Server-side destroy: close code 1000."""
        self.close_with(CLOSE_NORMAL)


class WebSocketFactory(WebSocketServerFactory):
    """Autobahn's factory with ahtwist's limits (docs/protocol-websocket.md, 'The handshake' and 'Limits, heartbeat and closing').

    No status page and no redirect (``webStatus=False``), no Server header,
    any Origin, close frames with a code on bad input (1007 invalid UTF-8,
    1009 too big) instead of a silent drop, keep-alive pings, timers on the
    injected reactor.
    """

    # Twisted's generic Factory[P] wants P.factory typed as Factory[P];
    # Autobahn's factory base is not parameterized, so nothing here can say so
    protocol = WebSocketConnectionProtocol  # type: ignore[assignment]

    def __init__(self, server: WebSocketServer, reactor: Any) -> None:
        super().__init__(url=None, server=None, reactor=reactor)
        #: our WebSocketServer (Autobahn's ``server`` is the Server header text)
        self.ws_server = server
        config = server.config
        # Autobahn's timers (handshake timeouts, pings) on the injected
        # reactor, batched as txaio.make_batched_timer does for the global one.
        self._batched_timer = _BatchedTimer(
            200, 1000, seconds_provider=reactor.seconds, delayed_call_creator=reactor.callLater
        )
        self.setProtocolOptions(
            webStatus=False,
            failByDrop=False,
            maxFramePayloadSize=config.maxMessageSize,
            maxMessagePayloadSize=config.maxMessageSize,
            autoPingInterval=max(config.pingInterval, 0),
            autoPingTimeout=max(config.pingTimeout, 0) if config.pingInterval > 0 else 0,
            allowedOrigins=["*"],
            allowNullOrigin=True,
        )


class WebSocketUpgradeResource(WebSocketResource):
    """Autobahn's resource, answering a request without an upgrade with 426."""

    def render(self, request: Any) -> Any:
        upgrade = request.getHeader(b"upgrade") or b""
        if b"websocket" not in [token.strip().lower() for token in upgrade.split(b",")]:
            request.setResponseCode(426, b"Upgrade Required")
            request.setHeader(b"upgrade", b"websocket")
            request.setHeader(b"connection", b"Upgrade")
            request.setHeader(b"content-length", b"0")
            return b""
        channel = request.channel
        transport = channel.transport
        result = super().render(request)
        # The HTTP channel registered itself as the transport's producer; left
        # there it would stay alive for the whole websocket (~3 KiB each) and
        # receive the transport's pause/resume calls.
        if result is NOT_DONE_YET and transport is not None:
            if getattr(transport, "producer", None) is channel or getattr(
                getattr(transport, "_producer", None), "_producer", None
            ) is channel:
                transport.unregisterProducer()
        return result


def websocket_resource(node: "Node", reactor: Any) -> tuple[WebSocketServer, WebSocketUpgradeResource]:
    """The node's websocket server and the resource the web server mounts."""
    server = WebSocketServer(node)
    return server, WebSocketUpgradeResource(WebSocketFactory(server, reactor))
