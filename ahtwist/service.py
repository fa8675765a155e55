"""Services: the node's lifecycle, the web and socket listeners, under one MultiService.

``AhtwistService`` is what ``twistd ahtwist`` runs.  Starting it creates the
starting rooms and opens every listener; stopping it (SIGTERM) marks the node
as stopping first -- new actions answer ``the server is shutting down`` --
then each server stops accepting, lets in-flight work finish for up to
``servers.socket.pendingShutdownWaitLimit`` ms and closes what is left.
"""

from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ahtwist.logs import install_observer
from ahtwist.node import Node
from ahtwist.servers.base import Listener, Server, listen_on, wait_until
from ahtwist.socket import SocketServer
from ahtwist.web.api import WebServer
from ahtwist.web.site import WebSite

log = Logger(namespace="ahtwist.service")


__all__ = ["AhtwistService", "Listener", "SocketService", "WebService", "listen_on", "wait_until"]


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
        # Klein is imported here, once twistd has chosen the reactor; the
        # document is built once, now that every action is registered.
        from ahtwist.apidocs import for_node

        self.server.apidocs = for_node(node)
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
