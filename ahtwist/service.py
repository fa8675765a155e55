"""Services: the node's lifecycle, the web and socket listeners, under one MultiService.

``AhtwistService`` is what ``twistd ahtwist`` runs.  Starting it creates the
starting rooms and opens every listener; stopping it (SIGTERM) marks the node
as stopping first -- new actions answer ``the server is shutting down`` --
then each server stops accepting, lets in-flight work finish for up to
``servers.socket.pendingShutdownWaitLimit`` ms and closes what is left.
"""

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ahtwist.logs import install_observer
from ahtwist.node import Node
from ahtwist.socket import SocketFactory
from ahtwist.web.api import WebServer
from ahtwist.web.site import WebSite
from ahtwist.workers import server_endpoint

log = Logger(namespace="ahtwist.service")


class Listener(StreamServerEndpointService):
    """A listener that logs the address it really got (port 0 included) and
    stops start-up with one clear line when it cannot listen."""

    def __init__(self, kind: str, description: str, endpoint: Any, factory: Any) -> None:
        super().__init__(endpoint, factory)
        self.kind = kind
        self.description = description
        self._raiseSynchronously = True

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except Exception as e:
            log.error("cannot listen on {description}: {e}", description=self.description, e=e)
            raise SystemExit(f"ahtwist: cannot listen on {self.description}: {e}") from None
        # StreamServerEndpointService keeps the listening Deferred privately
        waiting = getattr(self, "_waitingForPort", None)
        if waiting is not None:
            waiting.addCallback(self._listening)

    def _listening(self, port: Any) -> Any:
        address = port.getHost()
        where = f"{address.host}:{address.port}" if hasattr(address, "port") else str(address)
        log.info(
            "{kind} server listening on {where} ({description})",
            kind=self.kind,
            where=where,
            description=self.description,
        )
        return port


def listen_on(parent: MultiService, reactor: Any, kind: str, description: str, factory: Any) -> None:
    """Add a ``kind`` ("web", "socket") listener for a Twisted endpoint string."""
    Listener(kind, description, server_endpoint(reactor, kind, description), factory).setServiceParent(parent)


def wait_until(reactor: Any, done: Any, timeout: float, step: float = 0.05) -> Deferred[bool]:
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


class WebService(MultiService):
    """The web listeners of one node (one WebServer shared by all)."""

    def __init__(self, node: Node, reactor: Any, endpoints: tuple[str, ...]) -> None:
        super().__init__()
        self.node = node
        self.reactor = reactor
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
        for description in endpoints:
            listen_on(self, reactor, "web", description, self.site)

    def stopService(self) -> Deferred[Any]:
        stopped = super().stopService() or succeed(None)
        limit = self.node.config.servers.socket.pendingShutdownWaitLimit / 1000

        def drain(_: Any) -> Deferred[Any]:
            closing = [
                self.site.drain(
                    lambda: wait_until(self.reactor, lambda: not self.site.channels, limit)
                )
            ]
            if self.websockets is not None:
                closing.append(
                    self.websockets.stop(
                        self.node.config.servers.websocket.destroyClientsOnShutdown,
                        lambda done: wait_until(self.reactor, done, limit),
                    )
                )
            return DeferredList(closing, consumeErrors=True)

        return stopped.addCallback(drain)


class SocketService(MultiService):
    """The TCP/TLS socket listeners of one node (one factory shared by all).

    Stopping closes the listeners, then drains the connections
    (:meth:`~ahtwist.socket.SocketFactory.drain`): goodbye to idle clients,
    pending actions get up to ``servers.socket.pendingShutdownWaitLimit`` ms.
    """

    def __init__(self, node: Node, reactor: Any, endpoints: tuple[str, ...]) -> None:
        super().__init__()
        self.node = node
        self.reactor = reactor
        self.factory = SocketFactory(node, reactor)
        for description in endpoints:
            listen_on(self, reactor, "socket", description, self.factory)

    def stopService(self) -> Deferred[Any]:
        stopped = super().stopService() or succeed(None)
        limit = self.node.config.servers.socket.pendingShutdownWaitLimit / 1000
        return stopped.addCallback(lambda _: self.factory.drain(limit))


class AhtwistService(MultiService):
    """Everything one ``twistd ahtwist`` process runs."""

    def __init__(self, node: Node, reactor: Any, cluster: Any = None) -> None:
        super().__init__()
        self.node = node
        self.reactor = reactor
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

    def startService(self) -> None:
        for warning in self.node.config.warnings:
            log.warn("config: {warning}", warning=warning)
        if self.cluster is not None:
            self.cluster.startService()
        self.node.start().addErrback(lambda f: log.failure("starting the node", f))
        self._sampler.start(1.0, now=False)
        super().startService()

    def stopService(self) -> Deferred[Any]:
        log.info("stopping: draining connections")
        self.node.stopping = True
        if self._sampler.running:
            self._sampler.stop()
        d = DeferredList([super().stopService() or succeed(None)])
        if self.cluster is not None:
            cluster = self.cluster
            d.addCallback(lambda _: DeferredList([cluster.stopService()]))
        return d.addCallback(lambda _: log.info("stopped"))
