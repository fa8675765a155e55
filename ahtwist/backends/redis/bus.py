"""The cluster bus over Redis pub/sub: room events and RPCs
(docs/protocol-socket.md, 'Operations on remote connections')."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ahtwist.backends.interfaces import IBus
from ahtwist.backends.redis.link import RedisLink
from ahtwist.encoding import dumps
from ahtwist.errors import INTERNAL_ERROR, RPC_TIMEOUT, RoomError
from ahtwist.ids import new_id

log = Logger(namespace="ahtwist.redis")


@implementer(IBus)
class RedisBus:
    """Room events and RPCs over the link's pub/sub channel.

    Every message carries the ``serverToken`` (others are ignored) and this
    node's id.  While Redis is down events are delivered to this node only
    and RPCs fail at once with ``RPC Timeout``.
    """

    def __init__(
        self, link: RedisLink, reactor: Any, *, node_id: str, server_token: str, rpc_timeout_ms: int
    ) -> None:
        self.link = link
        self.reactor = reactor
        self.node_id = node_id
        self.server_token = server_token
        self.rpc_timeout = rpc_timeout_ms / 1000
        self.on_rpc: Any = None
        self._handlers: list[Callable[[dict[str, Any]], Any]] = []
        #: request id -> (Deferred, timeout call) of RPCs waiting for an answer
        self.pending_rpcs: dict[str, tuple[Deferred[Any], Any]] = {}
        self.published = 0
        self.local_only = 0
        self.received = 0
        self.rpc_timeouts = 0
        #: where room events received from Redis go: straight to the handlers,
        #: or through a filter that dedupes and fills gaps (RedisRoomHistory)
        self.intake: Callable[[dict[str, Any]], Any] = self.deliver
        link.on_down.append(self._fail_pending_rpcs)

    def subscribe(self, handler: Callable[[dict[str, Any]], Any]) -> None:
        self._handlers.append(handler)

    # --- events -----------------------------------------------------------------------

    def _message(self, kind: str, **fields: Any) -> bytes:
        return dumps({"serverToken": self.server_token, "serverId": self.node_id, "kind": kind, **fields})

    def publish(self, event: dict[str, Any]) -> Deferred[None]:
        if self.link.up:
            self.published += 1
            d = self.link.execute("PUBLISH", self.link.channel, self._message("event", event=event))
            return d.addCallbacks(lambda _: None, self._publish_failed, errbackArgs=(event,))
        self.local_only += 1
        self.reactor.callLater(0, self._event_received, event)
        return succeed(None)

    def deliver_here(self, event: dict[str, Any]) -> None:
        """Deliver a room event to this node only (on the next reactor turn)."""
        self.reactor.callLater(0, self._event_received, event)

    def _publish_failed(self, failure: Failure, event: dict[str, Any]) -> None:
        log.warn("publishing a room event failed ({reason}); delivered locally", reason=failure.getErrorMessage())
        self.local_only += 1
        self.reactor.callLater(0, self._event_received, event)

    def _event_received(self, event: dict[str, Any]) -> None:
        for handler in self._handlers:
            handler(event)

    def deliver(self, event: dict[str, Any]) -> None:
        """Hand a room event to this node's handlers now."""
        self._event_received(event)

    def message_received(self, message: dict[str, Any]) -> None:
        """A cluster message of ours (token already checked)."""
        kind = message.get("kind")
        if kind == "event":
            self.received += 1
            self.intake(message["event"])
        elif kind == "rpc":
            if message.get("serverId") != self.node_id:
                self._rpc_request(message)
        elif kind == "rpcResult":
            if message.get("to") == self.node_id:
                self._rpc_answer(message)

    # --- RPC ---------------------------------------------------------------------------------

    def call_remote(self, connection_id: str, method: str, args: Any) -> Deferred[Any]:
        if not self.link.up:
            return fail(RoomError(RPC_TIMEOUT))
        request_id = new_id()
        def cancel(_: Deferred[Any]) -> None:
            self._forget_rpc(request_id)

        result: Deferred[Any] = Deferred(cancel)
        timer = self.reactor.callLater(self.rpc_timeout, self._rpc_timed_out, request_id)
        self.pending_rpcs[request_id] = (result, timer)
        message = self._message(
            "rpc", requestId=request_id, connectionId=connection_id, method=method, args=list(args)
        )
        sent = self.link.execute("PUBLISH", self.link.channel, message)
        sent.addErrback(lambda _: self._rpc_timed_out(request_id))
        return result

    def _forget_rpc(self, request_id: str) -> tuple[Deferred[Any], Any] | None:
        pending = self.pending_rpcs.pop(request_id, None)
        if pending is not None and pending[1].active():
            pending[1].cancel()
        return pending

    def _rpc_timed_out(self, request_id: str) -> None:
        pending = self._forget_rpc(request_id)
        if pending is not None:
            self.rpc_timeouts += 1
            pending[0].errback(RoomError(RPC_TIMEOUT))

    def _fail_pending_rpcs(self) -> None:
        """Redis went down: nobody can answer, fail every waiting RPC now."""
        for request_id in list(self.pending_rpcs):
            self._rpc_timed_out(request_id)

    def _rpc_answer(self, message: dict[str, Any]) -> None:
        pending = self._forget_rpc(message.get("requestId", ""))
        if pending is None:
            return
        if message.get("ok"):
            pending[0].callback(message.get("result"))
        else:
            pending[0].errback(RoomError(message.get("error") or INTERNAL_ERROR))

    def _rpc_request(self, message: dict[str, Any]) -> None:
        if self.on_rpc is None:
            return
        try:
            running = self.on_rpc(message.get("connectionId"), message.get("method"), message.get("args") or [])
        except Exception:
            running = fail()
        if running is None:  # not held here
            return
        request_id = message.get("requestId")
        to = message.get("serverId")

        def answer(result: Any) -> None:
            self._answer(to, request_id, ok=True, result=result)

        def refused(failure: Failure) -> None:
            if isinstance(failure.value, RoomError):
                error = failure.value.message
            else:
                log.failure("remote connection call {method} failed", failure, method=message.get("method"))
                error = INTERNAL_ERROR
            self._answer(to, request_id, ok=False, error=error)

        defer.maybeDeferred(lambda: running).addCallbacks(answer, refused)

    def _answer(self, to: Any, request_id: Any, **fields: Any) -> None:
        reply = self._message("rpcResult", to=to, requestId=request_id, **fields)
        self.link.execute("PUBLISH", self.link.channel, reply).addErrback(
            lambda f: log.warn("answering an RPC failed: {reason}", reason=f.getErrorMessage())
        )

    def stop(self) -> None:
        self._fail_pending_rpcs()
