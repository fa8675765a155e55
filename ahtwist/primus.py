"""The Primus-compatible websocket endpoint (``servers.websocket.primusPath``).

ActionHero 17-19 browser clients speak Primus (its ``websockets``
transformer and ``JSON`` parser) at ``/primus``.  Its messages are the
websocket server's own JSON frames (docs/protocol-websocket.md); Primus adds
only a few JSON *string* frames of its own, which this module handles, so the
endpoint is the same :class:`~ahtwist.websocket.WebSocketServer` (same
connections, rooms, verbs, actions, limits and drain) with another protocol
class:

* heartbeats: Primus 7+ clients expect the server to send
  ``"primus::ping::<ms>"`` every ``primusPingInterval`` seconds (they answer
  ``"primus::pong::<ms>"`` and reconnect when no ping comes within 1.5 ping
  intervals); a client that sent nothing since the previous ping is dropped.
  Primus 6 clients ping themselves: their ``"primus::ping::<ms>"`` is answered
  with ``"primus::pong::<ms>"`` and the server stops pinging them;
* ``"primus::id::"`` is answered with ``"primus::id::<connection id>"``;
* a server-side close (destroy, ``quit``, ``destroyClientsOnShutdown``) sends
  ``"primus::server::close"`` first, so the client does not reconnect; a stop
  that lets clients reconnect (close 1001) does not.
"""

from typing import Any

from twisted.logger import Logger

from ahtwist.encoding import dumps, loads
from ahtwist.websocket import (
    CLOSE_NORMAL,
    WebSocketConnectionProtocol,
    WebSocketFactory,
    WebSocketServer,
    WebSocketUpgradeResource,
    send_text,
)

log = Logger(namespace="ahtwist.websocket")

#: every Primus protocol frame is a JSON string starting with this
_PREFIX = b'"primus::'
SERVER_CLOSE = dumps("primus::server::close")


class PrimusConnectionProtocol(WebSocketConnectionProtocol):
    """One Primus client: the websocket protocol plus Primus' string frames."""

    factory: "PrimusFactory"
    #: a pending server ping (``IDelayedCall``), while pinging
    _heartbeat: Any = None
    #: anything received since the latest server ping
    alive = True
    #: a Primus 6 client, which sends the pings itself
    client_pings = False

    def onOpen(self) -> None:
        super().onOpen()
        self._schedule_ping()

    def _schedule_ping(self) -> None:
        interval = self.factory.ping_interval
        if interval > 0 and not self.client_pings:
            self._heartbeat = self.factory.reactor.callLater(interval, self._ping)

    def _ping(self) -> None:
        self._heartbeat = None
        if self.state != WebSocketConnectionProtocol.STATE_OPEN:
            return
        if not self.alive:
            connection = self.connection
            log.info(
                "dropping primus client {id}: no answer to the previous ping",
                id=connection.id if connection is not None else "?",
            )
            self.dropConnection(abort=True)
            return
        self.alive = False
        send_text(self, dumps(f"primus::ping::{int(self.factory.reactor.seconds() * 1000)}"))
        self._schedule_ping()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.alive = True
        if not isBinary and payload.startswith(_PREFIX) and self._primus_frame(payload):
            return
        super().onMessage(payload, isBinary)

    def _primus_frame(self, payload: bytes) -> bool:
        """A Primus protocol string; False when it is not one Primus knows
        (then it is an ordinary message, as in Primus)."""
        try:
            text = loads(payload)
        except ValueError:
            return False
        if not isinstance(text, str):
            return False
        kind, _, value = text[len("primus::"):].partition("::")
        if kind == "ping":
            # a Primus 6 client: it keeps the connection alive itself
            self.client_pings = True
            if self._heartbeat is not None and self._heartbeat.active():
                self._heartbeat.cancel()
            self._heartbeat = None
            send_text(self, dumps(f"primus::pong::{value}"))
        elif kind == "pong":
            pass  # answers our ping: alive is already set
        elif kind == "id":
            connection = self.connection
            send_text(self, dumps(f"primus::id::{connection.id if connection is not None else ''}"))
        else:
            return False
        return True

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self._heartbeat is not None and self._heartbeat.active():
            self._heartbeat.cancel()
        self._heartbeat = None
        super().onClose(wasClean, code, reason)

    def close_with(self, code: int, reason: str | None = None) -> None:
        """A close that means "do not come back" (1000) tells Primus so first."""
        if code == CLOSE_NORMAL and self.state == WebSocketConnectionProtocol.STATE_OPEN:
            send_text(self, SERVER_CLOSE)
        super().close_with(code, reason)


class PrimusFactory(WebSocketFactory):
    """The websocket factory with the Primus protocol and its ping interval."""

    protocol = PrimusConnectionProtocol

    def __init__(self, server: WebSocketServer, reactor: Any) -> None:
        super().__init__(server, reactor)
        #: seconds between ``primus::ping`` frames (0: none)
        self.ping_interval = max(server.config.primusPingInterval, 0)


def primus_resource(server: WebSocketServer, reactor: Any) -> WebSocketUpgradeResource:
    """The resource the web server mounts at ``servers.websocket.primusPath``."""
    return WebSocketUpgradeResource(PrimusFactory(server, reactor))
