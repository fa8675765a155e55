"""Services: the node's lifecycle, the web and socket listeners, under one MultiService.

``AhtwistService`` is what ``twistd ahtwist`` runs.  Starting it creates the
starting rooms and opens every listener; stopping it (SIGTERM) marks the node
as stopping first -- new actions answer ``the server is shutting down`` --
then each server stops accepting, lets in-flight work finish for up to
``servers.socket.pendingShutdownWaitLimit`` ms and closes what is left.
"""

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ahtwist.initializers import InitializerFailed, Initializers
from ahtwist.inventory import inventory, log_inventory
from ahtwist.logs import install_observer
from ahtwist.node import Node
from ahtwist.servers.base import Listener, Server, listen_on, wait_until
from ahtwist.socket import SocketServer
from ahtwist.web.api import WebServer
from ahtwist.web.site import WebSite

log = Logger(namespace="ahtwist.service")


__all__ = ["AhtwistService", "Listener", "SocketService", "WebService", "listen_on", "wait_until"]


class ListenerGate:
    """Keeps bound listeners from accepting until released: connections wait
    in the kernel's backlog meanwhile (so start-up can finish first without
    giving up binding privileged ports before privileges are dropped)."""

    def __init__(self) -> None:
        self.held: list[Any] = []
        self.open = False

    def hold(self, top: MultiService) -> None:
        for service in _walk(top):
            waiting = getattr(service, "_waitingForPort", None)
            if isinstance(service, StreamServerEndpointService) and waiting is not None:
                waiting.addCallback(self._hold_port)

    def _hold_port(self, port: Any) -> Any:
        if not self.open and hasattr(port, "stopReading"):
            port.stopReading()
            self.held.append(port)
        return port

    def release(self) -> None:
        self.open = True
        held, self.held = self.held, []
        for port in held:
            if getattr(port, "connected", True) and not getattr(port, "disconnected", False):
                port.startReading()


def _walk(service: Any) -> list[Any]:
    found = [service]
    if isinstance(service, MultiService):
        for child in service:
            found.extend(_walk(child))
    return found


class WebService(Server):
    """The web server of one node: HTTP (one :class:`WebServer` shared by
    every listener) with the websocket server mounted on it."""

    type = "web"
    can_chat = False
    sends_welcome = False
    logs_connections = False
    allowed_verbs = frozenset()

    def __init__(self, node: Node, reactor: Any, endpoints: tuple[str, ...]) -> None:
        super().__init__(node, reactor, endpoints)
        self.server = WebServer(node)
        self.site = WebSite(
            self.server, timeout=node.config.servers.web.idleTimeout, reactor=reactor
        )
        #: the websocket server mounted on every listener (None when disabled)
        self.websockets: Any = None
        if node.config.servers.websocket.enabled:
            # Autobahn is imported here, once twistd has chosen the reactor.
            from ahtwist.websocket import websocket_resource

            self.websockets, self.server.websocket_resource = websocket_resource(node, reactor)
        self._add_listeners()

    def build_factory(self) -> WebSite:
        return self.site

    def drain(self, limit: float) -> Deferred[Any]:
        """Finish in-flight requests, close the websockets (1001, or 1000
        after destroying them with ``destroyClientsOnShutdown``)."""
        closing = [
            self.site.drain(lambda: wait_until(self.reactor, lambda: not self.site.channels, limit))
        ]
        if self.websockets is not None:
            closing.append(
                self.websockets.stop(
                    self.node.config.servers.websocket.destroyClientsOnShutdown,
                    lambda done: wait_until(self.reactor, done, limit),
                )
            )
        return DeferredList(closing, consumeErrors=True)


#: the socket server is its own service (:class:`ahtwist.socket.SocketServer`)
SocketService = SocketServer


class AhtwistService(MultiService):
    """Everything one ``twistd ahtwist`` process runs.

    Start-up: the listeners bind (privileged) but do not accept until every
    initializer started (:mod:`ahtwist.initializers`); then they accept and
    the node is ready.  Stop: listeners close, connections drain, then the
    initializers stop, then the cluster service.
    """

    def __init__(
        self, node: Node, reactor: Any, cluster: Any = None, initializers: Initializers | None = None
    ) -> None:
        super().__init__()
        self.node = node
        self.reactor = reactor
        self.initializers = initializers if initializers is not None else Initializers(node)
        #: called after the one-line report when an initializer fails to start
        #: (twistd runs: stop the reactor, exit non-zero)
        self.on_startup_failure: Any = None
        self._gate = ListenerGate()
        #: the cluster service (Redis) or None; started before the listeners
        #: and stopped after them, so connections leave their rooms first
        self.cluster = cluster
        self._sampler = LoopingCall(node.sample_event_loop_delay)
        self._sampler.clock = reactor
        #: set by makeService for twistd runs (see ahtwist.logs)
        self.log_observer: Any = None

    def setServiceParent(self, parent: Any) -> None:
        # twistd logs through the application's ILogObserver component when
        # there is one (its documented hook for custom logging).
        install_observer(parent, self.log_observer)
        super().setServiceParent(parent)

    def privilegedStartService(self) -> None:
        super().privilegedStartService()  # binds the listeners...
        self._gate.hold(self)  # ...which accept once the initializers started

    def startService(self) -> None:
        Service.startService(self)  # the children start after the initializers
        for warning in self.node.config.warnings:
            log.warn("config: {warning}", warning=warning)
        log_inventory(inventory(self.node, self.initializers, self.server_names(), self.mounts()))
        if self.cluster is not None:
            self.cluster.startService()
        self.node.start().addErrback(lambda f: log.failure("starting the node", f))
        self._sampler.start(1.0, now=False)
        self.initializers.start().addCallbacks(self._open, self._start_failed)

    def _open(self, _: Any) -> None:
        if not self.running:
            return  # stopped while the initializers started
        for service in self:
            service.startService()
        self._gate.release()
        self.node.ready = True
        log.info("ready: initializers started, listeners accept connections")

    def _start_failed(self, failure: Any) -> None:
        error = failure.value
        message = str(error) if isinstance(error, InitializerFailed) else f"start-up failed: {error!r}"
        log.critical("ahtwist: {message}", message=message)
        if self.on_startup_failure is not None:
            self.on_startup_failure()

    def server_names(self) -> list[str]:
        """``kind description`` of every listener, for the start-up list."""
        names = []
        for child in self:
            for listener in child if isinstance(child, MultiService) else ():
                if isinstance(listener, Listener):
                    names.append(f"{listener.kind} {listener.description}")
            if getattr(child, "websockets", None) is not None:
                names.append(f"websocket {self.node.config.servers.websocket.path}")
        return names

    def mounts(self) -> Any:
        for child in self:
            server = getattr(child, "server", None)
            if server is not None and hasattr(server, "mounts"):
                return server.mounts
        return None

    def stopService(self) -> Deferred[Any]:
        log.info("stopping: draining connections")
        self.node.stopping = True
        self.node.ready = False
        if self._sampler.running:
            self._sampler.stop()
        d = DeferredList([super().stopService() or succeed(None)])
        d.addCallback(lambda _: self.initializers.stop())
        if self.cluster is not None:
            cluster = self.cluster
            d.addCallback(lambda _: DeferredList([cluster.stopService()]))
        return d.addCallback(lambda _: log.info("stopped"))
