"""Worker processes: ``--workers N`` runs N nodes sharing the listening sockets.

The parent (the ``twistd`` process started by the user or systemd) binds
every endpoint once -- ``tcp:``, ``ssl:``, ``unix:`` and ``systemd:`` ones it
was handed -- and never accepts on them.  It spawns N ``twistd ahtwist``
children with the same arguments; each child receives the listening sockets
as inherited file descriptors (``spawnProcess(childFDs=...)``) and adopts them
with ``IReactorSocket.adoptStreamPort``; an ``ssl:`` listener is wrapped in
TLS in the child (``TLSMemoryBIOFactory``, what ``listenSSL`` does).  The
kernel hands each new connection to whichever child accepts it first.

Why not ``SO_REUSEPORT``: a socket systemd passes in (socket activation) is
one socket, which cannot be re-bound per child; port 0 would give every child
a different port; Unix sockets have no equivalent; and Twisted's endpoints
offer no way to set the option.  Inherited sockets work for all of them and
keep the port open while a worker restarts.

Each child is a full cluster node (Redis is required for N > 1: rooms,
chat and the cache must be shared).  The parent relays the children's log
lines into its own log, restarts a dead worker with a back-off, and on
SIGTERM stops every child gracefully (each drains as a single process does)
and exits after the last one.  A child whose parent disappears (its stdin
reaches end of file) stops too.
"""

import json
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.endpoints import AdoptedStreamServerEndpoint, serverFromString
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.logger import Logger
from zope.interface import implementer

from ahtwist.config import Config

log = Logger(namespace="ahtwist.workers")

#: environment variable telling a child it is a worker (JSON, see WorkerInfo)
ENVIRONMENT_KEY = "AHTWIST_WORKER"
#: systemd's socket activation variables: handled by the parent only
_SYSTEMD_KEYS = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")
_FAMILIES = {"INET": socket.AF_INET, "INET6": socket.AF_INET6, "UNIX": socket.AF_UNIX}
#: the child's end of the pipe it reports "ready" on; inherited sockets follow
_READY_FD = 3
_FIRST_LISTENER_FD = 4
#: restart back-off (seconds): doubles per quick death, reset after a stable run
RESTART_DELAY = 1.0
RESTART_DELAY_MAX = 30.0
STABLE_AFTER = 30.0


def worker_check(config: Config) -> str | None:
    """Why ``config`` cannot run its workers, or None."""
    workers = config.general.workers
    if workers > 1 and not config.redis.url:
        return (
            f"general.workers: {workers} workers need the Redis backend (--redis URL or "
            "redis.url): the in-memory backend cannot share rooms and cache between processes"
        )
    return None


def listener_descriptions(config: Config) -> Iterator[tuple[str, str]]:
    """Every ``(kind, endpoint)`` a node of ``config`` listens on."""
    for description in config.web_endpoints:
        yield "web", description
    for description in config.socket_endpoints:
        yield "socket", description
    for name, server in config.custom_servers.items():
        if server.enabled:
            for description in server.endpoints:
                yield name, description
    if config.metrics.enabled and config.metrics.endpoint:
        yield "metrics", config.metrics.endpoint


# --- the child side ----------------------------------------------------------


@attrs.frozen
class WorkerInfo:
    """What a child was told by its parent: its number and the sockets it
    inherited, by endpoint description."""

    number: int
    #: (kind, description, fd, family) in the order the parent bound them
    listeners: tuple[tuple[str, str, int, str], ...]

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> "WorkerInfo | None":
        raw = (os.environ if environ is None else environ).get(ENVIRONMENT_KEY)
        if not raw:
            return None
        data = json.loads(raw)
        return cls(
            number=int(data["worker"]),
            listeners=tuple((k, d, int(fd), f) for k, d, fd, f in data["listeners"]),
        )

    def inherited(self, kind: str, description: str) -> tuple[int, str] | None:
        """The next not yet adopted socket for ``kind`` + ``description``
        (the same endpoint may be listed twice, e.g. two ``tcp:0``).  A
        custom server's kind is its type, the parent knows its config name:
        those match by description."""
        for exact in (True, False):
            for kind_, description_, fd, family in self.listeners:
                if description_ != description or fd in _ADOPTED:
                    continue
                if kind_ == kind if exact else kind_ not in ("web", "socket"):
                    _ADOPTED.add(fd)
                    return fd, family
        return None

    def configure(self, config: Config) -> Config:
        """A configured ``general.id`` is shared by all workers: suffix it
        (the default, ``<hostname>-<pid>``, is distinct already)."""
        general = config.general
        if general.id.endswith(f"-{os.getpid()}"):
            return config
        return attrs.evolve(
            config, general=attrs.evolve(general, id=f"{general.id}-worker{self.number}")
        )

    def attach(self, reactor: Any) -> None:
        """Tell the parent once the reactor runs; stop when the parent is gone."""
        reactor.callWhenRunning(_write_ready)
        reactor.addReader(_ParentWatch(reactor))


def _write_ready() -> None:
    try:
        os.write(_READY_FD, b"ready\n")
        os.close(_READY_FD)
    except OSError:
        pass  # the parent went away; _ParentWatch stops us


@implementer(IReadDescriptor)
class _ParentWatch:
    """Reads the child's stdin, a pipe from the parent: end of file means the
    parent died (SIGKILL, crash), so the worker stops rather than serve alone."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        os.set_blocking(0, False)

    def fileno(self) -> int:
        return 0

    def doRead(self) -> None:
        try:
            if os.read(0, 4096):
                return  # the parent writes nothing; ignore
        except BlockingIOError:
            return
        except OSError:
            pass
        self.reactor.removeReader(self)
        self.connectionLost(None)

    def connectionLost(self, reason: Any) -> None:
        """End of file (or a hang-up the reactor reports directly)."""
        if not self.reactor.running:
            return
        log.warn("the parent process is gone: stopping")
        self.reactor.stop()

    def logPrefix(self) -> str:
        return "ParentWatch"


#: inherited descriptors already adopted by this process
_ADOPTED: set[int] = set()


def server_endpoint(reactor: Any, kind: str, description: str) -> Any:
    """The endpoint a ``kind`` listener for ``description`` uses: the socket
    inherited from the parent in a worker, otherwise ``serverFromString``
    (the environment is read like Twisted's ``systemd:`` endpoints do)."""
    worker = WorkerInfo.from_environment()
    inherited = None if worker is None else worker.inherited(kind, description)
    if inherited is None:
        return serverFromString(reactor, description)
    fd, family = inherited
    adopted = AdoptedStreamServerEndpoint(reactor, fd, _FAMILIES[family])
    context = _tls_context(description)
    return adopted if context is None else _TLSAdoptedEndpoint(adopted, context)


def _tls_context(description: str) -> Any:
    """The TLS context factory an ``ssl:`` description configures, or None
    (parsed the way ``serverFromString`` does, on a reactor that only records)."""
    from twisted.internet.testing import MemoryReactor  # noqa: PLC0415 -- imports twisted.trial: only here

    recorder = MemoryReactor()
    try:
        serverFromString(recorder, description).listen(Factory())
    except Exception:
        return None
    return recorder.sslServers[0][2] if recorder.sslServers else None


class _TLSAdoptedEndpoint:
    """An adopted listening socket whose connections speak TLS."""

    def __init__(self, adopted: AdoptedStreamServerEndpoint, context: Any) -> None:
        self.adopted = adopted
        self.context = context

    def listen(self, factory: Any) -> Deferred[Any]:
        from twisted.protocols.tls import TLSMemoryBIOFactory

        return self.adopted.listen(TLSMemoryBIOFactory(self.context, False, factory))


# --- the parent side ---------------------------------------------------------


class _NoConnections(Factory):
    """The parent never accepts on the shared sockets; should it, refuse."""

    noisy = False

    def logPrefix(self) -> str:
        return "shared listener"

    def buildProtocol(self, addr: Any) -> None:
        return None


def _family(address: Any) -> str:
    kind = type(address).__name__
    return {"IPv4Address": "INET", "IPv6Address": "INET6", "UNIXAddress": "UNIX"}[kind]


def _describe_end(reason: Any) -> tuple[bool, str]:
    """(clean, how) for a child's end: a graceful stop is exit status 0 or
    SIGTERM (twistd re-raises the signal it stopped on)."""
    value = reason.value
    if isinstance(value, ProcessDone):
        return True, "exit status 0"
    if isinstance(value, ProcessTerminated):
        if value.signal is not None:
            return value.signal == signal.SIGTERM, signal.Signals(value.signal).name
        return False, f"exit status {value.exitCode}"
    return False, str(value)


class _Worker(ProcessProtocol):
    """One child: relays its log lines, notes readiness, reports its end."""

    def __init__(self, supervisor: "WorkerSupervisor", number: int) -> None:
        self.supervisor = supervisor
        self.number = number
        self.pid = 0
        self.started_at = 0.0
        self.ready = False
        self.ended: Deferred[None] = Deferred()
        self._partial = {1: b"", 2: b""}

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.pid = self.transport.pid

    def childDataReceived(self, fd: int, data: bytes) -> None:
        if fd == _READY_FD:
            if not self.ready and b"ready" in data:
                self.ready = True
                log.info("worker {number} ready (pid {pid})", number=self.number, pid=self.pid)
            return
        data = self._partial.get(fd, b"") + data
        complete, _, self._partial[fd] = data.rpartition(b"\n")
        if complete:
            self.supervisor.relay(complete.decode("utf-8", "replace") + "\n")

    def processEnded(self, reason: Any) -> None:
        for fd, rest in self._partial.items():
            if rest:
                self.supervisor.relay(rest.decode("utf-8", "replace") + "\n")
                self._partial[fd] = b""
        self.supervisor.worker_ended(self, reason)
        self.ended.callback(None)


class WorkerSupervisor(MultiService):
    """What the parent runs: the shared sockets and N worker processes."""

    def __init__(
        self,
        config: Config,
        argv: list[str],
        reactor: Any,
        *,
        executable: str = sys.executable,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.count = config.general.workers
        self.argv = list(argv)
        self.reactor = reactor
        self.executable = executable
        self.environ = dict(os.environ if environ is None else environ)
        #: (kind, description, listening port) bound by the parent
        self.ports: list[tuple[str, str, Any]] = []
        self.workers: dict[int, _Worker] = {}
        self.failures: dict[int, int] = {}
        self._restarts: dict[int, Any] = {}
        self.stopping = False
        #: set by makeService: the parent's log observer (see ahtwist.logs)
        self.log_observer: Any = None

    def setServiceParent(self, parent: Any) -> None:
        from ahtwist.logs import install_observer

        install_observer(parent, self.log_observer)
        super().setServiceParent(parent)

    # --- sockets --------------------------------------------------------------

    def privilegedStartService(self) -> None:
        """Bind every endpoint now (before twistd drops privileges)."""
        for kind, description in listener_descriptions(self.config):
            self.ports.append((kind, description, self._bind(kind, description)))
        super().privilegedStartService()

    def _bind(self, kind: str, description: str) -> Any:
        bound: list[Any] = []
        try:
            d = serverFromString(self.reactor, description).listen(_NoConnections())
            d.addCallback(bound.append)
            if not bound:
                d.cancel()
                raise ValueError("the endpoint does not listen at once, so it cannot be shared")
            port = bound[0]
            port.stopReading()  # the workers accept, not the parent
            family = _family(port.getHost())
            port.fileno()
        except Exception as e:
            log.error("cannot listen on {description}: {e}", description=description, e=e)
            raise SystemExit(f"ahtwist: cannot listen on {description}: {e}") from None
        address = port.getHost()
        if hasattr(address, "port"):
            where = f"{address.host}:{address.port}"
        else:
            where = os.fsdecode(address.name) if getattr(address, "name", None) else str(address)
        log.info(
            "{kind} listener {where} ({description}) shared by {count} workers ({family})",
            kind=kind, where=where, description=description, count=self.count, family=family,
        )
        return port

    # --- processes ------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        for number in range(1, self.count + 1):
            self.spawn(number)

    def spawn(self, number: int) -> None:
        """Start worker ``number`` with the shared sockets as its fds 4, 5, ..."""
        self._restarts.pop(number, None)
        child_fds: dict[int, int | str] = {0: "w", 1: "r", 2: "r", _READY_FD: "r"}
        listeners = []
        for offset, (kind, description, port) in enumerate(self.ports):
            fd = _FIRST_LISTENER_FD + offset
            child_fds[fd] = port.fileno()
            listeners.append((kind, description, fd, _family(port.getHost())))
        env = {k: v for k, v in self.environ.items() if k not in _SYSTEMD_KEYS}
        env[ENVIRONMENT_KEY] = json.dumps({"worker": number, "listeners": listeners})
        args = [
            self.executable, "-c", "from twisted.scripts.twistd import run; run()",
            "--nodaemon", "--pidfile=", "ahtwist", *self.argv,
        ]
        worker = _Worker(self, number)
        worker.started_at = self.reactor.seconds()
        self.workers[number] = worker
        self.reactor.spawnProcess(worker, self.executable, args, env=env, childFDs=child_fds)
        log.info("worker {number} started (pid {pid})", number=number, pid=worker.pid)

    def worker_ended(self, worker: _Worker, reason: Any) -> None:
        clean, how = _describe_end(reason)
        if self.workers.get(worker.number) is worker:
            del self.workers[worker.number]
        if self.stopping:
            emit = log.info if clean else log.warn
            emit("worker {number} (pid {pid}) stopped ({how})", number=worker.number, pid=worker.pid, how=how)
            return
        lived = self.reactor.seconds() - worker.started_at
        failures = 1 if lived >= STABLE_AFTER else self.failures.get(worker.number, 0) + 1
        self.failures[worker.number] = failures
        delay = min(RESTART_DELAY * 2 ** (failures - 1), RESTART_DELAY_MAX)
        log.error(
            "worker {number} (pid {pid}) died ({how}); restarting it in {delay:g} s",
            number=worker.number, pid=worker.pid, how=how, delay=delay,
        )
        self._restarts[worker.number] = self.reactor.callLater(delay, self.spawn, worker.number)

    def stopService(self) -> Deferred[Any]:
        """SIGTERM every worker (each drains), wait for all, then close the sockets."""
        log.info("stopping {count} workers", count=len(self.workers))
        self.stopping = True
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        waiting = []
        for worker in list(self.workers.values()):
            waiting.append(worker.ended)
            _signal(worker, "TERM")
        limit = self.config.servers.socket.pendingShutdownWaitLimit / 1000 + 10
        killer = self.reactor.callLater(limit, self._kill_all)
        done = DeferredList(waiting)

        def close(_: Any) -> Any:
            if killer.active():
                killer.cancel()
            closing = [port.stopListening() or succeed(None) for _k, _d, port in self.ports]
            return DeferredList([super(WorkerSupervisor, self).stopService() or succeed(None), *closing])

        return done.addCallback(close).addCallback(lambda _: log.info("stopped"))

    def _kill_all(self) -> None:
        for worker in list(self.workers.values()):
            log.warn("worker {number} (pid {pid}) did not stop: killing it", number=worker.number, pid=worker.pid)
            _signal(worker, "KILL")

    def relay(self, text: str) -> None:
        """Put the workers' log lines (already formatted) into our log."""
        relay: Callable[[str], None] | None = getattr(self.log_observer, "relay", None)
        if relay is not None:
            relay(text)
            return
        for line in text.splitlines():
            log.info("{text}", text=line)


def _signal(worker: _Worker, name: str) -> None:
    try:
        if worker.transport is not None:
            worker.transport.signalProcess(name)
    except Exception:
        pass  # already gone: processEnded is on its way
