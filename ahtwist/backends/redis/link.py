"""This node's link to Redis (cluster mode): two connections, reconnected with back-off,
and the one rule every provider follows while it is down.

Imports txredisapi (and so the global reactor): only imported within
:mod:`ahtwist.backends.redis`, itself imported once twistd has chosen the
reactor.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from inspect import isawaitable
from typing import Any, TypeVar

import attrs
import txredisapi
from twisted.internet import defer
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ahtwist.backends.redis_url import RedisTarget

log = Logger(namespace="ahtwist.redis")

T = TypeVar("T")

#: seconds a TCP (and TLS) connect may take
CONNECT_TIMEOUT = 5.0
#: seconds a connection with commands waiting may go without receiving any
#: reply before it counts as dead and is dropped (redis.commandTimeout;
#: RedisLink's docstring)
COMMAND_TIMEOUT = 5.0
#: first reconnection delay (s); doubled per failed attempt up to redis.reconnectMaxDelay
FIRST_RETRY_DELAY = 0.5
#: seconds a stop waits for the connections to close before aborting them
STOP_TIMEOUT = 1.0
#: seconds a ping Redis has answered may take to arrive on the subscriber
#: connection, with nothing else arriving there meanwhile, before the
#: subscription counts as stalled (redis.subscriptionTimeout); the link pings
#: itself three times as often
SUBSCRIPTION_TIMEOUT = 3.0


class RedisUnavailable(Exception):
    """Redis is down (or the link is stopped): the command was not sent."""


class _ConnectFailed(Exception):
    """A connection attempt failed; the text is the reason for the log."""


class _ProtocolFactory(Factory):
    """Builds txredisapi protocols for one attempt of the link.

    txredisapi's protocol calls ``stopTrying``/``connectionError`` on its
    factory when AUTH or SELECT fails; the link retries anyway (a password
    fixed on the server, or a database made available, should heal the
    cluster), so those only record the reason.
    """

    noisy = False
    isLazy = True

    def __init__(self, link: RedisLink, protocol: type, sentinel: bool = False) -> None:
        self.link = link
        self.protocol = protocol
        self.sentinel = sentinel
        self.error: str | None = None

    def buildProtocol(self, addr: Any) -> Any:
        target = self.link.target
        assert self.protocol is not None  # set by __init__
        if self.sentinel:  # a Sentinel: its own password, no database
            auth: dict[str, Any] = {"password": target.sentinel_password, "dbid": None, "username": None}
        else:
            auth = {"password": target.password, "dbid": target.db, "username": target.username}
        # A Sentinel's answer has a deadline per command.  The link's own
        # connections do not: a reply that is late because Redis, or this
        # process, is busy working through a backlog is not a dead connection
        # (dropping it would send the backlog again); the link's watch drops a
        # connection that receives nothing at all (_LinkWatch).
        timeout = COMMAND_TIMEOUT if self.sentinel else None
        proto = self.protocol("utf-8", replyTimeout=timeout, convertNumbers=False, **auth)
        proto.factory = self
        return proto

    def stopTrying(self) -> None:
        pass

    def connectionError(self, why: str) -> None:
        self.error = why.removeprefix("Redis error: ")


class _LinkProtocolMixin:
    """What both connections of the link add to txredisapi's protocols:
    ``ready`` fires once AUTH and SELECT succeeded, or fails with the reason
    the connection was lost before; a loss after that tells the link."""

    factory: _ProtocolFactory

    def _init_link(self) -> None:
        self.ready: Deferred[Any] = Deferred()
        self.whenConnected().addCallback(self._became_ready)  # type: ignore[attr-defined]

    def _became_ready(self, _: Any) -> None:
        if not self.ready.called:
            self.ready.callback(self)

    def _lost(self, why: Failure) -> None:
        # AUTH/SELECT refused: the server's answer is the reason; a transport
        # error (a TLS handshake that failed, ...) says more than the
        # "Lost connection" the pending AUTH got from it.
        reason = why.getErrorMessage()
        if self.factory.error and not self.factory.error.endswith("Lost connection"):
            reason = self.factory.error
        if not self.ready.called:
            self.ready.errback(_ConnectFailed(reason))
        else:
            self.factory.link._connection_lost(self, reason)


class _CommandProtocol(txredisapi.RedisProtocol, _LinkProtocolMixin):
    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._init_link()
        #: reactor time bytes last arrived on this connection (None: never)
        self.received_at: float | None = None

    def dataReceived(self, data: bytes) -> None:
        self.received_at = self.factory.link.reactor.seconds()
        super().dataReceived(data)

    def waiting(self) -> int:
        """Commands sent and not answered yet (txredisapi's reply queue)."""
        return len(self.replyQueue.waiting)

    def connectionLost(self, why: Failure) -> None:
        super().connectionLost(why)
        self._lost(why)


class _SubscriberProtocol(txredisapi.SubscriberProtocol, _LinkProtocolMixin):
    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._init_link()

    def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
        self.factory.link._message_received(channel, message)

    def connectionLost(self, why: Failure) -> None:
        super().connectionLost(why)
        self._lost(why)


def _client_endpoint(reactor: Any, target: RedisTarget) -> Any:
    """A TCP, or TLS, client endpoint for ``target``."""
    # attemptDelay: the wait between addresses of one name; its default (0.3 s)
    # also delays reporting a refused connection, i.e. every retry
    endpoint = HostnameEndpoint(
        reactor, target.host, target.port, timeout=CONNECT_TIMEOUT, attemptDelay=0.02
    )
    if not target.tls:
        return endpoint
    from twisted.internet import ssl

    client_cert = None
    if target.certfile:
        with open(target.certfile, "rb") as c, open(target.keyfile or "", "rb") as k:
            client_cert = ssl.PrivateCertificate.loadPEM(c.read() + b"\n" + k.read())
    creator: IOpenSSLClientConnectionCreator
    if not target.verify:
        creator = _UnverifiedTLS(target.host, client_cert)
    else:
        trust: Any = None
        if target.ca_certs:
            trust = ssl.trustRootFromCertificates(_read_certificates(target.ca_certs))
        creator = ssl.optionsForClientTLS(
            target.host, trustRoot=trust, clientCertificate=client_cert
        )
    return wrapClientTLS(creator, endpoint)


def _read_certificates(path: str) -> list[Any]:
    """Every PEM certificate of a CA bundle file."""
    from twisted.internet import ssl

    data = open(path, "rb").read()
    marker = b"-----END CERTIFICATE-----"
    blocks = [block + marker for block in data.split(marker) if b"-----BEGIN" in block]
    if not blocks:
        raise ValueError(f"no certificate in {path}")
    return [ssl.Certificate.loadPEM(block) for block in blocks]


@implementer(IOpenSSLClientConnectionCreator)
class _UnverifiedTLS:
    """TLS without certificate checks (``?ssl_cert_reqs=none``)."""

    def __init__(self, hostname: str, client_cert: Any) -> None:
        from twisted.internet import ssl

        options: dict[str, Any] = {"verify": False}
        if client_cert is not None:
            options.update(privateKey=client_cert.privateKey.original,
                           certificate=client_cert.original)
        self._context = ssl.CertificateOptions(**options).getContext()
        self._hostname = hostname.encode("idna") if not _is_ip(hostname) else None

    def clientConnectionForTLS(self, tls_protocol: Any) -> Any:
        from OpenSSL import SSL

        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tls_protocol)
        if self._hostname:
            connection.set_tlsext_host_name(self._hostname)
        return connection


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _mark_tls_creator() -> None:
    from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
    from zope.interface import classImplements

    classImplements(_UnverifiedTLS, IOpenSSLClientConnectionCreator)


_mark_tls_creator()


class _LinkWatch:
    """Watches both connections of the link while it is up (RedisLink's
    docstring): every third of ``subscription_timeout`` it checks them and
    publishes a ping on the link's own channel.

    * The command connection is dead when commands wait for replies and
      nothing at all arrived on it for ``command_timeout`` seconds.  A
      connection still receiving replies is alive, however long its backlog.
    * The subscription is stalled when a ping that Redis answered (so it was
      published) was followed by nothing at all on the subscriber connection
      for ``subscription_timeout`` seconds.  A ping waiting behind a backlog
      of commands proves nothing, so it is not counted until it is answered,
      and a new one is not sent before.

    A reactor that was busy runs its timers before reading what arrived
    meanwhile, so each verdict is confirmed after one more pass over the
    sockets before the connections are dropped.
    """

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self._pinger: Any = None
        #: reactor time of the earliest answered ping not followed by any
        #: message on the subscriber connection yet (None: none)
        self._answered_at: float | None = None
        self._ping_waiting = False
        #: reactor time commands were first seen waiting (None: none waiting)
        self._waiting_since: float | None = None

    def start(self) -> None:
        self.stop()
        link = self.link
        self._answered_at = None
        self._ping_waiting = False
        self._waiting_since = None
        self._pinger = LoopingCall(self._check)
        self._pinger.clock = link.reactor
        self._pinger.start(link.subscription_timeout / 3, now=False)

    def stop(self) -> None:
        if self._pinger is not None and self._pinger.running:
            self._pinger.stop()
        self._pinger = None

    def _check(self) -> None:
        link = self.link
        if not link.up:
            return
        if self._command_dead() is not None or self._subscription_silence() is not None:
            # judge again after one pass over the sockets
            link.reactor.callLater(0, self._confirm, link._command, link._subscriber)
            return
        if not self._ping_waiting:
            self._ping_waiting = True
            link.execute("PUBLISH", link.ping_channel, "ping").addCallbacks(self._answered, self._unanswered)

    def _answered(self, _: Any) -> None:
        self._ping_waiting = False
        link = self.link
        now = link.reactor.seconds()
        if self._answered_at is None or (link.last_message_at or 0) >= self._answered_at:
            self._answered_at = now

    def _unanswered(self, _: Any) -> None:
        self._ping_waiting = False

    def _command_dead(self) -> float | None:
        """Seconds the command connection has had commands waiting and
        received nothing, when past ``command_timeout``; else None."""
        link = self.link
        command = link._command
        if command is None or not command.waiting():
            self._waiting_since = None
            return None
        now = link.reactor.seconds()
        if self._waiting_since is None:
            self._waiting_since = now
        silent_since = max(self._waiting_since, command.received_at or 0.0)
        silence = now - silent_since
        return silence if silence > link.command_timeout else None

    def _subscription_silence(self) -> float | None:
        """Seconds since an answered ping with nothing received on the
        subscriber connection since, when past ``subscription_timeout``."""
        link = self.link
        answered = self._answered_at
        if answered is None or (link.last_message_at or 0) >= answered:
            return None
        now = link.reactor.seconds()
        if now - answered <= link.subscription_timeout:
            return None
        return now - (link.last_message_at or answered)

    def _confirm(self, command: Any, subscriber: Any) -> None:
        link = self.link
        if not link.up or command is not link._command or subscriber is not link._subscriber:
            return
        silence = self._command_dead()
        if silence is not None:
            link._drop(command, f"no reply from Redis for {silence:.1f} s ({command.waiting()} command(s) waiting)")
            return
        silence = self._subscription_silence()
        if silence is not None:
            link.stalls += 1
            link._drop(subscriber, f"subscription to {link.channel} stalled (nothing received for {silence:.1f} s)")


class RedisLink:
    """This node's link to Redis: one command and one subscriber connection.

    Both are connected together and counted *up* only when both are ready
    and the subscription to the cluster channel is confirmed; losing either
    drops both and starts over, so there is one state, one log line per
    attempt, and one reconnection to announce.  Attempts are retried forever
    with back-off (0.5 s doubling to ``reconnect_max_delay``).

    A connection can also die silently (a stalled proxy, a half-open TCP
    connection, a Redis that stopped): the link's watch (:class:`_LinkWatch`,
    pinging itself on ``ping_channel``) finds a stalled subscription or a
    command connection that no longer answers; it is logged, both
    connections are dropped and the link reconnects and resubscribes.  A
    Redis, or a node, busy with a backlog but still answering is neither.

    Counters (plain attributes, read by metrics; never reset):

    * ``connections`` -- times the link came up (1 after the first connect);
    * ``reconnects`` -- times it came back up after having been up;
    * ``stalls`` -- stalled subscriptions detected (each also ends in a gap);
    * ``gaps`` -- subscription gaps closed: times the node was subscribed,
      lost the subscription (connection lost, stall, Redis restart) and
      subscribed again;
    * ``gap_seconds`` -- their total length: from the last message received
      before each gap to the new subscription (messages published on the
      channel in between were not received);
    * ``last_gap`` -- ``(start, end)`` reactor times of the last gap, or None.
    """

    def __init__(
        self,
        reactor: Any,
        target: RedisTarget,
        channel: str,
        reconnect_max_delay: float = 5.0,
        endpoint: Any = None,
        subscription_timeout: float = SUBSCRIPTION_TIMEOUT,
        command_timeout: float = COMMAND_TIMEOUT,
    ) -> None:
        self.reactor = reactor
        self.target = target
        self.channel = channel
        #: this link's own channel for its pings (nobody else subscribes to it)
        self.ping_channel = f"{channel}:ping:{uuid.uuid4().hex}"
        self.subscription_timeout = subscription_timeout
        self.command_timeout = command_timeout
        self.reconnect_max_delay = reconnect_max_delay
        self._fixed_endpoint = endpoint
        self.endpoint = endpoint or _client_endpoint(reactor, target)
        #: with Sentinel: the master's address of the current connection
        self.master_address: tuple[str, int] | None = None
        #: called (no arguments) each time the link comes up / goes down
        self.on_up: list[Callable[[], Any]] = []
        self.on_down: list[Callable[[], Any]] = []
        #: called with each message (text) received on the channel
        self.on_message: Callable[[str], Any] = lambda message: None
        self.up = False
        self.running = False
        #: times the link came up (1 after the first connection)
        self.connections = 0
        self.reconnects = 0
        self.stalls = 0
        self.gaps = 0
        self.gap_seconds = 0.0
        self.last_gap: tuple[float, float] | None = None
        self.down_since: float | None = None
        #: reactor time of the last message received on the subscriber connection
        self.last_message_at: float | None = None
        #: start of the current subscription gap (the last message before it)
        self._gap_start: float | None = None
        self.watch = _LinkWatch(self)
        self._logged_master: tuple[str, int] | None = None
        self._command: Any = None
        self._subscriber: Any = None
        self._failures = 0
        self._retry: Any = None
        self._attempt: Deferred[Any] | None = None
        self._attempt_protocols: list[Any] = []

    # --- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Connect now, and keep reconnecting until :meth:`stop`."""
        if self.running:
            return
        self.running = True
        self.down_since = self.reactor.seconds()
        self._connect()

    def stop(self) -> Deferred[None]:
        """Stop reconnecting and close both connections."""
        self.running = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._attempt is not None:
            self._attempt.cancel()
        was_up = self.up
        self._set_down()
        protocols = [p for p in (self._command, self._subscriber) if p is not None]
        self._command = self._subscriber = None
        closed = []
        for protocol in protocols:
            lost: Deferred[Any] = protocol.whenDisconnected()
            closed.append(lost)
            protocol.transport.loseConnection()
        if was_up:
            log.info("Redis {url}: disconnected", url=self.target.masked)
        if not closed:
            return succeed(None)
        done = defer.DeferredList(closed, consumeErrors=True)
        done.addTimeout(STOP_TIMEOUT, self.reactor, onTimeoutCancel=lambda *_: self._abort(protocols))
        return done.addBoth(lambda _: None)

    def _abort(self, protocols: list[Any]) -> None:
        for protocol in protocols:
            protocol.transport.abortConnection()

    # --- connecting ----------------------------------------------------------------

    def _connect(self) -> None:
        self._retry = None
        if not self.running:
            return
        self._attempt = Deferred.fromCoroutine(self._open())
        self._attempt.addCallbacks(self._opened, self._open_failed)

    async def _open(self) -> tuple[Any, Any]:
        self._attempt_protocols = []
        if self.target.sentinels and self._fixed_endpoint is None:
            host, port = await _ask_sentinels(self)
            self.master_address = (host, port)
            self.endpoint = _client_endpoint(self.reactor, attrs.evolve(self.target, host=host, port=port))
        command = await self._open_one(_CommandProtocol)
        if self.target.sentinels:
            asked = command.execute_command("ROLE")
            asked.addTimeout(COMMAND_TIMEOUT, self.reactor)
            role = await asked
            if not role or role[0] != "master":
                raise _ConnectFailed(f"{_address(self.master_address)} is not a master (it is a {role[0]})")
        subscriber = await self._open_one(_SubscriberProtocol)
        for channel in (self.channel, self.ping_channel):
            d = subscriber.subscribe(channel)
            d.addTimeout(COMMAND_TIMEOUT, self.reactor)
            reply = await d
            if isinstance(reply, Exception):
                raise _ConnectFailed(f"cannot subscribe: {reply}")
        return command, subscriber

    async def _open_one(self, protocol_class: type, endpoint: Any = None, sentinel: bool = False) -> Any:
        factory = _ProtocolFactory(self, protocol_class, sentinel)
        protocol = await (endpoint or self.endpoint).connect(factory)
        self._attempt_protocols.append(protocol)
        ready = protocol.ready
        ready.addTimeout(COMMAND_TIMEOUT + CONNECT_TIMEOUT, self.reactor)
        return await ready

    def _opened(self, protocols: tuple[Any, Any]) -> None:
        self._attempt = None
        self._attempt_protocols = []
        self._command, self._subscriber = protocols
        now = self.reactor.seconds()
        outage = now - (self.down_since or now)
        self.up = True
        self.down_since = None
        self._failures = 0
        self.connections += 1
        self.last_message_at = now
        if self.master_address is not None and self.master_address != self._logged_master:
            self._logged_master = self.master_address
            log.info("Redis {url}: master {name} is at {address} (from Sentinel)",
                     url=self.target.masked, name=self.target.master_name,
                     address=_address(self.master_address))
        if self.connections == 1:
            log.info("Redis {url}: connected", url=self.target.masked)
        else:
            self.reconnects += 1
            gap_start = self._gap_start if self._gap_start is not None else now - outage
            gap = now - gap_start
            self.gaps += 1
            self.gap_seconds += gap
            self.last_gap = (gap_start, now)
            log.info(
                "Redis {url}: reconnected after {outage:.1f} s; resubscribed to {channel} "
                "(its messages of the last {gap:.1f} s were not received)",
                url=self.target.masked,
                outage=outage,
                channel=self.channel,
                gap=gap,
            )
        self._gap_start = None
        self.watch.start()
        for listener in list(self.on_up):
            try:
                listener()
            except Exception:
                log.failure("Redis link: an on_up listener failed")

    def _open_failed(self, failure: Failure) -> None:
        self._attempt = None
        for protocol in self._attempt_protocols:
            if protocol.transport is not None:
                protocol.transport.abortConnection()
        self._attempt_protocols = []
        if not self.running:
            return
        self._failures += 1
        delay = self._delay()
        reason = reason_of(failure)
        log.error(
            "Redis {url}: cannot connect: {reason}; retrying in {delay:.1f} s",
            url=self.target.masked,
            reason=reason,
            delay=delay,
        )
        self._retry = self.reactor.callLater(delay, self._connect)

    def _delay(self) -> float:
        return float(min(FIRST_RETRY_DELAY * 2 ** (self._failures - 1), self.reconnect_max_delay))

    def _connection_lost(self, protocol: Any, reason: str) -> None:
        """One of the two ready connections is gone: drop the other, retry."""
        if protocol is not self._command and protocol is not self._subscriber:
            return
        other = self._subscriber if protocol is self._command else self._command
        self._command = self._subscriber = None
        if other is not None and other.transport is not None:
            other.transport.abortConnection()
        if not self.running:
            return
        self._set_down()
        self._failures = 1
        delay = self._delay()
        log.error(
            "Redis {url}: connection lost: {reason}; reconnecting in {delay:.1f} s",
            url=self.target.masked,
            reason=reason,
            delay=delay,
        )
        self._retry = self.reactor.callLater(delay, self._connect)

    def _drop(self, protocol: Any, reason: str) -> None:
        """Give up ``protocol`` (one of the two) as dead: log, reconnect."""
        self._connection_lost(protocol, reason)
        if protocol.transport is not None:
            protocol.transport.abortConnection()

    def _set_down(self) -> None:
        if not self.up:
            return
        self.up = False
        self.down_since = self.reactor.seconds()
        self._gap_start = self.last_message_at if self.last_message_at is not None else self.down_since
        self.watch.stop()
        for listener in list(self.on_down):
            try:
                listener()
            except Exception:
                log.failure("Redis link: an on_down listener failed")

    # --- using it --------------------------------------------------------------------

    def execute(self, *args: Any) -> Deferred[Any]:
        """Run one command; fails at once with :class:`RedisUnavailable` when down."""
        command = self._command
        if not self.up or command is None:
            return fail(RedisUnavailable("Redis unavailable"))
        try:
            d: Deferred[Any] = command.execute_command(*args)
        except Exception:
            return fail()
        return d.addErrback(self._refused, command)

    def _refused(self, failure: Failure, command: Any) -> Failure:
        """A write refused by a replica: after a failover this server is no
        longer the master; reconnecting finds the new one."""
        if (
            failure.check(txredisapi.ResponseError)
            and str(failure.value).startswith("READONLY")
            and command is self._command
            and command.transport is not None
        ):
            log.warn("Redis {url}: the server became a replica (READONLY); reconnecting", url=self.target.masked)
            command.transport.abortConnection()
        return failure

    def _message_received(self, channel: Any, message: Any) -> None:
        self.last_message_at = self.reactor.seconds()
        if channel == self.ping_channel:
            return
        try:
            self.on_message(message)
        except Exception:
            log.failure("handling a cluster message")


def _address(address: tuple[str, int] | None) -> str:
    if address is None:
        return "?"
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _ask_sentinels(link: RedisLink) -> tuple[str, int]:
    """The master's address, from the first Sentinel that knows it."""
    problems = []
    for host, port in link.target.sentinels:
        endpoint = HostnameEndpoint(link.reactor, host, port, timeout=CONNECT_TIMEOUT, attemptDelay=0.02)
        sentinel = None
        try:
            sentinel = await link._open_one(_CommandProtocol, endpoint, sentinel=True)
            reply = await sentinel.execute_command(
                "SENTINEL", "get-master-addr-by-name", link.target.master_name
            )
        except Exception as e:
            problems.append(f"Sentinel {_address((host, port))}: {reason_of(Failure(e))}")
            continue
        finally:
            if sentinel is not None:
                sentinel.transport.loseConnection()
        if isinstance(reply, Exception):
            problems.append(f"Sentinel {_address((host, port))}: {reply}")
        elif not reply:
            problems.append(f"Sentinel {_address((host, port))} does not know {link.target.master_name}")
        else:
            return str(reply[0]), int(reply[1])
    raise _ConnectFailed("no master address: " + "; ".join(problems))



def reason_of(failure: Failure) -> str:
    if failure.check(defer.TimeoutError, defer.CancelledError):
        return "timed out"
    return failure.getErrorMessage() or type(failure.value).__name__


class LocalFallback:
    """"Ask Redis, else answer from the local copy": the one rule every
    provider follows, so a Redis outage never fails a request.

    :meth:`or_local` runs ``remote`` while the link is up; when the link is
    down, or the command is lost with the connection, it answers with
    ``local`` instead.  The link logs each outage; a command lost while the
    link still looked up is logged here, once per outage and provider
    (``what``), so a flapping Redis does not flood the log.
    """

    def __init__(self, link: RedisLink, what: str) -> None:
        self.link = link
        self.what = what
        self._logged = False
        link.on_up.append(self._reset)

    def _reset(self) -> None:
        self._logged = False

    async def or_local(self, remote: Callable[[], Awaitable[T]], local: Callable[[], T | Awaitable[T]]) -> T:
        if self.link.up:
            try:
                return await remote()
            except (RedisUnavailable, txredisapi.ConnectionError) as e:
                if not self._logged:
                    self._logged = True
                    log.warn(
                        "Redis did not answer for {what} ({reason}); answering locally until it is back",
                        what=self.what,
                        reason=reason_of(Failure(e)),
                    )
        result = local()
        if isawaitable(result):
            return await result
        return result
