"""The websocket server: RFC 6455 at ``servers.websocket.path`` on every web listener.

Autobahn does the protocol (handshake, framing, UTF-8 validation, size
limits, ping/pong, close codes); the commonest client frame is read by
:mod:`ahtwist.websocket_receive` under the same rules and replies are
framed here.  This module only turns text frames into calls on the node's
core and the results back into frames (docs/protocol-websocket.md):

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

import struct
from collections import deque
from sys import intern
from typing import TYPE_CHECKING, Any, cast

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.util import create_transport_details, peer2str
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.wamp.types import TransportDetails
from autobahn.websocket.protocol import PreparedMessage, Timings, TrafficStats, WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny
from autobahn.websocket.utf8validator import Utf8Validator
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.tcp import Server as TCPServer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

import ahtwist.errors as errors
import ahtwist.replies as replies
from ahtwist.connection import EMPTY, Connection, ConnectionRaw, IConnectionTransport
from ahtwist.encoding import NestedTooDeep, dumps, loads
from ahtwist.errors import ConnectionRefused
from ahtwist.ids import new_id
from ahtwist.limits import OutboundMeter
from ahtwist.origins import OriginPolicy
from ahtwist.proxies import TrustedProxies
from ahtwist.servers.base import Server
from ahtwist.servers.peer import is_secure, parse_cookies, peer_address
from ahtwist.servers.write import write_now
from ahtwist.timers import TimerWheel
from ahtwist.verbs import COMMON_VERBS
from ahtwist.web.query import parse_query
from ahtwist.websocket_receive import read_frames, simple_frame_limit

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


_HEADER_16 = struct.Struct("!BBH").pack
_HEADER_64 = struct.Struct("!BBQ").pack


def text_frame(payload: bytes) -> bytes:
    """``payload`` as one unmasked, final RFC 6455 text frame: the bytes
    Autobahn's ``sendMessage`` writes for it (server frames are not masked
    and, with ``autoFragmentSize`` 0, never fragmented)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 0x10000:
        return _HEADER_16(0x81, 126, n) + payload
    return _HEADER_64(0x81, 127, n) + payload


def send_frame(protocol: Any, frame: bytes) -> None:
    """Write one framed text message (:func:`text_frame`) to an open protocol.

    ``sendMessage``/``sendData`` format debug log arguments on every call
    even with debug logging off and build the frame through several
    objects, which costs more than the write; when nothing is queued on the
    protocol and no compression was negotiated (we accept none), the frame
    goes straight to the transport in one write (:func:`write_now`: sent at
    once when nothing is buffered), exactly as ``sendData`` would write it.
    Otherwise Autobahn sends it (queue order, compression).
    """
    if protocol.send_queue or protocol._perMessageCompress is not None:
        payload = frame[2 + (frame[1] == 126) * 2 + (frame[1] == 127) * 8 :]
        protocol.sendPreparedMessage(PreparedMessage(payload, False, False, True))
    else:
        write_now(protocol.transport, frame)
    meter = protocol.meter
    if meter is not None and meter.paused:
        meter.wrote(len(frame))


def _shared_headers(headers: dict[str, str]) -> dict[str, str]:
    """The upgrade request's headers for ``connection.raw``, with names
    and the values clients repeat (``upgrade: websocket``, the host, the
    user agent...) shared between connections rather than a copy each;
    the per-connection key is kept as it is."""
    return {
        intern(name): value if name == "sec-websocket-key" or len(value) > 256 else intern(value)
        for name, value in headers.items()
    }


def send_text(protocol: Any, payload: bytes) -> None:
    """One text message (UTF-8 JSON) to an open protocol."""
    send_frame(protocol, text_frame(payload))


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
        self._shared: tuple[dict[str, Any], tuple[Any, ...], bytes] | None = None

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
                else EMPTY
            )
        except ValueError:
            query = EMPTY
        raw = ConnectionRaw(
            headers=_shared_headers(headers),
            # none: the shared read-only empty dict (64 bytes less each)
            cookies=cookies or EMPTY,
            query=query or EMPTY,
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
        meter = ProtocolMeter(self.output_policy.limit, protocol)
        transport.registerProducer(meter, True)
        protocol.meter = meter
        # The upgrade sets the TCP transport's attributes in another order
        # than a fresh connection does, so the first write would give it a
        # full-size dict of its own (Python's shared-key instance dicts need
        # one order); a copy with every attribute a write sets is sized for
        # what it holds (~0.35 KiB less). ``offset`` is 0 unless a write is
        # under way (it is the class default of Twisted's FileDescriptor).
        if type(transport) is TCPServer:
            values = {name: value for name, value in transport.__dict__.items()}
            values.setdefault("offset", 0)
            transport.__dict__ = values

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
        (:func:`text_frame`) and the same bytes written to every member while
        the next recipient gets that same, unchanged dict.
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
            shared = self._shared = (message, values, text_frame(dumps(message)))
        send_frame(protocol, shared[2])

    def send_file(self, protocol: "WebSocketConnectionProtocol", path: str) -> None:
        """A file pushed by server code (the ``file`` action, ``sendFile``):
        the same reply as the ``file`` event, for the latest message."""
        count, message_id = protocol.last_message
        if protocol.state == _OPEN:
            send_text(protocol, dumps(self.file_message(path, count, message_id)))


#: ``send_queue`` of a protocol that never queued a write (Autobahn only
#: queues for ``sync``/``chopsize`` writes, which make it a real deque)
_NO_QUEUE: Any = ()
#: what the handshake leaves on an Autobahn protocol that nothing reads once
#: the connection is open (``connection.raw`` keeps the request headers)
_HANDSHAKE_ONLY = (
    "http_request_data",
    "http_response_data",
    "http_status_line",
    "http_headers",
    "http_request_params",
    "http_request_host",
    "http_request_path",
    "http_request_uri",
    "websocket_origin",
    "websocket_protocols",
    "websocket_extensions",
    "_wskey",
    "early",
    # read by Autobahn's _onOpen (TLS channel id), before onOpen compacts
    "_transport_details",
    # kept while the handshake logs it; made when asked once open (_PeerWhenAsked)
    "peer",
)
#: a value no attribute has (:meth:`WebSocketConnectionProtocol._compact`)
_MISSING = object()


class _PeerWhenAsked:
    """``protocol.peer`` once the handshake's copy was dropped: the client's
    address as Autobahn writes it (``tcp4:host:port``), made when first
    asked (the close path's log lines read it four times: kept from then on)
    rather than kept on every open connection.  Not a data descriptor: the
    instance's own ``peer`` (set by connectionMade, read by the handshake's
    logs and the upgrade request) wins while it is there."""

    def __get__(self, protocol: Any, owner: Any = None) -> Any:
        if protocol is None:
            return self
        peer = protocol.__dict__["peer"] = peer2str(protocol.transport)
        return peer




class _ValidatorWhenAsked:
    """``protocol.utf8validator``, Autobahn's incremental UTF-8 validator,
    made when Autobahn first reads it (at the connection's first text
    message) and an instance attribute from then on, so a websocket that
    has not sent a text message holds none (~0.2 KiB).  Not a data
    descriptor: once made, the instance's own attribute is found first."""

    def __get__(self, protocol: Any, owner: Any = None) -> Any:
        if protocol is None:
            return self
        validator = protocol.__dict__["utf8validator"] = Utf8Validator()
        return validator


def _class_defaults(cls: type) -> dict[str, Any]:
    """The plain values (not methods or other descriptors) of every name
    ``cls`` and its bases define, made once per protocol class and kept on
    it (read by _compact once per connection)."""
    defaults: dict[str, Any] | None = cls.__dict__.get("_compact_defaults")
    if defaults is None:
        defaults = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if hasattr(value, "__get__"):
                    defaults.pop(name, None)
                else:
                    defaults[name] = value
        cls._compact_defaults = defaults  # type: ignore[attr-defined]
    return defaults


class ProtocolMeter(OutboundMeter):
    """The :class:`~ahtwist.limits.OutboundMeter` of one websocket: its
    callbacks are methods reaching the protocol (three closures and bound
    methods less per connection)."""

    __slots__ = ("protocol",)

    def __init__(self, limit: int, protocol: "WebSocketConnectionProtocol") -> None:
        super().__init__(limit, None)
        self.protocol = protocol

    def went_over(self, unsent: int) -> None:
        self.protocol.factory.ws_server._too_slow(self.protocol, unsent)

    def paused_now(self) -> None:
        self.protocol.transport.pauseProducing()

    def resumed_now(self) -> None:
        self.protocol.transport.resumeProducing()


@implementer(IConnectionTransport)
class WebSocketConnectionProtocol(WebSocketServerProtocol):
    """One websocket client: Autobahn protocol + the connection's transport.

    An idle websocket is mostly this object, so it keeps as little per
    instance as Autobahn allows (docs/architecture.md, "Autobahn"): the
    protocol options are class attributes of the factory's protocol class
    instead of a copy on every instance; the state Autobahn's
    ``_connectionMade`` sets to constants is class-level defaults here
    (Autobahn writes an instance value only when one changes); the
    handshake's request and response are dropped once open; and the
    instance dictionary is compacted after the handshake.
    """

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
    #: the largest payload read without Autobahn's parser (set per factory)
    _simple_frame_limit = -1
    # protocol options read here: class attributes of the factory's
    # protocol class (WebSocketFactory._protocol_class)
    openHandshakeTimeout: float
    trackTimings: bool
    tcpNoDelay: bool
    logOctets: bool

    # Autobahn's per-connection state with the value its _connectionMade
    # (WebSocketProtocol._connectionMade) gives every new connection
    _perMessageCompress: Any = None
    trackedTimings: Any = None
    send_state = WebSocketProtocol.SEND_STATE_GROUND
    data = b""
    send_queue: Any = _NO_QUEUE
    triggered = False
    wasMaxFramePayloadSizeExceeded = False
    wasMaxMessagePayloadSizeExceeded = False
    closedByMe = False
    failedByMe = False
    droppedByMe = False
    wasClean = False
    wasNotCleanReason: Any = None
    wasServerConnectionDropTimeout = False
    wasOpenHandshakeTimeout = False
    wasCloseHandshakeTimeout = False
    wasServingFlashSocketPolicyFile = False
    localCloseCode: Any = None
    localCloseReason: Any = None
    remoteCloseCode: Any = None
    remoteCloseReason: Any = None
    openHandshakeTimeoutCall: Any = None
    closeHandshakeTimeoutCall: Any = None
    autoPingTimeoutCall: Any = None
    autoPingPending: Any = None
    autoPingPendingCall: Any = None
    autoPingPendingSeq = 0
    autoPingPendingSent: Any = None
    websocket_protocol_in_use: Any = None
    websocket_extensions_in_use: Any = ()
    inside_message = False
    current_frame: Any = None
    # handshake data (dropped from the instance once open)
    http_request_data: Any = None
    http_response_data: Any = None
    http_status_line: Any = None
    http_headers: Any = None
    http_request_params: Any = None
    http_request_host: Any = None
    http_request_path: Any = None
    http_request_uri: Any = None
    websocket_origin: Any = None
    websocket_protocols: Any = ()
    websocket_extensions: Any = ()
    # the version every client speaks (RFC 6455; Autobahn also accepts 8)
    websocket_version = 13
    peer: Any = _PeerWhenAsked()
    _transport_details: Any = None
    utf8validator: Any = _ValidatorWhenAsked()

    def __init__(self) -> None:
        # Autobahn's WebSocketProtocol.__init__ without the per-instance
        # observer tables (made by on(), below, if anyone ever observes) and
        # without the TransportDetails connectionMade replaces anyway
        self.is_closed: Deferred[Any] = Deferred()
        self.is_open: Deferred[Any] = Deferred()

    def on(self, event: str, handler: Any) -> None:
        if self._valid_events is None:
            self.set_valid_events(["message"])
        super().on(event, handler)

    def connectionMade(self) -> None:
        # Autobahn's WebSocketAdapterProtocol.connectionMade without its
        # debug line (whose arguments are formatted on every connection)
        details: TransportDetails = create_transport_details(self.transport, True)
        details.channel_framing = TransportDetails.CHANNEL_FRAMING_WEBSOCKET
        self._transport_details = details
        self.peer = details.peer
        try:
            self.transport.setTcpNoDelay(self.tcpNoDelay)
        except Exception:  # unix sockets and the like have no Nagle to turn off
            pass
        self._connectionMade()

    def _connectionMade(self) -> None:
        # Autobahn's WebSocketServerProtocol._connectionMade (with
        # WebSocketProtocol._connectionMade): the options are class
        # attributes already (WebSocketFactory.protocol_options), constants
        # are class-level defaults above, and there is no debug line -- the
        # original formats pformat() of every option on every connection,
        # debug logging on or off, which was 42% of a connection's cost
        if self.trackTimings:
            self.trackedTimings = Timings()
        self.trafficStats = TrafficStats()
        self.state = _CONNECTING
        if self.openHandshakeTimeout > 0:
            self.openHandshakeTimeoutCall = self.factory._batched_timer.call_later(
                self.openHandshakeTimeout, self.onOpenHandshakeTimeout
            )
        self.factory.countConnections += 1

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        # Autobahn's sendData without the debug line it formats on every
        # write; queued writes (sync, chopsize, or behind queued ones) are
        # Autobahn's, on a real queue
        if sync or chopsize or self.send_queue:
            if self.send_queue is _NO_QUEUE:
                self.send_queue = deque()
            super().sendData(data, sync, chopsize)
            return
        write_now(self.transport, data)
        if self.state == _OPEN:
            self.trafficStats.outgoingOctetsWireLevel += len(data)
        elif self.state == _CONNECTING:
            self.trafficStats.preopenOutgoingOctetsWireLevel += len(data)
        if self.logOctets:
            self.logTxOctets(data, False)

    def _compact(self) -> None:
        """Once open: drop what only the handshake needed and the values
        equal to the class's own (``None``, ``False``, ``b""``...), and give
        the instance a dictionary sized for what is left (the handshake grew
        it past 128 slots; a dict never shrinks by itself; at most 10 names
        is Python's smallest size but one)."""
        values = self.__dict__
        for name in _HANDSHAKE_ONLY:
            values.pop(name, None)
        defaults = _class_defaults(type(self))
        kept = {}
        for name, value in values.items():
            default = defaults.get(name, _MISSING)
            if type(default) is type(value) and (
                default is value or (type(value) in (int, bytes) and default == value)
            ):
                continue
            if name == "websocket_extensions_in_use" and not value:
                continue  # [] from the handshake: the class's ()
            kept[name] = value
        self.__dict__ = kept

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
        # the same call without it.  With nothing of a frame or message
        # under way, the simple frames at the start of the read are
        # delivered by read_frames (ahtwist/websocket_receive.py) and only
        # what it leaves goes through Autobahn's parser (as _dataReceived
        # would hand it on).
        if (
            self.state == _OPEN
            and self.current_frame is None
            and not self.inside_message
            and not self.data
            and self._perMessageCompress is None
            and self._listeners is None
            and not self.failedByMe
        ):
            data = read_frames(self, data)  # counts the read
            if data:
                self.data += data
                self.consumeData()
            return
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
        early = self.early
        self._compact()
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
    injected reactor (one :class:`~ahtwist.timers.TimerWheel` for every
    connection's handshake, ping and close timeouts).

    Its ``protocol`` is a subclass of the class's ``protocol`` made for this
    factory, holding the protocol options as class attributes (Autobahn
    copies each option onto every protocol instance; see
    :meth:`WebSocketConnectionProtocol._connectionMade`).
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
        # reactor, in 200 ms buckets as txaio.make_batched_timer does for
        # the global one
        self._batched_timer = TimerWheel(200, 1000, reactor.seconds, reactor.callLater)
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

    def resetProtocolOptions(self) -> None:
        super().resetProtocolOptions()
        self._protocol_class()

    def setProtocolOptions(self, *args: Any, **kwargs: Any) -> None:
        super().setProtocolOptions(*args, **kwargs)
        self._protocol_class()

    def _protocol_class(self) -> None:
        base = type(self).protocol
        options: dict[str, Any] = {}
        for name in base.CONFIG_ATTRS:
            value = getattr(self, name)
            # a function option (perMessageCompressionAccept) must not become a method
            options[name] = staticmethod(value) if callable(value) else value
        options["_simple_frame_limit"] = simple_frame_limit(self)
        options["__module__"] = base.__module__
        options["__qualname__"] = base.__qualname__
        self.protocol = cast(
            type[WebSocketConnectionProtocol], type(base.__name__, (base,), options)
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
            if (
                getattr(transport, "producer", None) is channel
                or getattr(getattr(transport, "_producer", None), "_producer", None) is channel
            ):
                transport.unregisterProducer()
            # The channel and this request refer to each other: a cycle only
            # the garbage collector would free, keeping the channel's buffers
            # (~1 KiB a websocket) until it runs. The channel is done.
            if isinstance(getattr(channel, "requests", None), list):
                channel.requests.clear()
        return result


def websocket_resource(node: "Node", reactor: Any) -> tuple[WebSocketServer, WebSocketUpgradeResource]:
    """The node's websocket server and the resource the web server mounts."""
    server = WebSocketServer(node)
    return server, WebSocketUpgradeResource(WebSocketFactory(server, reactor))
