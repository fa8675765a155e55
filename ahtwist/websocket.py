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

import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import PreparedMessage, WebSocketProtocol
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.logger import Logger
from twisted.web.server import NOT_DONE_YET
from txaio._common import _BatchedTimer
from zope.interface import implementer

from ahtwist import errors
from ahtwist.connection import Connection, IConnectionTransport, new_id
from ahtwist.encoding import dumps, loads
from ahtwist.limits import RATE_LIMITED, over_rate
from ahtwist.node import WEBSOCKET_REQUESTS
from ahtwist.proxies import TrustedProxies
from ahtwist.verbs import COMMON_VERBS, VerbError, Verbs, say_text
from ahtwist.web.mime import mime_for_extension

if TYPE_CHECKING:
    from ahtwist.actions.processor import ActionData
    from ahtwist.files import FileInfo
    from ahtwist.node import Node

log = Logger(namespace="ahtwist.websocket")

#: close codes (RFC 6455 section 7.4.1)
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001

WELCOME_FRAME = dumps({"welcome": errors.WELCOME, "context": "api"})
_OPEN = WebSocketProtocol.STATE_OPEN
_CONNECTING = WebSocketProtocol.STATE_CONNECTING
_CLOSED = WebSocketProtocol.STATE_CLOSED

#: events handled as connection verbs (everything else but action, file,
#: quit and exit is ``verb not found or not allowed``: no sticky params here)
WEBSOCKET_VERBS = COMMON_VERBS - {"quit", "exit"}
_NOT_ARGUMENTS = frozenset({"event", "messageId", "room"})
_NOT_FOUND_TEXT = errors.FILE_NOT_FOUND


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


def send_text(protocol: Any, payload: bytes) -> None:
    """One text message (UTF-8 JSON) to an open protocol."""
    send_prepared(protocol, PreparedMessage(payload, False, False, True))


def parse_cookie_header(header: str) -> dict[str, str]:
    """``a=1; b=2`` -> ``{"a": "1", "b": "2"}`` (the first value of a name wins,
    as in the ``cookie`` module ActionHero uses)."""
    cookies: dict[str, str] = {}
    for item in header.replace(",", ";").split(";"):
        name, sep, value = item.strip().partition("=")
        if sep and name and name not in cookies:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            cookies[name] = value
    return cookies


def iso_milliseconds(mtime: float) -> str:
    """``2026-11-25T17:16:46.000Z`` (JavaScript's ``Date.toISOString``)."""
    moment = datetime.fromtimestamp(mtime, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def file_reply(info: "FileInfo | None", max_size: int) -> dict[str, Any]:
    """The ``file`` event's reply body (docs/protocol-websocket.md, 'The file event'), without counters.

    The file is read from disk each time (no cache), decoded as UTF-8 with
    replacement characters; a missing, refused or oversize file gives the
    not-found form, which never names the file.
    """
    if info is not None and info.size <= max_size:
        try:
            with open(info.path, "rb") as f:
                content = f.read(max_size + 1)
        except OSError as e:
            log.info("{message}", message=errors.FILE_READ_ERROR.format(error=e))
        else:
            if len(content) <= max_size:
                extension = os.path.splitext(info.path)[1][1:]
                return {
                    "error": None,
                    "content": content.decode("utf-8", "replace"),
                    "mime": mime_for_extension(extension) or "application/octet-stream",
                    "length": len(content),
                    "lastModified": iso_milliseconds(info.mtime),
                }
    return {
        "error": _NOT_FOUND_TEXT,
        "content": None,
        "mime": "text/html",
        "length": len(_NOT_FOUND_TEXT.encode()),
    }


class WebSocketServer:
    """The websocket transport of one node: frames in, core calls, frames out.

    Holds no business rules: actions go to the processor, room verbs to
    :mod:`ahtwist.verbs`, files to the shared resolver.  It keeps the set of
    open protocols so a stop can close them.
    """

    def __init__(self, node: "Node") -> None:
        self.node = node
        config = node.config
        self.config = config.servers.websocket
        self.cookie_key = config.servers.web.fingerprintOptions.cookieKey
        self.proxies = TrustedProxies.from_strings(config.servers.web.trustedProxies)
        self.max_file_size = self.config.maxFileSize
        self.protocols: set[WebSocketConnectionProtocol] = set()
        #: (payload, its values, its frame) of the latest chat delivery
        self._shared: tuple[dict[str, Any], tuple[Any, ...], Any] | None = None
        self.stats = node.stats
        self.processor = node.processor
        self.verbs = Verbs(node)

    # --- lifecycle -------------------------------------------------------------

    def opened(self, protocol: "WebSocketConnectionProtocol") -> None:
        """A handshake completed: make the connection, say welcome."""
        ip, port, fingerprint = protocol.client_details
        connection = Connection(
            "websocket",
            ip,
            port,
            self.node.now_ms(),
            transport=protocol,
            fingerprint=fingerprint,
        )
        protocol.connection = connection
        self.protocols.add(protocol)
        self.node.add_connection(connection)
        send_text(protocol, WELCOME_FRAME)

    def closed(self, protocol: "WebSocketConnectionProtocol") -> None:
        """The client went away (or we closed it): leave rooms, forget it."""
        self.protocols.discard(protocol)
        connection = protocol.connection
        if connection is not None and not connection.destroyed:
            self.node.destroy_connection(connection).addErrback(
                lambda f: log.failure("destroying websocket {id}", f, id=connection.id)
            )

    def stop(self, destroy_clients: bool, wait: Any) -> Deferred[Any]:
        """Close every websocket: 1001 (clients may reconnect), or, when
        ``destroy_clients``, destroy the connection first and close with
        1000 (clients should not).  ``wait(done)`` fires once ``done()`` is
        true or the shutdown wait is over; stragglers are then dropped."""
        pending = []
        for protocol in list(self.protocols):
            connection = protocol.connection
            if destroy_clients and connection is not None:
                pending.append(self.node.destroy_connection(connection))
                protocol.close_with(CLOSE_NORMAL)
            else:
                protocol.close_with(CLOSE_GOING_AWAY)

        def force(result: Any) -> Any:
            for protocol in list(self.protocols):
                protocol.dropConnection(abort=True)
            return result

        destroyed = DeferredList(pending, consumeErrors=True) if pending else succeed(None)
        return destroyed.addCallback(lambda _: wait(lambda: not self.protocols)).addCallback(force)

    # --- frames ------------------------------------------------------------------

    def frame(self, protocol: "WebSocketConnectionProtocol", payload: bytes) -> None:
        """One text frame from a client (docs/protocol-websocket.md, 'Client to server')."""
        connection = protocol.connection
        if connection is None or connection.destroyed:
            return
        try:
            message = loads(payload)
        except ValueError:
            return  # not JSON: no reply, not counted, connection stays open
        connection.message_count += 1
        count = connection.message_count
        self.stats.increment(WEBSOCKET_REQUESTS)
        if connection.params:
            connection.params = {}
        if isinstance(message, dict):
            message_id = message.get("messageId")
            event = message.get("event")
            if not isinstance(event, str):
                event = ""
        else:
            message_id, event = None, ""
        if message_id is None:
            message_id = new_id()
        protocol.last_message = (count, message_id)
        if over_rate(connection):
            self.stats.increment(RATE_LIMITED)
            self._send_verb(protocol, errors.TOO_FAST, None, count, message_id)
        elif event == "action":
            params = message.get("params")
            self._action(protocol, params if isinstance(params, dict) else {}, message_id, count)
        elif event == "file":
            reply = file_reply(self._resolve(message.get("file")), self.max_file_size)
            self._send_reply(protocol, reply, count, message_id)
        elif event in WEBSOCKET_VERBS:
            self._verb(protocol, event, message, message_id, count)
        elif event == "quit" or event == "exit":
            protocol.close_with(CLOSE_NORMAL)
        else:
            self._send_verb(protocol, errors.VERB_NOT_FOUND.format(verb=event), None, count, message_id)

    def _action(
        self,
        protocol: "WebSocketConnectionProtocol",
        params: dict[str, Any],
        message_id: Any,
        count: int,
    ) -> None:
        result = self.processor.start(protocol.connection, params, message_id, count)
        if isinstance(result, Deferred):
            result.addCallbacks(
                self._action_done,
                self._failed,
                callbackArgs=(protocol, count, message_id),
                errbackArgs=(protocol, "action"),
            )
        else:  # finished without waiting: no Deferred needed
            self._action_done(result, protocol, count, message_id)

    def _action_done(
        self, data: "ActionData", protocol: "WebSocketConnectionProtocol", count: int, message_id: Any
    ) -> None:
        if not data.to_render:
            return
        response = data.response
        if not isinstance(response, dict):
            response = {} if data.error is None else {"error": data.error}
        self._send_reply(protocol, response, count, message_id)

    def _verb(
        self,
        protocol: "WebSocketConnectionProtocol",
        event: str,
        message: dict[str, Any],
        message_id: Any,
        count: int,
    ) -> None:
        # verb arguments: room (if present), then the other values in key order
        args = [message["room"]] if "room" in message else []
        args.extend(v for k, v in message.items() if k not in _NOT_ARGUMENTS)
        if event == "say":
            args = [args[0] if args else None, say_text(args[1:])]
        self.verbs.run(protocol.connection, event, args, WEBSOCKET_VERBS).addCallbacks(
            lambda data: self._send_verb(protocol, None, data, count, message_id),
            self._verb_failed,
            errbackArgs=(protocol, event, count, message_id),
        )

    def _verb_failed(
        self, failure: Any, protocol: "WebSocketConnectionProtocol", event: str, count: int, message_id: Any
    ) -> None:
        if failure.check(VerbError):
            error = failure.value
            self._send_verb(protocol, error.message, error.data, count, message_id)
        else:
            self._failed(failure, protocol, event)

    def _resolve(self, name: Any) -> "FileInfo | None":
        if not isinstance(name, str) or not name:
            return None
        return self.node.files.resolve(name)

    # --- replies -------------------------------------------------------------------

    def _send_reply(
        self,
        protocol: "WebSocketConnectionProtocol",
        reply: dict[str, Any],
        count: int,
        message_id: Any,
    ) -> None:
        """``{...reply, context, messageCount, messageId}``, counters last."""
        if protocol.state != _OPEN:
            return
        if "context" in reply or "messageCount" in reply or "messageId" in reply:
            for key in ("context", "messageCount", "messageId"):
                reply.pop(key, None)
        reply["context"] = "response"
        reply["messageCount"] = count
        reply["messageId"] = message_id
        send_text(protocol, dumps(reply))

    def _send_verb(
        self,
        protocol: "WebSocketConnectionProtocol",
        error: Any,
        data: Any,
        count: int,
        message_id: Any,
    ) -> None:
        """A verb's reply: OK (``error`` None) or the error in ``status`` and
        ``error``; ``data`` when not None."""
        if error is None:
            reply: dict[str, Any] = {"status": "OK", "context": "response"}
        else:
            reply = {"status": error, "error": error, "context": "response"}
        if data is not None:
            reply["data"] = data
        reply["messageCount"] = count
        reply["messageId"] = message_id
        if protocol.state == _OPEN:
            send_text(protocol, dumps(reply))

    def _failed(self, failure: Any, protocol: "WebSocketConnectionProtocol", what: str) -> None:
        log.failure("websocket {what} failed", failure, what=what)

    # --- what the core pushes ------------------------------------------------------

    def send_message(self, protocol: "WebSocketConnectionProtocol", message: dict[str, Any]) -> None:
        """A message from the core: ``context: "response"`` added when absent.

        A chat delivery hands the *same* payload dict to every member of the
        room one after the other; it is encoded and framed once
        (``PreparedMessage``) and the frame reused while the next recipient
        gets that same, unchanged dict.
        """
        if protocol.state != _OPEN:
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
        if not isinstance(path, str) or not path:
            log.info("{message}", message=errors.SEND_FILE_NEEDS_NAME)
            info = None
        elif os.path.isabs(path):
            info = self.node.files.resolve_absolute(path)
        else:
            info = self.node.files.resolve(path)
        count, message_id = protocol.last_message
        self._send_reply(protocol, file_reply(info, self.max_file_size), count, message_id)


@implementer(IConnectionTransport)
class WebSocketConnectionProtocol(WebSocketServerProtocol):
    """One websocket client: Autobahn protocol + the connection's transport."""

    _log = log
    factory: "WebSocketFactory"
    connection: Connection | None = None
    #: (remoteIP, remotePort, fingerprint) from the upgrade request
    client_details: tuple[str, int, str | None] = ("", 0, None)
    #: (messageCount, messageId) of the latest counted message
    last_message: tuple[int, Any] = (0, None)

    def onConnect(self, request: Any) -> None:
        """Read the fingerprint and client address from the upgrade request;
        no subprotocol is selected."""
        ws_server = self.factory.ws_server
        headers = request.headers
        fingerprint = None
        cookie = headers.get("cookie")
        if cookie:
            fingerprint = parse_cookie_header(cookie).get(ws_server.cookie_key) or None
        if fingerprint is None:
            values = request.params.get(ws_server.cookie_key)
            if values and values[0]:
                fingerprint = values[0]
        peer = self.transport.getPeer()
        ip = getattr(peer, "host", None) or "unix"
        port = getattr(peer, "port", 0) or 0
        forwarded = headers.get("x-forwarded-for")
        if forwarded:
            ip, port = ws_server.proxies.client(ip, port, forwarded, headers.get("x-forwarded-port"))
        self.client_details = (ip, port, fingerprint)
        return None

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

    def close_with(self, code: int) -> None:
        """Start the closing handshake with ``code`` (Autobahn's sendClose
        refuses 1001, which a stop needs)."""
        if self.state == _OPEN:
            self.sendCloseFrame(code=code, isReply=False)
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

    protocol = WebSocketConnectionProtocol

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
