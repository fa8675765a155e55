"""The public server contract: what a server declares, implements and gets.

A server is a Twisted ``MultiService`` (:class:`Server`).  It **declares** its
connection ``type`` and attributes (``can_chat``, ``sends_welcome``,
``logs_connections``, ``allowed_verbs``), and **implements**
:meth:`Server.build_factory` -- the protocol factory listening on each of its
endpoint strings -- and, per connection, an
:class:`~ahtwist.connection.IConnectionTransport` (``send_message``,
``send_file``, ``close`` = say goodbye and close) that the core pushes
through.  Starting the service listens on every endpoint; stopping it closes
the listeners, then :meth:`Server.drain` says goodbye to its connections,
letting pending actions finish for up to
``servers.socket.pendingShutdownWaitLimit`` ms.

The core **gives** every server the same services: :meth:`Server.connect`
(builds a connection and runs connection middleware, which may refuse it),
:meth:`Server.receive` (one JSON message: an action, a verb from the server's
table, or a file), :meth:`Server.run_action`, :meth:`Server.run_verb`,
:meth:`Server.resolve_file`/:meth:`Server.lookup_file`, and the reply
envelopes of :mod:`ahtwist.replies`.  The built-in web, websocket and socket
servers are built on it, and a user's server in a ``general.paths.servers``
folder is too (``docs/`` and README "Writing a server").
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

import ahtwist.errors as errors
import ahtwist.replies as replies
from ahtwist.actions.data import ActionData
from ahtwist.connection import Connection, ConnectionRaw, canonical_type
from ahtwist.files import FileInfo
from ahtwist.ids import new_id
from ahtwist.limits import RATE_LIMITED, over_rate
from ahtwist.servers.tcp_server import use_lazy_transport
from ahtwist.verbs import COMMON_VERBS, NO_REPLY, NO_SINCE, UnknownVerb, VerbError, Verbs, say_text
from ahtwist.workers import server_endpoint

log = Logger(namespace="ahtwist.server")
#: listener lines keep the service's namespace (operators filter on it)
_listen_log = Logger(namespace="ahtwist.service")

#: message keys that are not verb arguments
_NOT_ARGUMENTS = frozenset({"event", "messageId", "room"})


class Listener(StreamServerEndpointService):
    """A listener that logs the address it really got (port 0 included) and
    stops start-up with one clear line when it cannot listen.  With
    ``lazy_names``, a TCP port (plain, TLS or adopted) accepts its
    connections as :class:`~ahtwist.servers.tcp_server.LazyTCPServer`."""

    def __init__(self, kind: str, description: str, endpoint: Any, factory: Any, lazy_names: bool = False) -> None:
        super().__init__(endpoint, factory)
        self.kind = kind
        self.description = description
        self.lazy_names = lazy_names
        self._raiseSynchronously = True

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except Exception as e:
            _listen_log.error("cannot listen on {description}: {e}", description=self.description, e=e)
            raise SystemExit(f"ahtwist: cannot listen on {self.description}: {e}") from None
        # StreamServerEndpointService keeps the listening Deferred privately
        waiting = getattr(self, "_waitingForPort", None)
        if waiting is not None:
            waiting.addCallback(self._listening)

    def _listening(self, port: Any) -> Any:
        if self.lazy_names:
            use_lazy_transport(port)
        address = port.getHost()
        where = f"{address.host}:{address.port}" if hasattr(address, "port") else str(address)
        _listen_log.info(
            "{kind} server listening on {where} ({description})",
            kind=self.kind,
            where=where,
            description=self.description,
        )
        return port


def listen_on(
    parent: MultiService, reactor: Any, kind: str, description: str, factory: Any, lazy_names: bool = False
) -> None:
    """Add a ``kind`` ("web", "socket", ...) listener for a Twisted endpoint
    string (``lazy_names``: see :class:`Listener`)."""
    endpoint = server_endpoint(reactor, kind, description)
    Listener(kind, description, endpoint, factory, lazy_names).setServiceParent(parent)


def wait_until(reactor: Any, done: Callable[[], bool], timeout: float, step: float = 0.05) -> Deferred[bool]:
    """Fire True once ``done()`` is true, or False after ``timeout`` seconds."""
    result: Deferred[bool] = Deferred()
    deadline = reactor.seconds() + timeout

    def check() -> None:
        if done():
            result.callback(True)
        elif reactor.seconds() >= deadline:
            result.callback(False)
        else:
            reactor.callLater(step, check)

    check()
    return result


def lookup_file(files: Any, path: Any) -> FileInfo | None:
    """``connection.send_file(path)`` on any server: ``files.lookup`` (a
    public name or an absolute path inside a public folder); a missing name
    is logged."""
    if not isinstance(path, str) or not path:
        log.info("{message}", message=errors.SEND_FILE_NEEDS_NAME)
        return None
    return files.lookup(path)


class Server(MultiService):
    """Base class of every server (see the module docstring).

    Subclass it, set the attributes, implement :meth:`build_factory` and a
    protocol providing :class:`~ahtwist.connection.IConnectionTransport`.
    ``options`` is the server's ``[servers.<name>]`` table (its keys besides
    ``endpoints``).
    """

    #: the ``connection.type`` of its connections (``blocked_connection_types`` names it)
    type: ClassVar[str] = "custom"
    #: the ``[servers.<name>]`` table that starts it (default: ``type``)
    config_name: ClassVar[str | None] = None
    #: may its connections join rooms and say things
    can_chat: ClassVar[bool] = True
    #: is a new connection greeted with the welcome message
    sends_welcome: ClassVar[bool] = True
    #: are connections and disconnections logged (one line each)
    logs_connections: ClassVar[bool] = True
    #: the verbs its clients may use (:mod:`ahtwist.verbs`)
    allowed_verbs: ClassVar[frozenset[str]] = COMMON_VERBS
    #: the largest file sent as one message (``file`` event, ``send_file``)
    max_file_size: int = 10485760
    #: TCP listeners make connections that name themselves when asked
    #: (:mod:`ahtwist.servers.tcp_server`): only for a protocol that stays
    #: its transport's protocol
    _lazy_tcp_names: ClassVar[bool] = False

    def __init__(
        self,
        node: Any,
        reactor: Any = None,
        endpoints: Sequence[str] = (),
        options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.node = node
        self.reactor = reactor if reactor is not None else node.reactor
        self.endpoints = tuple(endpoints)
        self.options: Mapping[str, Any] = options or {}
        self.stats = node.stats
        self.processor = node.processor
        self.verbs = Verbs(node)
        #: stats counter of the messages this server received
        self.requests_counter = f"{canonical_type(self.type)}:requests"
        #: this server's open connections (a dict used as an ordered set: an
        #: entry costs about half a set's, and a server may hold 10,000s)
        self.connections: dict[Connection, None] = {}
        self._listeners_added = False

    def _add_listeners(self) -> None:
        """One listener per endpoint, all on the factory of :meth:`build_factory`."""
        if self._listeners_added:
            return
        self._listeners_added = True
        if self.endpoints:
            factory = self.build_factory()
            for description in self.endpoints:
                listen_on(self, self.reactor, self.kind(), description, factory, self._lazy_tcp_names)

    def privilegedStartService(self) -> None:
        self._add_listeners()
        super().privilegedStartService()

    def startService(self) -> None:
        self._add_listeners()
        super().startService()

    # --- what a server implements ----------------------------------------------

    def kind(self) -> str:
        """The word in the "listening on" log line."""
        return canonical_type(self.type)

    def build_factory(self) -> Any:
        """The protocol factory every endpoint of this server listens with."""
        raise NotImplementedError(f"{type(self).__name__} must implement build_factory()")

    def stopService(self) -> Deferred[Any]:
        """Close the listeners, then :meth:`drain` the connections."""
        stopped = super().stopService() or succeed(None)
        limit = self.node.config.servers.socket.pendingShutdownWaitLimit / 1000
        return stopped.addCallback(lambda _: self.drain(limit))

    def drain(self, limit: float) -> Deferred[Any]:
        """Say goodbye to every connection once its pending actions are done
        (at most ``limit`` seconds), then forget the rest."""

        told: set[Connection] = set()  # only while a stop drains

        def idle_ones_go() -> bool:
            for connection in list(self.connections):
                if connection.pending_actions == 0 and connection not in told:
                    told.add(connection)  # one goodbye each
                    connection.destroy()
            return not self.connections

        def leftovers(_: Any) -> None:
            for connection in list(self.connections):
                self.disconnected(connection)

        return wait_until(self.reactor, idle_ones_go, limit).addCallback(leftovers)

    # --- what the core gives every server ---------------------------------------

    def new_connection(
        self,
        transport: Any,
        remote_ip: str,
        remote_port: int,
        raw: Any = None,
        fingerprint: str | None = None,
    ) -> Connection:
        """A connection of this server's type whose client is reached through
        ``transport`` (an ``IConnectionTransport``); not yet accepted."""
        connection = Connection(
            self.type,
            remote_ip,
            remote_port,
            self.node.now_ms(),
            transport=transport,
            fingerprint=fingerprint,
        )
        connection.raw = raw if raw is not None else ConnectionRaw()
        connection.can_chat = self.can_chat
        return connection

    def open_connection(self, connection: Connection, greet: bool = True) -> "Connection | Deferred[Connection]":
        """Run the connection middleware; the accepted connection (a Deferred
        when middleware waited).

        A refusal raises (or fails with) :class:`~ahtwist.errors.ConnectionRefused`;
        the server then tells the client (:func:`ahtwist.replies.refusal`)
        and closes, without a welcome.  On acceptance the welcome is sent
        when ``sends_welcome`` and ``greet``.
        """
        result = self.node.add_connection(connection)
        if isinstance(result, Deferred):
            return result.addCallback(self._accepted, greet)
        return self._accepted(result, greet)

    def connect(
        self,
        transport: Any,
        remote_ip: str,
        remote_port: int,
        raw: Any = None,
        fingerprint: str | None = None,
    ) -> "Connection | Deferred[Connection]":
        """:meth:`new_connection` then :meth:`open_connection`."""
        return self.open_connection(self.new_connection(transport, remote_ip, remote_port, raw, fingerprint))

    def _accepted(self, connection: Connection, greet: bool = True) -> Connection:
        if connection.destroyed:
            return connection
        self.connections[connection] = None
        if self.logs_connections:
            log.info(
                "{type} connection {id} from {ip}", type=connection.type, id=connection.id, ip=connection.remote_ip
            )
        if greet and self.sends_welcome:
            connection.send_message(replies.welcome())
        return connection

    def disconnected(self, connection: Connection) -> Deferred[None]:
        """The client is gone: leave rooms, run destroy middleware, forget it."""
        if connection in self.connections:
            del self.connections[connection]
            if self.logs_connections:
                log.info("{type} connection {id} closed", type=connection.type, id=connection.id)
        return self.node.destroy_connection(connection)

    def receive(self, connection: Connection, message: Any) -> None:
        """One JSON message from a client (the websocket's protocol: ``event``
        ``action``/``file``/a verb, ``messageId`` echoed); replies go through
        :meth:`send_reply`.  Params are not sticky."""
        connection.message_count += 1
        count = connection.message_count
        self.stats.increment(self.requests_counter)
        if connection._params:  # not sticky (None: never set; see Connection.params)
            connection._params = None
        if isinstance(message, dict):
            message_id = message.get("messageId")
            event = message.get("event")
            if not isinstance(event, str):
                event = ""
        else:
            message_id, event = None, ""
        if message_id is None:
            message_id = new_id()
        self.received(connection, count, message_id)
        if over_rate(connection):
            self.stats.increment(RATE_LIMITED)
            self.send_reply(connection, replies.verb_reply(errors.TOO_FAST, None, count, message_id))
        elif event == "action":
            params = message.get("params")
            self.run_action(connection, params if isinstance(params, dict) else {}, message_id, count)
        elif event == "file":
            reply = replies.file_reply(self.resolve_file(message.get("file")), self.max_file_size)
            self.send_reply(connection, replies.stamp_last(reply, count, message_id))
        elif event in self.allowed_verbs:
            args = [message["room"]] if "room" in message else []
            args.extend(v for k, v in message.items() if k not in _NOT_ARGUMENTS)
            if event == "say":
                args = [args[0] if args else None, say_text(args[1:])]
            elif event == "roomAdd" and "since" in message:  # resume (opt-in)
                self.run_verb(connection, event, args, count, message_id, message["since"])
                return
            self.run_verb(connection, event, args, count, message_id)
        else:
            text = errors.VERB_NOT_FOUND.format(verb=event)
            self.send_reply(connection, replies.verb_reply(text, None, count, message_id))

    def received(self, connection: Connection, count: int, message_id: Any) -> None:
        """Hook: a message was counted (the websocket remembers it for ``send_file``)."""

    def run_action(self, connection: Connection, params: dict[str, Any], message_id: Any, count: int) -> None:
        """Run an action; its response (counters last) goes to :meth:`send_reply`."""
        result = self.processor.start(connection, params, message_id, count)
        if not isinstance(result, ActionData):  # a Deferred (an ABC: a slower isinstance)
            result.addCallbacks(
                self._action_done,
                self._failed,
                callbackArgs=(connection, count, message_id),
                errbackArgs=("action",),
            )
        else:  # finished without waiting: no Deferred needed
            self._action_done(result, connection, count, message_id)

    def _action_done(self, data: Any, connection: Connection, count: int, message_id: Any) -> None:
        if not data.to_render:
            return
        response = data.response
        if not isinstance(response, dict):
            response = {} if data.error is None else {"error": data.error}
        self.send_reply(connection, replies.stamp_last(response, count, message_id))

    def run_verb(
        self, connection: Connection, verb: str, args: list[Any], count: int, message_id: Any, since: Any = NO_SINCE
    ) -> None:
        """Run a verb of :attr:`allowed_verbs`; its reply goes to :meth:`send_reply`.
        ``since``: roomAdd's resume position, as on the wire (``{}`` or
        ``{"offset", "epoch"}``)."""
        self.verbs.run(connection, verb, args, self.allowed_verbs, since).addCallbacks(
            self._verb_done,
            self._verb_failed,
            callbackArgs=(connection, count, message_id),
            errbackArgs=(connection, verb, count, message_id),
        )

    def _verb_done(self, data: Any, connection: Connection, count: int, message_id: Any) -> None:
        if data is not NO_REPLY:
            self.send_reply(connection, replies.verb_reply(None, data, count, message_id))

    def _verb_failed(self, failure: Failure, connection: Connection, verb: str, count: int, message_id: Any) -> None:
        error = failure.value
        if isinstance(error, VerbError):
            self.send_reply(connection, replies.verb_reply(error.message, error.data, count, message_id))
        elif isinstance(error, UnknownVerb):
            text = errors.VERB_NOT_FOUND.format(verb=verb)
            self.send_reply(connection, replies.verb_reply(text, None, count, message_id))
        else:
            self._failed(failure, verb)
            self.send_reply(connection, replies.verb_reply(errors.INTERNAL_ERROR, None, count, message_id))

    def _failed(self, failure: Failure, what: str) -> None:
        log.failure("{server} {what} failed", failure, server=self.type, what=what)

    def send_reply(self, connection: Connection, reply: dict[str, Any]) -> None:
        """A complete reply to one client (through its transport)."""
        connection.send_message(reply)

    def resolve_file(self, name: Any) -> FileInfo | None:
        """A file a *client* named (never an absolute path), in the public folders."""
        if not isinstance(name, str) or not name:
            return None
        return self.node.files.resolve(name)

    def lookup_file(self, path: Any) -> FileInfo | None:
        """A file *server code* named (``connection.send_file``): a public
        name or an absolute path inside a public folder."""
        return lookup_file(self.node.files, path)

    def file_message(self, path: Any, count: int, message_id: Any) -> dict[str, Any]:
        """``connection.send_file(path)`` as one message (the websocket's form)."""
        return replies.stamp_last(replies.file_reply(self.lookup_file(path), self.max_file_size), count, message_id)


def servers_in(services: Iterable[Any]) -> list[Server]:
    """The :class:`Server` children of a service tree's top level."""
    return [s for s in services if isinstance(s, Server)]
