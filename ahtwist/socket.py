"""The line-oriented TCP/TLS socket server (docs/protocol-socket.md).

Three pieces, one job each:

* :class:`SocketProtocol` -- the transport.  It frames bytes into lines (``\\r``
  folded to ``\\n``, a configurable, possibly multi-character delimiter),
  enforces the limits (``maxDataLength``, ``maxBufferLength``, idle timeout,
  bounded output for clients that do not read), streams files, and writes
  every message as compact JSON + ``\\r\\n``.  It decides nothing about what a
  line means.
* :class:`SocketServer` -- the socket's core.  It counts lines, tells verbs
  from actions, keeps the sticky params, hands actions to the processor and
  verbs to :mod:`ahtwist.verbs`, and shapes every reply (``status``/``error``/
  ``data``/``context``/``messageCount``/``messageId``).  It talks to the client
  only through the :class:`~ahtwist.connection.Connection`.
* :class:`SocketFactory` -- builds protocols on every ``--socket`` endpoint
  (``tcp:``, ``ssl:``, ``unix:``, ``systemd:``) and drains the live ones
  (the server's ``connections``, from the first byte) on a stop
  (:meth:`SocketFactory.drain`).
"""

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

import ahtwist.errors as errors
import ahtwist.replies as replies
from ahtwist.actions.processor import ActionData
from ahtwist.connection import EMPTY, NO_HANDSHAKE, Connection, ConnectionRaw, IConnectionTransport
from ahtwist.encoding import NestedTooDeep, dumps, loads
from ahtwist.errors import ConnectionRefused
from ahtwist.ids import new_id
from ahtwist.limits import RATE_LIMITED, over_rate
from ahtwist.line_output import CRLF, INPUT_PAUSE_BACKLOG, LineOutput
from ahtwist.node import SOCKET_REQUESTS, Node
from ahtwist.servers.base import Server
from ahtwist.servers.peer import is_secure, peer_address
from ahtwist.servers.write import no_delay, write_now
from ahtwist.timers import Deadlines
from ahtwist.verbs import SOCKET_VERBS

log = Logger(namespace="ahtwist.socket")

WELCOME_LINE = replies.WELCOME_JSON + CRLF
GOODBYE_LINE = replies.GOODBYE_JSON + CRLF
#: a read that is exactly telnet's Ctrl-C (IAC IP IAC DO TIMING-MARK) or Ctrl-D
TELNET_GOODBYE = frozenset((b"\xff\xf4\xff\xfd\x06", b"\x04"))
#: seconds a closing connection may take to flush its goodbye before it is aborted
CLOSE_TIMEOUT = 10.0
#: unread output tolerated from a client that stopped reading, at least (well
#: above the pause, so replies already in flight do not get it dropped)
MIN_OUTPUT_LIMIT = 4 * INPUT_PAUSE_BACKLOG
_JSON_SPACE = " \t\n\r"


def since_words(words: list[str]) -> Any:
    """``roomAdd <room> since [<offset> <epoch>]``: the words after ``since``
    as the wire's ``since`` (anything else is passed on to be refused)."""
    if not words:
        return {}
    if len(words) == 2 and words[0].isdigit() and words[0].isascii():
        return {"offset": int(words[0]), "epoch": words[1]}
    return words


class SocketServer(Server):
    """The socket server of one node: what lines mean (verbs, actions,
    files), its listeners (one :class:`SocketFactory` on every endpoint) and
    its graceful stop."""

    type = "socket"
    sends_welcome = True
    logs_connections = False
    allowed_verbs = SOCKET_VERBS
    # a SocketProtocol stays its transport's protocol (no upgrade)
    _lazy_tcp_names = True

    def __init__(
        self,
        node: Node,
        reactor: Any = None,
        endpoints: tuple[str, ...] = (),
        options: Any = None,
        factory: "SocketFactory | None" = None,
    ) -> None:
        super().__init__(node, reactor, endpoints, options)
        self.files = node.files
        #: the factory every endpoint listens with
        self.factory = factory if factory is not None else SocketFactory(node, self.reactor, server=self)
        config = node.config.servers.socket
        self.max_data_length = config.maxDataLength
        self.max_buffer_length = config.maxBufferLength
        #: set while a stop drains connections: an idle connection is closed
        #: as soon as its last pending action has answered
        self.draining = False
        self._add_listeners()

    def build_factory(self) -> "SocketFactory":
        return self.factory

    def drain(self, limit: float) -> Deferred[None]:
        return self.factory.drain(limit)

    # --- lines -----------------------------------------------------------------

    def line_too_long(self, connection: Connection, received: int) -> None:
        """A line over the limit: dropped, not counted, answered with the
        current count (docs/protocol-socket.md, 'Limits')."""
        limit = self.max_data_length if self.max_data_length > 0 else self.max_buffer_length
        text = errors.DATA_TOO_BIG.format(received=received, max=limit)
        log.info("{ip}: {error}", ip=connection.remote_ip, error=text)
        reply = replies.verb_reply(text, None, connection.message_count, new_id())
        reply["status"] = "error"
        connection.send_message(reply)

    def line_received(self, connection: Connection, line: str) -> None:
        """One accepted (non-empty, within limits) request line."""
        connection.message_count += 1
        count = connection.message_count
        self.stats.increment(SOCKET_REQUESTS)
        if over_rate(connection):
            self.stats.increment(RATE_LIMITED)
            self.send_reply(connection, replies.verb_reply(errors.TOO_FAST, None, count, new_id()))
            return
        if line[0] == "{":  # a JSON request, never a verb: its words are not needed
            self.run_action_line(connection, line, None, count)
            return
        words = line.split(" ")
        verb = words[0]
        if verb == "file":
            if len(words) > 1:
                connection.params["file"] = words[1]  # sticky, as in v17
            self.send_public_file(connection, connection.params.get("file"))
        elif verb in self.allowed_verbs:
            # a socket verb's reply has a fresh messageId (nothing to echo)
            if verb == "roomAdd" and len(words) > 2 and words[2] == "since":
                self.run_verb(connection, verb, words[1:2], count, new_id(), since_words(words[3:]))
            else:
                self.run_verb(connection, verb, words[1:], count, new_id())
        else:
            self.run_action_line(connection, line, verb, count)

    # --- verbs -----------------------------------------------------------------

    # --- actions ---------------------------------------------------------------

    def run_action_line(self, connection: Connection, line: str, verb: str | None, count: int) -> None:
        """A JSON object request, or the first word as the action name
        (docs/protocol-socket.md, 'Actions'; ``verb`` None: not split yet);
        the action works on a copy of the sticky params."""
        request = None
        first = line[0]
        if first == "{" or (first in _JSON_SPACE and line.lstrip(_JSON_SPACE)[:1] == "{"):
            try:
                request = loads(line)
            except NestedTooDeep:
                self.send_reply(connection, replies.verb_reply(errors.TOO_DEEP, None, count, new_id()))
                return
            except ValueError:
                request = None
        if type(request) is not dict:  # a word line (or JSON that is not an object)
            sticky = connection.params
            sticky["action"] = line.split(" ")[0] if verb is None else verb
            params = sticky.copy()  # (dict.copy: cheaper than dict())
            message_id: Any = new_id()
        else:
            if request.get("event") == "roomAdd" and "since" in request and "action" not in request:
                # the websocket's resume form, as one JSON line
                message_id = request.get("messageId")
                message_id = new_id() if message_id is None else message_id
                self.run_verb(connection, "roomAdd", [request.get("room")], count, message_id, request["since"])
                return
            request_params = request.get("params")
            if type(request_params) is dict:
                sticky = request_params.copy()
                sticky.pop("messageId", None)  # never sticky
                connection.params = sticky
            else:
                request_params = None
                sticky = connection.params
            if "action" in request:
                sticky["action"] = request["action"]
            message_id = request.get("messageId")
            params = sticky.copy()
            if request_params is not None:
                if message_id is None:
                    message_id = request_params.get("messageId")
                if "messageId" in request_params:
                    params["messageId"] = request_params["messageId"]
            if message_id is None:
                message_id = new_id()
        result = self.processor.start(connection, params, message_id, count)
        if not isinstance(result, ActionData):  # a Deferred (an ABC: a slower isinstance)
            result.addCallbacks(
                self._render_action,
                self._render_failed,
                callbackArgs=(connection,),
                errbackArgs=(connection, message_id, count),
            )
        else:
            self._render_action(result, connection)

    def _render_action(self, data: ActionData, connection: Connection) -> None:
        if data.to_render:
            response = replies.stamp(data.response, data.message_count, data.message_id)
            try:
                connection.send_message(response)
            except Exception:
                self._render_failed(Failure(), connection, data.message_id, data.message_count)
        if self.draining and connection.pending_actions == 0:
            connection.destroy()

    def _render_failed(
        self, failure: Failure, connection: Connection, message_id: Any, count: int
    ) -> None:
        """Never lose the reply: a response that cannot be sent (say, a value
        JSON cannot encode) is answered with ``internal server error``."""
        log.failure("rendering a socket reply failed", failure)
        connection.send_message(replies.error_reply(errors.INTERNAL_ERROR, count, message_id))

    # --- files -----------------------------------------------------------------

    def send_public_file(self, connection: Connection, name: Any) -> None:
        """The ``file`` verb: a name from the client, resolved inside the
        public folders only (absolute names are refused)."""
        info = self.resolve_file(name)
        transport = connection.transport
        if transport is not None and not connection.destroyed:
            transport.send_resolved_file(info)


@implementer(IConnectionTransport, IPushProducer)
class SocketProtocol(LineOutput, Protocol):
    """One socket client: framing, limits, output, files (no decisions).

    Output is bounded.  The protocol is its transport's streaming producer:
    Twisted pauses it when the transport's buffer passes 64 KiB (the client is
    not reading fast enough, or TLS is buffering during its handshake).  What
    is written while paused, plus what waits behind a file being streamed, is
    the client's *backlog*.  Past :data:`INPUT_PAUSE_BACKLOG` the client's
    requests are no longer read (TCP pushes back on it); past the output
    limit (``servers.socket.maxBufferLength``, at least 256 KiB) -- chat keeps
    coming even when its requests do not -- the client is dropped.  So a
    client that never reads cannot make the server buffer without bound.
    """

    #: set by connectionMade, before anything else can run
    connection: Connection
    #: a TCP, TLS or unix transport: an ITransport that is also an IConsumer
    #: and IPushProducer (zope interfaces cannot state the three at once)
    transport: Any
    #: no more input is read and no new message is accepted (goodbye sent or due)
    _closing = False
    #: the transport is lost or aborted: nothing more is written
    _gone = False
    #: we stopped reading the client's input because its backlog is too big
    _input_paused = False
    _partial: bytearray | None = None
    #: input read but not handled because the client fell behind (one read at most)
    _held: bytes | None = None
    _release_call: Any = None
    _discarding = False
    _discard_tail = b""
    _close_call: Any = None
    #: when input last came (None: never; a client silent since it was
    #: accepted holds no time of its own)
    _last_seen: float | None = None
    #: its idle deadline (:class:`~ahtwist.timers.Deadlines`)
    deadline_bucket: Any = None
    #: connection middleware is still deciding (input is not read meanwhile)
    _waiting = False

    def __init__(self, factory: "SocketFactory") -> None:
        self.factory = factory
        self.server = factory.server

    # --- connection lifecycle --------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        transport = self.transport
        ip, port = peer_address(transport.getPeer())
        raw = ConnectionRaw(EMPTY, EMPTY, EMPTY, True, transport) if is_secure(transport) else NO_HANDSHAKE
        server = self.server
        connection = server.new_connection(self, ip, port, raw)
        self.connection = connection
        # the server's registry holds it from now (while middleware decides
        # too) until connectionLost: what a stop drains
        server.connections[connection] = None
        if factory.keep_alive and hasattr(transport, "setTcpKeepAlive"):
            transport.setTcpKeepAlive(1)
        no_delay(transport)
        transport.registerProducer(self, True)
        result = server.open_connection(connection, greet=False)
        if isinstance(result, Deferred):
            # input waits until every create hook has finished
            self._waiting = True
            self._held = b""  # what the client sends meanwhile is handled after the welcome
            transport.pauseProducing()
            result.addCallbacks(self._accepted, self._refused)
        else:
            self._accepted(result)

    def _accepted(self, connection: Connection) -> None:
        if self._closing:  # a create hook destroyed it, or the client left
            return
        write_now(self.transport, WELCOME_LINE)
        factory = self.factory
        if factory.idle_timeout > 0:
            # the first check closes a client that said nothing since
            # (_last_seen is older than this deadline, or None)
            factory.idle.watch(self, factory.clock.seconds() + factory.idle_timeout)
        if self._waiting:
            self._waiting = False
            held, self._held = self._held, None
            if held:
                self._feed(held)
            if not self._input_paused and not self._closing:
                self.transport.resumeProducing()

    def _refused(self, failure: Failure) -> None:
        """Connection middleware refused: one error line, then close."""
        refused = failure.check(ConnectionRefused)
        if not refused:
            log.failure("accepting socket client failed", failure)
        if self._closing:
            return
        self._closing = True
        error = failure.value
        if isinstance(error, ConnectionRefused):
            self.transport.write(dumps(replies.refusal(error.error)) + CRLF)
        self._finish_close()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closing = self._gone = True
        for call in (self._close_call, self._release_call):
            if call is not None and call.active():
                call.cancel()
        self._close_call = self._release_call = None
        self.factory.idle.forget(self)
        self._held = None
        self._stop_file()
        self._partial = None
        connection: Connection | None = getattr(self, "connection", None)  # None: never made
        if connection is not None:
            self.server.disconnected(connection).addErrback(
                lambda f: log.failure("destroying socket connection {id}", f, id=connection.id)
            )
        self.factory.gone()

    # --- input -----------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        factory = self.factory
        if factory.idle_timeout > 0:
            self._last_seen = factory.clock.seconds()
        if len(data) <= 5 and data in TELNET_GOODBYE:
            self.connection.destroy()
            return
        if b"\r" in data:
            data = data.replace(b"\r", b"\n")
        if self._held is not None:
            self._held += data  # input is paused; TLS may still hand over one read
        else:
            self.corked(self._feed, data)

    def _feed(self, data: bytes) -> None:
        if self._partial or self._discarding:
            self._feed_slow(data)
            return
        delimiter = self.factory.delimiter
        lines = data.split(delimiter)
        tail = lines.pop()
        for index, raw in enumerate(lines):
            if raw:
                self._line(raw)
                if self._closing:
                    return
                if self._input_paused:
                    self._held = delimiter.join([*lines[index + 1 :], tail])
                    return
        if tail:
            self._partial = bytearray(tail)
            self._check_partial()

    def _feed_slow(self, data: bytes) -> None:
        """Input while a line is incomplete or being discarded: only the new
        bytes are searched for the delimiter, so trickled input stays linear."""
        delimiter = self.factory.delimiter
        width = len(delimiter)
        if self._discarding:
            joined = self._discard_tail + data
            index = joined.find(delimiter)
            if index < 0:
                self._discard_tail = joined[-(width - 1) :] if width > 1 else b""
                return
            self._discarding = False
            self._discard_tail = b""
            rest = joined[index + width :]
            if rest:
                self._feed(rest)
            return
        buffer = self._partial
        assert buffer is not None  # _feed comes here only with a partial line
        start = max(0, len(buffer) - width + 1)
        buffer += data
        index = buffer.find(delimiter, start)
        if index < 0:
            self._check_partial()
            return
        line = bytes(buffer[:index])
        rest = bytes(buffer[index + width :])
        self._partial = None
        if line:
            self._line(line)
            if self._closing:
                return
            if self._input_paused:
                self._held = rest
                return
        if rest:
            self._feed(rest)

    def _release_input(self) -> None:
        """The client caught up: handle the input held since the pause, then
        read again (unless that input put it behind once more)."""
        self._release_call = None
        if self._closing or self._input_paused:
            return  # behind again: released at the next catch-up
        held, self._held = self._held, None
        if held:
            self._feed(held)
        if not self._input_paused and not self._closing:
            self.transport.resumeProducing()

    def _check_partial(self) -> None:
        """An unterminated line is never buffered beyond the cap: answer once,
        then discard input up to the next delimiter."""
        buffer = self._partial
        if buffer is not None and len(buffer) > self.factory.buffer_cap:
            width = len(self.factory.delimiter)
            self._discard_tail = bytes(buffer[-(width - 1) :]) if width > 1 else b""
            self._partial = None
            self._discarding = True
            self.server.line_too_long(self.connection, len(buffer))

    def _line(self, raw: bytes) -> None:
        if len(raw) > self.factory.line_limit:
            self.server.line_too_long(self.connection, len(raw))
            return
        self.server.line_received(self.connection, raw.decode("utf-8", "replace"))

    def _check_idle(self) -> None:
        """Close a client silent for ``idleTimeout`` seconds (a half line
        followed by silence included).  Checked when the factory's
        :class:`~ahtwist.timers.Deadlines` says the deadline set at the
        previous check came (no timer of its own, and nothing done per
        read but noting the time), then filed again for the new deadline."""
        if self._closing:
            return
        factory = self.factory
        last = self._last_seen
        # None: silent since the accept, and this is the accept's deadline
        due = 0.0 if last is None else last + factory.idle_timeout
        if factory.clock.seconds() >= due:
            log.info("closing idle socket client {id}", id=self.connection.id)
            self.close()
        else:
            factory.idle.watch(self, due)

    # --- closing ---------------------------------------------------------------

    def close(self) -> None:
        """Goodbye, then close (``quit``, telnet Ctrl-C/D, ``destroy()``, idle,
        stop).  Replies still pending are dropped; a file being streamed is
        finished first; a client that does not read its goodbye is aborted
        after :data:`CLOSE_TIMEOUT` seconds."""
        if self._closing:
            return
        self.uncork()  # replies written before the goodbye go first
        self._closing = True
        self._partial = None
        if self._file is not None:
            # the file streaming now is finished; files waiting behind it are dropped
            self._queued = [item for item in self._queued or () if type(item) is bytes]
            self._queued.append(GOODBYE_LINE)
            self._close_after_file = True
            self._arm_close_timer()
            return
        self.transport.write(GOODBYE_LINE)
        self._finish_close()

    def _finish_close(self) -> None:
        transport = self.transport
        transport.unregisterProducer()
        transport.loseConnection()
        self._arm_close_timer()

    def _arm_close_timer(self) -> None:
        if self._close_call is None and not self._gone:
            self._close_call = self.factory.clock.callLater(CLOSE_TIMEOUT, self.abort)

    def abort(self) -> None:
        """Close now, without a goodbye (forced stop, a client that does not
        read)."""
        self._close_call = None
        if self._gone:
            return
        self._closing = self._gone = True
        self._stop_file()
        self.transport.abortConnection()


class SocketFactory(ServerFactory):
    """Builds a :class:`SocketProtocol` per client on every socket listener."""

    noisy = False

    def __init__(self, node: Node, clock: Any = None, server: SocketServer | None = None) -> None:
        self.node = node
        self.clock = clock or node.reactor
        self.server = server if server is not None else SocketServer(node, self.clock, factory=self)
        config = node.config.servers.socket
        # \r is folded to \n in the input, so it is folded in the delimiter too
        self.delimiter = config.delimiter.replace("\r", "\n").encode("utf-8")
        self.buffer_cap = max(config.maxDataLength, config.maxBufferLength)
        self.line_limit = config.maxDataLength if config.maxDataLength > 0 else self.buffer_cap
        #: the output policy every transport shares; its limit is maxBufferLength
        self.output_policy = node.limits.output_policy(
            "socket", max(config.maxBufferLength, MIN_OUTPUT_LIMIT), node.stats, log
        )
        self.idle_timeout = config.idleTimeout
        #: the idle deadlines of every connection (one reactor call per second with any due)
        self.idle = Deadlines(self.clock, SocketProtocol._check_idle)
        self.keep_alive = config.setKeepAlive
        self._drained: Deferred[None] | None = None
        #: (payload, its values, its line) of the latest chat delivery
        self.shared_line: tuple[dict[str, Any], tuple[Any, ...], bytes] | None = None

    def buildProtocol(self, addr: Any) -> SocketProtocol:
        return SocketProtocol(self)

    def gone(self) -> None:
        """A client went: the drain is done when it was the last one."""
        if not self.server.connections and self._drained is not None and not self._drained.called:
            self._drained.callback(None)

    # --- stop ------------------------------------------------------------------

    def drain(self, limit: float) -> Deferred[None]:
        """Goodbye to connections with nothing pending; the rest are
        rechecked every second (and closed as soon as their last action
        answers); whatever is open ``limit`` seconds after the start is
        aborted.  Fires once every connection is gone."""
        server = self.server
        server.draining = True
        self._drained = done = Deferred[None]()
        clock = self.clock
        deadline = clock.seconds() + limit
        calls: list[Any] = []

        def sweep() -> None:
            calls.clear()
            if done.called:
                return
            overdue = clock.seconds() >= deadline
            for connection in list(server.connections):
                protocol = connection.transport
                if overdue:
                    protocol.abort()
                elif connection.pending_actions == 0:
                    protocol.close()
            if not server.connections:
                if not done.called:
                    done.callback(None)
            elif overdue:
                # aborted transports report connectionLost on the next turn
                calls.append(clock.callLater(1.0, _give_up))
            else:
                calls.append(clock.callLater(min(1.0, max(0.0, deadline - clock.seconds())), sweep))

        def _give_up() -> None:
            if not done.called:
                log.warn("{n} socket connections did not close", n=len(server.connections))
                done.callback(None)

        def cancel_timers(result: Any) -> Any:
            for call in calls:
                if call.active():
                    call.cancel()
            return result

        sweep()
        return done.addBoth(cancel_timers)
