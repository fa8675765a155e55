"""``twistd ahtwist``: command-line options and the service they build.

Configuration problems end start-up with one line on stderr naming the file,
the key and the reason, and a non-zero exit -- never a traceback.
"""

import sys
from typing import Any

from twisted.logger import Logger
from twisted.python import usage

from ahtwist.config import Config, Overrides, load_config
from ahtwist.errors import ConfigError
from ahtwist.logs import observer_for_twistd
from ahtwist.workers import WorkerInfo, WorkerSupervisor, worker_check

log = Logger(namespace="ahtwist.tap")


#: the reactor an endpoint description is parsed with (see check_endpoint)
_PARSE_ONLY: Any = object()


def _fail(message: str) -> SystemExit:
    return SystemExit(f"ahtwist: {message}")


def check_endpoint(description: str, option: str) -> None:
    """Parse an endpoint string now, so a typo stops start-up clearly."""
    from twisted.internet.endpoints import serverFromString

    if WorkerInfo.from_environment() is not None:
        return  # a worker: its parent checked and bound every endpoint

    try:
        # the endpoint is only built, never listened on: no reactor is used
        # (Twisted's MemoryReactor would import twisted.trial, ~0.8 MiB)
        serverFromString(_PARSE_ONLY, description)
    except Exception as e:  # ValueError, KeyError, OSError from ssl files...
        reason = str(e) or type(e).__name__
        raise _fail(f"{option} {description!r}: invalid endpoint: {reason}") from None


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the ahtwist API server: actions over HTTP, WebSocket and TCP, and "
        "chat rooms shared by all of them.  ENDPOINT is a Twisted server endpoint "
        "string such as tcp:8080:interface=127.0.0.1, "
        "ssl:8443:privateKey=key.pem:certKey=cert.pem or systemd:domain=INET:name=web; "
        "'none' disables that server."
    )
    optParameters = [
        ["config", "c", None, "TOML config file (default: the bundled etc/ahtwist.toml)."],
        ["redis", None, None, "Redis URL for cluster mode, e.g. redis://127.0.0.1:6379/0."],
        ["workers", None, None, "Processes sharing the listeners (general.workers); more than 1 needs --redis.", int],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["web"] = []
        self["socket"] = []
        self["public"] = []
        self.config: Config | None = None
        #: the arguments as given, for worker processes (ahtwist.workers)
        self.argv: list[str] = []

    def parseOptions(self, options: list[str] | None = None) -> None:
        self.argv = list(sys.argv[1:] if options is None else options)
        super().parseOptions(options)

    def opt_version(self) -> None:
        """Print ahtwist's version and exit."""
        import sys

        from ahtwist._version import __version__

        sys.stdout.write(f"ahtwist {__version__}\n")
        raise SystemExit(0)

    def opt_web(self, endpoint: str) -> None:
        """Web (HTTP + WebSocket) listener ENDPOINT; repeatable; 'none' disables."""
        self["web"].append(endpoint)

    def opt_socket(self, endpoint: str) -> None:
        """TCP socket listener ENDPOINT; repeatable; 'none' disables."""
        self["socket"].append(endpoint)

    def opt_public(self, directory: str) -> None:
        """Static files folder; repeatable, searched in order (replaces the config)."""
        self["public"].append(directory)

    def postOptions(self) -> None:
        for option in ("web", "socket"):
            for endpoint in self[option]:
                if endpoint != "none":
                    check_endpoint(endpoint, f"--{option}")
        try:
            self.config = load_config(
                self["config"],
                overrides=Overrides(
                    web=tuple(self["web"]),
                    socket=tuple(self["socket"]),
                    public=tuple(self["public"]),
                    redis=self["redis"],
                    workers=self["workers"],
                ),
            )
        except ConfigError as e:
            raise _fail(str(e)) from None
        for option, endpoints in (
            ("servers.web", self.config.web_endpoints),
            ("servers.socket", self.config.socket_endpoints),
        ):
            for endpoint in endpoints:
                if endpoint not in self["web"] + self["socket"]:
                    check_endpoint(endpoint, option)
        for name, server in self.config.custom_servers.items():
            for endpoint in server.endpoints:
                check_endpoint(endpoint, f"servers.{name}.endpoints")
        if self.config.metrics.enabled and self.config.metrics.endpoint:
            check_endpoint(self.config.metrics.endpoint, "metrics.endpoint")
        problem = worker_check(self.config)
        if problem is not None:
            raise _fail(problem)


def makeService(options: Options, reactor: Any = None) -> Any:
    """Build the service tree for ``options`` (reactor injectable for tests)."""
    if reactor is None:
        from twisted.internet import reactor  # noqa: PLC0415 -- chosen by twistd by now
    config = options.config if options.config is not None else load_config(options["config"])
    worker = WorkerInfo.from_environment()
    if worker is not None:
        config = worker.configure(config)
    try:
        service = build_service(config, reactor)  # in a parent: checks plugins too
    except ConfigError as e:
        raise _fail(str(e)) from None
    service.on_startup_failure = lambda: exit_after_stop(reactor)
    if worker is None and config.general.workers > 1:
        service = WorkerSupervisor(config, options.argv, reactor)
    elif worker is not None:
        worker.attach(reactor)
    service.log_observer = observer_for_twistd(
        getattr(options, "parent", None),
        config.general.logLevel,
        config.general.logFormat,
        reactor,
        worker=worker.number if worker is not None else None,
    )
    return service


def exit_after_stop(reactor: Any, status: int = 1) -> None:
    """Stop the reactor (services stop: what started is closed again) and
    end the process with ``status`` once twistd has cleaned up."""
    import atexit
    import os
    import sys

    def leave() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)

    atexit.register(leave)
    reactor.callLater(0, reactor.stop)  # from a later turn: start-up may still be running


def build_node(config: Config, reactor: Any, **backends: Any) -> Any:
    """A :class:`~ahtwist.node.Node` serving the built-in actions (before any
    user plugin is registered); ``backends`` are the Node's keyword providers
    (``cache``, ``stats``, ``peers``, ``room_backend``, ``bus``)."""
    from ahtwist.actions.builtin import BUILTIN_ACTIONS
    from ahtwist.node import Node

    node = Node(config, reactor, **backends)
    for action in BUILTIN_ACTIONS:
        node.registry.add(action)
    return node


def build_service(config: Config, reactor: Any) -> Any:
    """The :class:`~ahtwist.service.AhtwistService` for ``config``."""
    from ahtwist.initializers import Initializers, load_initializers
    from ahtwist.servers.loader import build_custom_servers, load_servers
    from ahtwist.service import AhtwistService, SocketService, WebService

    cluster = None
    if config.redis.url:
        # txredisapi imports the reactor: only now, once twistd has chosen it
        from ahtwist.backends.redis import ClusterService

        cluster = ClusterService(config, reactor)
        node = build_node(
            config,
            reactor,
            cache=cluster.cache,
            stats=cluster.stats,
            peers=cluster.peers,
            room_backend=cluster.rooms,
            bus=cluster.bus,
            history=cluster.history,
        )
        cluster.attach(node)
    else:
        node = build_node(config, reactor)
    node.load_plugins()
    custom = build_custom_servers(node, reactor, config, load_servers(config.general.paths.servers))
    initializers = Initializers(node)
    found = load_initializers(config.general.paths.initializers)
    for folder in found.missing_folders:
        log.warn("initializers folder {folder} does not exist; skipped", folder=folder)
    for initializer in found.initializers:
        initializers.add(initializer)
    top = AhtwistService(node, reactor, cluster=cluster, initializers=initializers)
    if config.web_endpoints:
        WebService(node, reactor, config.web_endpoints).setServiceParent(top)
    if config.socket_endpoints:
        SocketService(node, reactor, config.socket_endpoints).setServiceParent(top)
    for server in custom:
        server.setServiceParent(top)
    metrics = config.metrics
    if metrics.enabled and metrics.endpoint:
        from ahtwist.servers.base import listen_on
        from ahtwist.web.metrics import metrics_site  # Klein: the reactor is chosen by now

        listen_on(top, reactor, "metrics", metrics.endpoint, metrics_site(node, reactor))
    return top
