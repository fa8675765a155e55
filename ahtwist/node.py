"""One ahtwist process: the transport-neutral core every server shares.

A :class:`Node` owns the configuration, the action registry and processor,
the rooms, cache, stats and peers backends, the cluster bus, and the table of
live connections.  Transports receive the node and call into it; nothing in
here knows about HTTP, websockets or TCP.  Actions reach it as ``data.node``.

The node starts with no actions: :func:`ahtwist.tap.build_node` adds the
built-in ones (they read the node, so they are not imported from here).
"""

import time
from collections import Counter
from collections.abc import Callable, Iterable
from inspect import isawaitable
from types import SimpleNamespace
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ahtwist._async import run_now, start
from ahtwist.actions.loader import Plugins, load_plugins
from ahtwist.actions.middleware import ConnectionMiddleware, by_priority, check_middleware
from ahtwist.actions.processor import ActionProcessor
from ahtwist.actions.registry import ActionRegistry
from ahtwist.backends.history import HistoryLimits, MemoryRoomHistory
from ahtwist.backends.interfaces import IBus, ICache, IPeers, IRoomBackend, IRoomHistory, IStats
from ahtwist.backends.memory import (
    MemoryBus,
    MemoryCache,
    MemoryPeers,
    MemoryRoomBackend,
    MemoryStats,
)
from ahtwist.config import Config
from ahtwist.connection import Connection
from ahtwist.counters import SOCKET_REQUESTS, WEB_REQUESTS, WEBSOCKET_REQUESTS
from ahtwist.errors import ActionError, ConfigError, ConnectionRefused
from ahtwist.files import StaticFiles
from ahtwist.limits import Limits
from ahtwist.resume import Since
from ahtwist.rooms import RoomService

log = Logger(namespace="ahtwist.node")


def _log_hook_failure(failure: Failure, name: str | None, hook: str) -> None:
    log.failure("connection middleware {name}.{hook} failed", failure, name=name, hook=hook)

#: the counter names, re-exported (they live in :mod:`ahtwist.counters`)
__all__ = ["SETTABLE_FIELDS", "SOCKET_REQUESTS", "WEBSOCKET_REQUESTS", "WEB_REQUESTS", "Node"]

#: connection fields another node may set through :meth:`Node.apply` (``set``)
SETTABLE_FIELDS = frozenset({"params"})


class Node:
    """The shared core of one process (ActionHero's ``api`` object)."""

    def __init__(
        self,
        config: Config,
        reactor: IReactorTime,
        *,
        cache: ICache | None = None,
        stats: IStats | None = None,
        peers: IPeers | None = None,
        room_backend: IRoomBackend | None = None,
        bus: IBus | None = None,
        history: IRoomHistory | None = None,
    ) -> None:
        general = config.general
        self.config = config
        self.reactor = reactor
        self.id = general.id
        self.started_at = self.now_ms()
        self.registry = ActionRegistry(general.defaultMiddlewarePriority)
        self.cache: ICache = cache or MemoryCache(reactor)
        self.stats: IStats = stats or MemoryStats()
        self.peers: IPeers = peers or MemoryPeers(self.id)
        #: long-lived connections (socket, websocket) by id
        self.connections: dict[str, Connection] = {}
        self.bus: IBus = bus or MemoryBus(reactor)
        self.bus.on_rpc = self._on_rpc
        #: quotas every transport and the core apply (``[limits]``)
        self.limits = Limits(config.limits, reactor)
        self.rooms = RoomService(
            room_backend or MemoryRoomBackend(reactor),
            self.bus,
            connections=self.connections,
            clock=reactor,
            node_id=self.id,
            middleware_priority=general.defaultMiddlewarePriority,
            limits=self.limits,
            history=history or self.memory_history(config, self.bus, reactor),
        )
        #: the public folders, for every transport's file serving
        self.files = StaticFiles(general.paths.public, config.servers.web.directoryFileType)
        self.active_by_type: Counter[str] = Counter()
        #: long-lived connections ever opened, by type (metrics)
        self.opened_by_type: Counter[str] = Counter()
        #: the HTTP sites serving this node (their open and opened HTTP
        #: connections, for the metrics); the web server adds its own
        self.web_sites: list[Any] = []
        #: the cluster service (Redis) when in cluster mode, else None
        self.cluster: Any = None
        self.connection_middleware: list[ConnectionMiddleware] = []
        self._connection_middleware_names: set[str] = set()
        #: reactor latency in ms, sampled by the node service
        self.event_loop_delay = 0.0
        #: callables returning a list of problem texts for the status action
        self.health_checks: list[Callable[[], list[str]]] = []
        self.processor = ActionProcessor(
            self.registry, general, self, in_flight_cap=config.limits.maxActionsInFlight
        )
        #: app objects initializers share with actions, middleware and servers
        #: (``node.app.db``); ActionHero put them on ``api``
        self.app = SimpleNamespace()
        #: True once every initializer started and the listeners accept
        #: (the readiness endpoint answers 503 before)
        self.ready = False

    @staticmethod
    def memory_history(config: Config, bus: IBus, reactor: IReactorTime) -> MemoryRoomHistory:
        """The in-memory room history with the ``[history]`` settings."""
        history = config.history
        limits = HistoryLimits(history.maxMessages, history.maxAge)
        return MemoryRoomHistory(bus, reactor, limits, history.maxTotalBytes)

    def now_ms(self) -> int:
        return int(self.reactor.seconds() * 1000)

    @property
    def stopping(self) -> bool:
        """True once the node drains: new actions answer ``the server is
        shutting down`` (the processor holds the flag it checks per action)."""
        return self.processor.stopping

    @stopping.setter
    def stopping(self, value: bool) -> None:
        self.processor.stopping = value

    # --- plugins -------------------------------------------------------------

    def load_plugins(self, folders: Iterable[str] | None = None) -> Plugins:
        """Import user actions and middleware (``general.paths.actions``)."""
        folders = self.config.general.paths.actions if folders is None else folders
        plugins = load_plugins(folders)
        for folder in plugins.missing_folders:
            log.warn("actions folder {folder} does not exist; skipped", folder=folder)
        self.register(plugins)
        return plugins

    def register(self, plugins: Plugins) -> None:
        for action_middleware in plugins.action_middleware:
            self.registry.add_middleware(action_middleware)
        for connection_middleware in plugins.connection_middleware:
            self.add_connection_middleware(connection_middleware)
        for chat_middleware in plugins.chat_middleware:
            self.rooms.add_middleware(chat_middleware)
        for action in plugins.actions:
            self.registry.add(action)
        self.registry.check_middleware_references()

    def add_connection_middleware(
        self, middleware: ConnectionMiddleware | type[ConnectionMiddleware]
    ) -> None:
        if isinstance(middleware, type):
            middleware = middleware()
        name = check_middleware(middleware)
        if name in self._connection_middleware_names:
            raise ConfigError(f"connection middleware {name!r} is registered twice")
        self._connection_middleware_names.add(name)
        self.connection_middleware = by_priority(
            [*self.connection_middleware, middleware],
            self.config.general.defaultMiddlewarePriority,
        )

    # --- connections ---------------------------------------------------------

    def _run_connection_hooks(self, hook: str, connection: Connection) -> None:
        for middleware in self.connection_middleware:
            fn = getattr(middleware, hook, None)
            if fn is None:
                continue
            try:
                result = fn(connection)
                if result is not None and isawaitable(result):
                    # isawaitable admits any awaitable; ensureDeferred (typed for
                    # coroutines and Deferreds) raises for others, caught below
                    ensureDeferred(result).addErrback(  # type: ignore[arg-type]
                        _log_hook_failure, middleware.name, hook
                    )
            except Exception:
                log.failure(
                    "connection middleware {name}.{hook} failed", name=middleware.name, hook=hook
                )

    def add_connection(self, connection: Connection) -> "Connection | Deferred[Connection]":
        """Register a new connection and run the ``create`` middleware.

        Long-lived connections (socket, websocket, custom servers) are kept
        in :attr:`connections` until destroyed; web connections are not kept.
        Returns the connection once every ``create`` hook has finished: at
        once when none waited, else a Deferred.  A hook raising
        :class:`~ahtwist.errors.ActionError` refuses the connection: the
        refusal is logged, the connection destroyed, and
        :class:`~ahtwist.errors.ConnectionRefused` raised (or the Deferred
        fails with it).  Any other exception in a hook is logged and ignored.
        """
        connection.node = self
        if connection.type != "web":
            self.connections[connection.id] = connection
            self.active_by_type[connection.type] += 1
            self.opened_by_type[connection.type] += 1
            connection.bucket = self.limits.bucket()
        if self.connection_middleware:
            result = run_now(self._create(connection))
            if isinstance(result, Deferred):
                return result
        return connection

    async def _create(self, connection: Connection) -> Connection:
        for middleware in self.connection_middleware:
            create = middleware.create
            if create is None:
                continue
            try:
                result = create(connection)
                if result is not None and isawaitable(result):
                    await result
            except ActionError as e:
                log.info(
                    "connection refused by {middleware}: {type} from {ip}: {error}",
                    middleware=middleware.name,
                    type=connection.type,
                    ip=connection.remote_ip,
                    error=str(e),
                )
                self.destroy_connection(connection).addErrback(
                    lambda f: log.failure("destroying refused connection {id}", f, id=connection.id)
                )
                raise ConnectionRefused(str(middleware.name), e.error) from None
            except Exception:
                log.failure(
                    "connection middleware {name}.{hook} failed", name=middleware.name, hook="create"
                )
        return connection

    def destroy_connection(self, connection: Connection) -> Deferred[None]:
        """Run ``destroy`` middleware, leave every room, forget the connection;
        its actions still running are cancelled (nobody would get the reply)."""
        if self._destroyed_at_once(connection):
            return succeed(None)
        return start(self._destroy_connection(connection))

    def discard_connection(self, connection: Connection) -> None:
        """:meth:`destroy_connection` for a caller that does not wait for it
        (every web request's end): no Deferred in the common case."""
        if not self._destroyed_at_once(connection):
            start(self._destroy_connection(connection))

    def _destroyed_at_once(self, connection: Connection) -> bool:
        """Cancel the connection's running actions; True when it was also
        forgotten at once (no rooms and no middleware: nothing can wait)."""
        if connection.waiting:
            for waiting in list(connection.waiting):
                waiting.cancel()
        if connection.rooms or self.connection_middleware:
            return False
        if not connection.destroyed:
            connection.destroyed = True
            if self.connections.pop(connection.id, None) is not None:
                self.active_by_type[connection.type] -= 1
        return True

    async def _destroy_connection(self, connection: Connection) -> None:
        if connection.destroyed:
            return
        connection.destroyed = True
        if self.connection_middleware:
            self._run_connection_hooks("destroy", connection)
        if connection.rooms:
            await self.rooms.leave_all(connection)
        if self.connections.pop(connection.id, None) is not None:
            self.active_by_type[connection.type] -= 1

    def apply(self, connection_id: str, method: str, *args: Any) -> Deferred[Any]:
        """Run an operation on a connection wherever it is held
        (docs/protocol-socket.md, 'Operations on remote connections'): here,
        or on the node holding it, which answers with the result or the error;
        no answer within ``general.rpcTimeout`` -> ``RPC Timeout``.

        ``method``: ``add_member`` (room[, since as on the wire]),
        ``remove_member`` (room), ``send_message``
        (message), ``destroy`` (), ``set`` (field, value; fields in
        :data:`SETTABLE_FIELDS`).
        """
        connection = self.connections.get(connection_id)
        if connection is None:
            return self.bus.call_remote(connection_id, method, list(args))
        try:
            if method == "add_member":
                since = Since.parse(args[1]) if len(args) > 1 else None
                return self.rooms.add_member(connection_id, args[0], since)
            if method == "remove_member":
                return self.rooms.remove_member(connection_id, args[0])
            if method == "send_message":
                connection.send_message(args[0])
            elif method == "destroy":
                connection.destroy()
            elif method == "set" and len(args) == 2 and args[0] in SETTABLE_FIELDS:
                setattr(connection, args[0], args[1])
            else:
                raise ValueError(f"unknown connection operation {method!r}")
        except Exception:
            return fail()
        return succeed(True)

    def _on_rpc(self, connection_id: str, method: str, args: list[Any]) -> Deferred[Any] | None:
        """Another node asks for an operation on a connection (the bus's
        ``on_rpc``): None when the connection is not held here, else its result."""
        if connection_id not in self.connections:
            return None
        return self.apply(connection_id, method, *args)

    # --- status ----------------------------------------------------------------

    def health_problems(self) -> list[str]:
        """Problems reported by backends (e.g. ``Redis unavailable``)."""
        return [problem for check in self.health_checks for problem in check()]

    def uptime_ms(self) -> int:
        return self.now_ms() - self.started_at

    def sample_event_loop_delay(self) -> None:
        """Measure how long a zero-delay call waits for the reactor."""
        start = time.perf_counter()

        def done() -> None:
            self.event_loop_delay = round((time.perf_counter() - start) * 1000, 3)

        self.reactor.callLater(0, done)

    def start(self) -> Deferred[None]:
        """Create the starting chat rooms (an existing room is fine)."""
        return start(self._start())

    async def _start(self) -> None:
        for room in self.config.general.startingChatRooms:
            await self.rooms.backend.add_room(room)
