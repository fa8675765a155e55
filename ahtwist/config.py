"""Configuration: TOML file + environment + command line -> frozen objects.

Precedence (lowest first): built-in defaults < the ``--config`` file <
environment (``PORT``, ``ALLOWED_HOSTS``, ``REDIS_URL``) < command line.

Attribute names mirror the TOML keys (ActionHero's camelCase), so the key a
user writes, the key an error names and the attribute the code reads are the
same word.  Every value is checked here; a bad one raises :class:`ConfigError`
naming the file, the key and the reason.  Derived defaults ("" meaning "the
hostname", "the package version", "the system temp dir", ...) are resolved
here too, so the rest of the code reads final values only.
"""

import os
import socket
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import attrs
from twisted.internet.endpoints import quoteStringArgument

from ahtwist._version import __version__
from ahtwist.errors import ConfigError

_KIND = "ahtwist.kind"


def _setting(default: Any, kind: str) -> Any:
    """An attrs field holding a config value of the given ``kind``."""
    if isinstance(default, (dict, list)):
        raise TypeError("use an immutable default")
    return attrs.field(default=default, metadata={_KIND: kind})


def _table(cls: type) -> Any:
    """An attrs field holding a nested config table."""
    return attrs.field(factory=cls, metadata={_KIND: cls})


_EMPTY: Mapping[str, Any] = MappingProxyType({})


@attrs.frozen
class Paths:
    public: tuple[str, ...] = _setting((), "pathlist")
    actions: tuple[str, ...] = _setting((), "pathlist")
    initializers: tuple[str, ...] = _setting((), "pathlist")
    servers: tuple[str, ...] = _setting((), "pathlist")


@attrs.frozen
class General:
    id: str = _setting("", "str")
    serverName: str = _setting("ahtwist", "str")
    apiVersion: str = _setting("", "str")
    description: str = _setting("ActionHero-compatible API server on Twisted", "str")
    serverToken: str = _setting("change-me", "str")
    simultaneousActions: int = _setting(5, "posint")
    disableParamScrubbing: bool = _setting(False, "bool")
    missingParamChecks: tuple[Any, ...] = _setting(("",), "list")
    filteredParams: tuple[str, ...] = _setting((), "strlist")
    directoryFileType: str = _setting("index.html", "str")
    defaultMiddlewarePriority: int = _setting(100, "int")
    channel: str = _setting("actionhero", "str")
    rpcTimeout: int = _setting(5000, "posint")
    exposeErrors: bool = _setting(False, "bool")
    logLevel: str = _setting("info", "logLevel")
    logFormat: str = _setting("text", "logFormat")
    paths: Paths = _table(Paths)
    startingChatRooms: tuple[str, ...] = _setting(("defaultRoom", "otherRoom"), "rooms")
    #: processes sharing the listeners (ahtwist.workers); more than 1 needs Redis
    workers: int = _setting(1, "posint")


@attrs.frozen
class FingerprintOptions:
    cookieKey: str = _setting("sessionID", "str")
    toSetCookie: bool = _setting(True, "bool")
    onlyStaticElements: bool = _setting(False, "bool")
    settings: Mapping[str, Any] = _setting(
        MappingProxyType({"path": "/", "expires": 3600000}), "map"
    )


@attrs.frozen
class FormOptions:
    uploadDir: str = _setting("", "path")
    keepExtensions: bool = _setting(False, "bool")
    maxFieldsSize: int = _setting(104857600, "posint")
    maxFileSize: int = _setting(209715200, "posint")
    maxTotalFileSize: int = _setting(1073741824, "posint")


@attrs.frozen
class MetadataOptions:
    serverInformation: bool = _setting(True, "bool")
    requesterInformation: bool = _setting(True, "bool")


@attrs.frozen
class QueryParseOptions:
    depth: int = _setting(5, "int")
    parameterLimit: int = _setting(1000, "posint")
    arrayLimit: int = _setting(20, "int")


@attrs.frozen
class OpenAPIOptions:
    enabled: bool = _setting(True, "bool")
    path: str = _setting("/api/openapi.json", "str")


@attrs.frozen
class DocsOptions:
    enabled: bool = _setting(True, "bool")
    path: str = _setting("/docs", "str")


_DEFAULT_HEADERS = MappingProxyType(
    {
        "X-Powered-By": None,  # None: general.serverName (resolved in load_config)
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "HEAD, GET, POST, PUT, PATCH, DELETE, OPTIONS, TRACE",
        "Access-Control-Allow-Headers": "Content-Type",
    }
)


@attrs.frozen
class HealthConfig:
    """The built-in liveness and readiness endpoints (Klein routes)."""

    enabled: bool = _setting(True, "bool")
    livenessPath: str = _setting("/healthz", "urlpath")
    readinessPath: str = _setting("/readyz", "urlpath")


@attrs.frozen
class Mount:
    """One ``[[servers.web.mounts]]`` entry: a Klein app at a path prefix."""

    path: str
    app: str


@attrs.frozen
class WebConfig:
    enabled: bool = _setting(True, "bool")
    port: int = _setting(8080, "port")
    bindIP: str = _setting("0.0.0.0", "str")
    secure: bool = _setting(False, "bool")
    serverOptions: Mapping[str, Any] = _setting(_EMPTY, "pathmap")
    endpoints: tuple[str, ...] = _setting((), "strlist")
    urlPathForActions: str = _setting("api", "str")
    urlPathForFiles: str = _setting("public", "str")
    rootEndpointType: str = _setting("file", "rootEndpointType")
    simpleRouting: bool = _setting(True, "bool")
    queryRouting: bool = _setting(True, "bool")
    flatFileCacheDuration: int = _setting(60, "int")
    enableEtag: bool = _setting(True, "bool")
    directoryFileType: str = _setting("", "str")
    padding: int = _setting(2, "int")
    returnErrorCodes: bool = _setting(True, "bool")
    compress: bool = _setting(False, "bool")
    allowedRequestHosts: tuple[str, ...] = _setting((), "strlist")
    trustedProxies: tuple[str, ...] = _setting(("127.0.0.0/8", "::1/128"), "networks")
    idleTimeout: int = _setting(60, "posint")
    httpHeaders: Mapping[str, str] = _setting(_DEFAULT_HEADERS, "headers")
    fingerprintOptions: FingerprintOptions = _table(FingerprintOptions)
    formOptions: FormOptions = _table(FormOptions)
    metadataOptions: MetadataOptions = _table(MetadataOptions)
    queryParseOptions: QueryParseOptions = _table(QueryParseOptions)
    saveRawBody: bool = _setting(False, "bool")
    health: HealthConfig = _table(HealthConfig)
    mounts: tuple[Mount, ...] = _setting((), "mounts")
    openapi: OpenAPIOptions = _table(OpenAPIOptions)
    docs: DocsOptions = _table(DocsOptions)


@attrs.frozen
class WebsocketConfig:
    enabled: bool = _setting(True, "bool")
    path: str = _setting("/ws", "str")
    destroyClientsOnShutdown: bool = _setting(False, "bool")
    pingInterval: int = _setting(30, "int")
    pingTimeout: int = _setting(10, "int")
    maxMessageSize: int = _setting(1048576, "posint")
    maxFileSize: int = _setting(10485760, "posint")
    allowedOrigins: tuple[str, ...] = _setting((), "strlist")
    fingerprintFromQuery: bool = _setting(False, "bool")
    maxOutboundBytes: int = _setting(4194304, "posint")
    primusPath: str = _setting("/primus", "str")
    primusPingInterval: int = _setting(30, "int")


@attrs.frozen
class SocketConfig:
    enabled: bool = _setting(True, "bool")
    port: int = _setting(5000, "port")
    bindIP: str = _setting("0.0.0.0", "str")
    secure: bool = _setting(False, "bool")
    serverOptions: Mapping[str, Any] = _setting(_EMPTY, "pathmap")
    endpoints: tuple[str, ...] = _setting((), "strlist")
    setKeepAlive: bool = _setting(False, "bool")
    delimiter: str = _setting("\n", "nonempty")
    maxDataLength: int = _setting(0, "int")
    maxBufferLength: int = _setting(1048576, "posint")
    pendingShutdownWaitLimit: int = _setting(5000, "int")
    idleTimeout: int = _setting(600, "int")


@attrs.frozen
class Servers:
    web: WebConfig = _table(WebConfig)
    websocket: WebsocketConfig = _table(WebsocketConfig)
    socket: SocketConfig = _table(SocketConfig)


@attrs.frozen
class RedisConfig:
    url: str = _setting("", "str")
    reconnectMaxDelay: int = _setting(5, "posint")
    subscriptionTimeout: int = _setting(3, "posint")
    commandTimeout: int = _setting(5, "posint")


@attrs.frozen
class HistoryConfig:
    """Room history for resume (:class:`ahtwist.backends.interfaces.IRoomHistory`)."""

    maxMessages: int = _setting(100, "nonneg")
    maxAge: int = _setting(300, "nonneg")
    maxTotalBytes: int = _setting(67108864, "posint")


@attrs.frozen
class MetricsConfig:
    """The Prometheus metrics endpoint (docs/metrics.md)."""

    enabled: bool = _setting(False, "bool")
    path: str = _setting("/metrics", "str")
    endpoint: str = _setting("", "str")


@attrs.frozen
class LimitsConfig:
    """Quotas shared by every transport (:mod:`ahtwist.limits`)."""

    maxRooms: int = _setting(10000, "posint")
    maxRoomNameLength: int = _setting(256, "posint")
    maxRoomsPerConnection: int = _setting(100, "posint")
    maxRoomViewMembers: int = _setting(1000, "posint")
    messagesPerSecond: int = _setting(0, "nonneg")
    messageBurst: int = _setting(100, "posint")
    maxActionsInFlight: int = _setting(10000, "posint")
    maxSleepDuration: int = _setting(60000, "nonneg")


@attrs.frozen
class CustomServerConfig:
    """A ``[servers.<name>]`` table naming a user's server (``general.paths.servers``)."""

    name: str
    enabled: bool = True
    endpoints: tuple[str, ...] = ()
    #: the table's other keys, for the server (``Server.options``)
    options: Mapping[str, Any] = _EMPTY


#: the built-in servers' tables; any other ``[servers.<name>]`` is a user's server
BUILTIN_SERVERS = frozenset({"web", "websocket", "socket"})


def _custom_servers(loader: "_Loader", table: Any) -> tuple[dict[str, Any], dict[str, CustomServerConfig]]:
    """Split ``[servers]`` into the built-in tables and users' server tables."""
    if not isinstance(table, Mapping):
        return table, {}
    builtin = {}
    custom = {}
    for name, value in table.items():
        if name in BUILTIN_SERVERS or not isinstance(value, Mapping):
            builtin[name] = value
            continue
        key = f"servers.{name}"
        options = dict(value)
        enabled = options.pop("enabled", True)
        if not isinstance(enabled, bool):
            raise loader.fail(f"{key}.enabled", f"expected true or false, got {_describe(enabled)}")
        endpoints = options.pop("endpoints", [])
        if not isinstance(endpoints, list) or not all(isinstance(e, str) and e for e in endpoints):
            raise loader.fail(f"{key}.endpoints", f"expected a list of endpoint strings, got {_describe(endpoints)}")
        custom[name] = CustomServerConfig(
            name=name,
            enabled=enabled,
            endpoints=tuple(_resolve_endpoint_paths(e, loader) for e in endpoints),
            options=MappingProxyType(options),
        )
    return builtin, custom


@attrs.frozen
class Config:
    """The whole configuration of one node (immutable)."""

    general: General = _table(General)
    servers: Servers = _table(Servers)
    limits: LimitsConfig = _table(LimitsConfig)
    redis: RedisConfig = _table(RedisConfig)
    history: HistoryConfig = _table(HistoryConfig)
    metrics: MetricsConfig = _table(MetricsConfig)
    #: the parsed route table (:class:`ahtwist.web.routes.RouteTable`)
    routes: Any = attrs.field(default=None, metadata={_KIND: "routes"})
    #: ``[servers.<name>]`` tables of users' servers, by name
    custom_servers: Mapping[str, "CustomServerConfig"] = attrs.field(
        default=_EMPTY, metadata={_KIND: "internal"}
    )
    #: the file this was read from ("" for built-in defaults)
    source: str = attrs.field(default="", metadata={_KIND: "internal"})
    #: warnings found while loading (unknown keys), logged at start-up
    warnings: tuple[str, ...] = attrs.field(default=(), metadata={_KIND: "internal"})

    @property
    def web_endpoints(self) -> tuple[str, ...]:
        """The web listeners as Twisted endpoint strings (empty when disabled)."""
        return _endpoints(self.servers.web)

    @property
    def socket_endpoints(self) -> tuple[str, ...]:
        """The socket listeners as Twisted endpoint strings (empty when disabled)."""
        return _endpoints(self.servers.socket)


def _endpoints(server: WebConfig | SocketConfig) -> tuple[str, ...]:
    if not server.enabled:
        return ()
    if server.endpoints:
        return server.endpoints
    ip = server.bindIP
    if ":" in ip:
        kind, ip = "tcp6", ip.replace(":", "\\:")
    else:
        kind = "tcp"
    desc = f"{kind}:{server.port}"
    if ip:
        desc += f":interface={ip}"
    if server.secure:
        desc = "ssl" + desc[len(kind) :] if kind == "tcp" else desc
        key = server.serverOptions.get("key", "")
        cert = server.serverOptions.get("cert", "")
        desc += f":privateKey={quoteStringArgument(key)}:certKey={quoteStringArgument(cert)}"
    return (desc,)


@attrs.frozen
class Overrides:
    """Values from the command line; ``None``/empty means "not given"."""

    web: tuple[str, ...] = ()
    socket: tuple[str, ...] = ()
    public: tuple[str, ...] = ()
    redis: str | None = None
    workers: int | None = None


#: a path starting with this names a folder shipped with ahtwist ("ahtwist:public")
BUNDLED_PREFIX = "ahtwist:"


def bundled_path(*parts: str) -> Path:
    """A file shipped with ahtwist (``etc/ahtwist.toml``, ``public/``).

    In a checkout (or an editable install) it is next to the package; after
    ``pip install .`` it is under ``<prefix>/share/ahtwist``.
    """
    here = Path(__file__).resolve().parent.parent
    if (here / "etc" / "ahtwist.toml").is_file():
        return here.joinpath(*parts)
    import sysconfig

    for scheme in (None, "posix_user"):
        base = sysconfig.get_path("data", scheme) if scheme else sysconfig.get_path("data")
        candidate = Path(base, "share", "ahtwist")
        if (candidate / "etc" / "ahtwist.toml").is_file():
            return candidate.joinpath(*parts)
    return here.joinpath(*parts)


def default_config_path() -> Path:
    return bundled_path("etc", "ahtwist.toml")


# --- loading ---------------------------------------------------------------


class _Loader:
    """Walks a TOML table against the attrs classes above."""

    def __init__(self, source: str, base_dir: Path) -> None:
        self.source = source
        self.base_dir = base_dir
        self.warnings: list[str] = []

    def fail(self, key: str, reason: str) -> ConfigError:
        where = f"{self.source}: " if self.source else ""
        return ConfigError(f"{where}{key}: {reason}")

    def build(self, cls: type, table: Mapping[str, Any], prefix: str) -> Any:
        if not isinstance(table, Mapping):
            raise self.fail(prefix, f"expected a table, got {_describe(table)}")
        fields = {f.name: f for f in attrs.fields(cls)}
        values: dict[str, Any] = {}
        for key, raw in table.items():
            keypath = f"{prefix}.{key}" if prefix else key
            field = fields.get(key)
            kind = field.metadata.get(_KIND) if field is not None else None
            if field is None or kind is None or kind == "internal":
                self.warnings.append(f"unknown config key {keypath!r} ignored")
                continue
            if isinstance(kind, type):
                values[key] = self.build(kind, raw, keypath)
            else:
                values[key] = self.convert(kind, raw, keypath)
        return cls(**values)

    def convert(self, kind: str, raw: Any, key: str) -> Any:
        def expect(ok: bool, what: str) -> None:
            if not ok:
                raise self.fail(key, f"expected {what}, got {_describe(raw)}")

        if kind == "bool":
            expect(isinstance(raw, bool), "true or false")
            return raw
        if kind in ("int", "posint", "nonneg", "port"):
            expect(isinstance(raw, int) and not isinstance(raw, bool), "an integer")
            if kind == "posint" and raw <= 0:
                raise self.fail(key, f"must be greater than 0, got {raw}")
            if kind == "nonneg" and raw < 0:
                raise self.fail(key, f"must be 0 or more, got {raw}")
            if kind == "port" and not 0 <= raw <= 65535:
                raise self.fail(key, f"must be a port number (0-65535), got {raw}")
            return raw
        if kind in ("str", "nonempty"):
            expect(isinstance(raw, str), "a string")
            if kind == "nonempty" and not raw:
                raise self.fail(key, "must not be empty")
            return raw
        if kind == "logLevel":
            if raw not in ("debug", "info", "warn", "error", "critical"):
                raise self.fail(key, f"must be debug, info, warn, error or critical, got {_describe(raw)}")
            return raw
        if kind == "logFormat":
            if raw not in ("text", "json"):
                raise self.fail(key, f'must be "text" or "json", got {_describe(raw)}')
            return raw
        if kind == "rootEndpointType":
            if raw not in ("api", "file"):
                raise self.fail(key, f'must be "api" or "file", got {_describe(raw)}')
            return raw
        if kind == "path":
            expect(isinstance(raw, str), "a string")
            return self.path(raw)
        if kind == "urlpath":
            expect(isinstance(raw, str), "a string")
            if raw and (not raw.startswith("/") or raw == "/" or "?" in raw or "#" in raw):
                raise self.fail(key, f'must be "" or a URL path such as "/healthz", got {raw!r}')
            return raw.rstrip("/")
        if kind == "mounts":
            return self.mounts(raw, key)
        if kind == "networks":
            expect(isinstance(raw, list) and all(isinstance(x, str) for x in raw), "a list of strings")
            from ahtwist.proxies import parse_network

            for item in raw:
                try:
                    parse_network(item)
                except ValueError:
                    raise self.fail(key, f"not an IP address or CIDR network: {item!r}") from None
            return tuple(raw)
        if kind in ("strlist", "pathlist"):
            expect(
                isinstance(raw, list) and all(isinstance(x, str) for x in raw),
                "a list of strings",
            )
            return tuple(self.path(x) for x in raw) if kind == "pathlist" else tuple(raw)
        if kind == "list":
            expect(isinstance(raw, list), "a list")
            return tuple(raw)
        if kind == "rooms":
            if isinstance(raw, Mapping):
                return tuple(raw)
            expect(
                isinstance(raw, list) and all(isinstance(x, str) and x for x in raw),
                "a table or a list of room names",
            )
            return tuple(raw)
        if kind in ("map", "headers", "pathmap"):
            expect(isinstance(raw, Mapping), "a table")
            if kind == "headers":
                for name, value in raw.items():
                    if not isinstance(value, str):
                        raise self.fail(f"{key}.{name}", f"expected a string, got {_describe(value)}")
                    if any(c in name + value for c in "\r\n\0") or not name:
                        raise self.fail(f"{key}.{name}", "invalid header name or value")
                merged = dict(_DEFAULT_HEADERS)
                merged.update(raw)
                return MappingProxyType(merged)
            if kind == "pathmap":
                out = {}
                for name, value in raw.items():
                    if not isinstance(value, str):
                        raise self.fail(f"{key}.{name}", f"expected a string, got {_describe(value)}")
                    out[name] = self.path(value)
                return MappingProxyType(out)
            return MappingProxyType(dict(raw))
        raise AssertionError(kind)  # pragma: no cover

    def mounts(self, raw: Any, key: str) -> tuple[Mount, ...]:
        """``[{path = "/hooks", app = "hooks.py:app"}, ...]``; a file path in
        ``app`` resolves against the config file's directory."""
        if not isinstance(raw, list) or not all(isinstance(m, Mapping) for m in raw):
            raise self.fail(key, f"expected a list of tables, got {_describe(raw)}")
        out = []
        for i, table in enumerate(raw):
            where = f"{key}[{i}]"
            for name in table:
                if name not in ("path", "app"):
                    self.warnings.append(f"unknown config key {f'{where}.{name}'!r} ignored")
            path, app = table.get("path"), table.get("app")
            if not isinstance(path, str) or not path.startswith("/") or path.rstrip("/") == "":
                raise self.fail(f"{where}.path", f'must be a URL path prefix such as "/hooks", got {_describe(path)}')
            if not isinstance(app, str) or ":" not in app:
                raise self.fail(f"{where}.app", f'must be "file.py:name" or "module:name", got {_describe(app)}')
            target, _, attr = app.rpartition(":")
            if target.endswith(".py"):
                target = self.path(target)
            out.append(Mount(path=path.rstrip("/"), app=f"{target}:{attr}"))
        return tuple(out)

    def path(self, value: str) -> str:
        if not value:
            return value
        if value.startswith(BUNDLED_PREFIX):
            # "ahtwist:public": a folder shipped with ahtwist, wherever it is installed
            return str(bundled_path(*value[len(BUNDLED_PREFIX) :].split("/")))
        return str((self.base_dir / os.path.expanduser(value)).resolve())


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file: {e.strerror or e}") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Overrides | None = None,
    cwd: str | None = None,
) -> Config:
    """Build the :class:`Config` for one node.

    ``path`` None means the bundled ``etc/ahtwist.toml``.  ``environ`` defaults
    to ``os.environ``; pass ``{}`` in tests for isolation.
    """
    environ = os.environ if environ is None else environ
    overrides = overrides or Overrides()
    cwd_path = Path(cwd or os.getcwd())
    if path is None:
        file = default_config_path()
    else:
        file = (cwd_path / os.fspath(path)).resolve()
    table = _read_toml(file) if path is not None or file.is_file() else {}
    loader = _Loader(str(file), file.parent)

    table = dict(table)
    raw_routes = table.pop("routes", None)
    custom_servers: dict[str, CustomServerConfig] = {}
    if "servers" in table:
        table["servers"], custom_servers = _custom_servers(loader, table["servers"])
    config = loader.build(Config, table, "")

    # environment
    env_loader = _Loader("environment", cwd_path)
    servers = config.servers
    web = servers.web
    if environ.get("PORT"):
        port = environ["PORT"]
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            raise env_loader.fail("PORT", f"must be a port number, got {port!r}")
        web = attrs.evolve(web, port=int(port))
    if "ALLOWED_HOSTS" in environ:
        hosts = tuple(h.strip() for h in environ["ALLOWED_HOSTS"].split(",") if h.strip())
        web = attrs.evolve(web, allowedRequestHosts=hosts)
    redis = config.redis
    if environ.get("REDIS_URL"):
        redis = attrs.evolve(redis, url=environ["REDIS_URL"])

    # command line
    cli = _Loader("command line", cwd_path)
    socket_cfg = servers.socket
    if overrides.web:
        web = _apply_endpoints(web, overrides.web)
    if overrides.socket:
        socket_cfg = _apply_endpoints(socket_cfg, overrides.socket)
    general = config.general
    if overrides.public:
        general = attrs.evolve(
            general, paths=attrs.evolve(general.paths, public=tuple(cli.path(p) for p in overrides.public))
        )
    if overrides.redis is not None:
        redis = attrs.evolve(redis, url=overrides.redis)
    if overrides.workers is not None:
        if overrides.workers < 1:
            raise cli.fail("--workers", f"must be greater than 0, got {overrides.workers}")
        general = attrs.evolve(general, workers=overrides.workers)
    if redis.url:
        from ahtwist.backends.redis_url import RedisURLError, parse_redis_url

        try:
            parse_redis_url(redis.url)
        except RedisURLError as e:
            raise ConfigError(f"redis.url: {e}") from None

    # derived defaults
    general = attrs.evolve(
        general,
        id=general.id or f"{socket.gethostname()}-{os.getpid()}",
        apiVersion=general.apiVersion or __version__,
        paths=attrs.evolve(
            general.paths,
            public=general.paths.public or (str(bundled_path("public")),),
        ),
    )
    headers = {
        name: general.serverName if value is None else value
        for name, value in web.httpHeaders.items()
    }
    form = web.formOptions
    web = attrs.evolve(
        web,
        httpHeaders=MappingProxyType({k: v for k, v in headers.items() if v}),
        directoryFileType=web.directoryFileType or general.directoryFileType,
        formOptions=attrs.evolve(form, uploadDir=form.uploadDir or tempfile.gettempdir()),
        endpoints=tuple(_resolve_endpoint_paths(e, loader) for e in web.endpoints)
        if not overrides.web
        else web.endpoints,
    )
    if not overrides.socket:
        socket_cfg = attrs.evolve(
            socket_cfg,
            endpoints=tuple(_resolve_endpoint_paths(e, loader) for e in socket_cfg.endpoints),
        )
    _check_url_prefix(loader, "servers.web.urlPathForActions", web.urlPathForActions)
    _check_url_prefix(loader, "servers.web.urlPathForFiles", web.urlPathForFiles)
    if not servers.websocket.path.startswith("/") or servers.websocket.path == "/":
        raise loader.fail("servers.websocket.path", 'must start with "/" and name a path')
    primus_path = servers.websocket.primusPath
    if primus_path and (not primus_path.startswith("/") or primus_path == "/" or "?" in primus_path):
        raise loader.fail("servers.websocket.primusPath", 'must be "" or start with "/" and name a path')
    if primus_path == servers.websocket.path:
        raise loader.fail("servers.websocket.primusPath", f"{primus_path!r} is already servers.websocket.path")
    _check_documentation_paths(loader, web, servers.websocket)
    metrics = config.metrics
    if metrics.endpoint:
        metrics = attrs.evolve(metrics, endpoint=_resolve_endpoint_paths(metrics.endpoint, loader))
    _check_metrics(loader, metrics, web, servers.websocket)

    from ahtwist.web.routes import parse_routes

    routes = parse_routes(raw_routes, loader)
    return attrs.evolve(
        config,
        general=general,
        servers=attrs.evolve(servers, web=web, socket=socket_cfg),
        redis=redis,
        metrics=metrics,
        routes=routes,
        custom_servers=MappingProxyType(custom_servers),
        source=str(file),
        warnings=tuple(loader.warnings),
    )


def _check_documentation_paths(loader: _Loader, web: WebConfig, websocket: WebsocketConfig) -> None:
    """The OpenAPI and /docs paths: absolute, distinct, and /docs needs the document."""
    taken = {websocket.path: "servers.websocket.path"} if websocket.enabled else {}
    if websocket.enabled and websocket.primusPath:
        taken[websocket.primusPath] = "servers.websocket.primusPath"
    for key, options in (("openapi", web.openapi), ("docs", web.docs)):
        if not options.enabled:
            continue
        name = f"servers.web.{key}.path"
        path = options.path
        if not path.startswith("/") or path == "/" or "?" in path or "#" in path:
            raise loader.fail(name, 'must start with "/" and name a path (no ? or #)')
        if path in taken:
            raise loader.fail(name, f"{path!r} is already {taken[path]}")
        taken[path] = name
    if web.docs.enabled and not web.openapi.enabled:
        raise loader.fail(
            "servers.web.docs.enabled", "the docs page needs servers.web.openapi.enabled = true"
        )


def _check_metrics(loader: _Loader, metrics: MetricsConfig, web: WebConfig, websocket: WebsocketConfig) -> None:
    """``[metrics]``: an absolute path; on the web port (no ``endpoint``) one
    that no other path of the site already serves."""
    if not metrics.enabled:
        return
    path = metrics.path
    if not path.startswith("/") or path == "/" or "?" in path or "#" in path:
        raise loader.fail("metrics.path", f'must start with "/" and name a path (no ? or #), got {path!r}')
    if metrics.endpoint:
        return
    if not web.enabled:
        raise loader.fail(
            "metrics.enabled", "the web server is off: set metrics.endpoint to serve the metrics on their own"
        )
    first = path.strip("/").split("/")[0]
    owned = {
        web.urlPathForActions: "servers.web.urlPathForActions",
        web.urlPathForFiles: "servers.web.urlPathForFiles",
        "file": "the file action's path",
    }
    if first in owned:
        raise loader.fail("metrics.path", f"{path!r} is under /{first}, which is {owned[first]}")
    taken = {
        websocket.path: "servers.websocket.path",
        websocket.primusPath: "servers.websocket.primusPath",
        web.health.livenessPath: "servers.web.health.livenessPath",
        web.health.readinessPath: "servers.web.health.readinessPath",
        web.openapi.path: "servers.web.openapi.path",
        web.docs.path: "servers.web.docs.path",
    }
    taken.update({mount.path: f"a servers.web.mounts path ({mount.app})" for mount in web.mounts})
    for other, key in taken.items():
        if other and (path == other or path.startswith(other + "/") or other.startswith(path + "/")):
            raise loader.fail("metrics.path", f"{path!r} collides with {other!r} ({key})")


def _check_url_prefix(loader: _Loader, key: str, value: str) -> None:
    if "?" in value or "#" in value:
        raise loader.fail(key, "must be a URL path without ? or #")


def _apply_endpoints(server: Any, given: Sequence[str]) -> Any:
    if list(given) == ["none"]:
        return attrs.evolve(server, enabled=False, endpoints=())
    return attrs.evolve(server, enabled=True, endpoints=tuple(e for e in given if e != "none"))


_ENDPOINT_PATH_ARGS = ("privateKey", "certKey", "extraCertChain", "dhParameters", "caCertsDir")


def _resolve_endpoint_paths(desc: str, loader: _Loader) -> str:
    """Make file arguments of an endpoint string from the config file absolute."""
    out = []
    for part in _split_endpoint(desc):
        name, sep, value = part.partition("=")
        if sep and name in _ENDPOINT_PATH_ARGS and value and not value.startswith("/"):
            part = f"{name}={quoteStringArgument(loader.path(value.replace(chr(92), '')))}"
        out.append(part)
    return ":".join(out)


def _split_endpoint(desc: str) -> list[str]:
    parts, current, escaped = [], "", False
    for ch in desc:
        if escaped:
            current += "\\" + ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ":":
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts
