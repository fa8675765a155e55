"""HTTP endpoints that are not actions: Klein apps mounted at path prefixes.

The action API stays plain ``twisted.web`` (a bare Klein route measured at
about half its throughput); everything else on HTTP that is not an action, a
route, a static file or the websocket -- webhooks, ``/healthz``, OpenAPI --
is a Klein app (or any ``IResource``) in a :class:`MountTable`.

The web dispatch asks the table only for paths outside the action prefix,
with one dict lookup on the first path segment (about 0.3 µs a request).
Prefixes may not shadow the paths ahtwist owns (``/api``, ``/public``,
``/file``, the websocket path); a static file at the site root wins over a
mount with the same name.

A mounted target is one of:

* a ``klein.Klein`` instance -- handlers get the request (``request.node`` is
  the node);
* a class -- instantiated as ``cls(node)``; its ``app`` attribute (a Klein
  app bound to the instance, as in Klein's "non-global state" example) is
  mounted, so handlers are methods that reach ``self.node``;
* any other callable -- called as ``f(node)``; it returns one of these;
* an ``IResource``.

Klein is imported only here, lazily: it touches the reactor at import.
"""

import importlib
import importlib.util
import sys
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import attrs
from twisted.logger import Logger
from twisted.web.resource import IResource
from zope.interface import implementer

from ahtwist.errors import ConfigError

log = Logger(namespace="ahtwist.web")


@attrs.define(eq=False)
class MountedApp:
    """One mount: ``prefix`` (segments), the resource serving it, and whether
    the prefix is stripped (the app sees paths below it) or kept (the app's
    routes name full paths, as the built-in health routes do)."""

    prefix: tuple[bytes, ...]
    resource: Any
    name: str
    strip: bool = True
    #: the prefix as a URL path (``b"/api/openapi.json"``), for :meth:`MountTable.match`
    path_bytes: bytes = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.path_bytes = b"/" + b"/".join(self.prefix)

    @property
    def path(self) -> str:
        return self.path_bytes.decode()


class MountTable:
    """Mounted apps by the first segment of their prefix (see the module docstring)."""

    def __init__(self, node: Any, reserved: tuple[str, ...] = (), static_first: bool = False) -> None:
        self.node = node
        #: a static file at the site root wins over a mount (rootEndpointType "file")
        self.static_first = static_first
        #: first path segments ahtwist owns (``api``, ``public``, ``file``, ``ws``)
        self.reserved = frozenset(r.strip("/").split("/")[0] for r in reserved if r.strip("/"))
        self.by_segment: dict[bytes, list[MountedApp]] = {}

    def __bool__(self) -> bool:
        return bool(self.by_segment)

    @property
    def mounts(self) -> list[MountedApp]:
        return [m for group in self.by_segment.values() for m in group]

    def add(
        self, path: str, app: Any, *, name: str = "", strip: bool = True, owned: bool = False
    ) -> MountedApp:
        """Mount ``app`` (see the module docstring) at the URL prefix ``path``.

        ``strip=False`` leaves the prefix in the path the app routes on.
        ``owned=True`` is for ahtwist's own endpoints that live under a
        prefix it owns (the OpenAPI document at ``/api/openapi.json``): the
        mount is then matched before the action API.  Raises
        :class:`ConfigError` for a prefix ahtwist owns or one already mounted."""
        parts = tuple(p for p in path.strip("/").split("/") if p)
        if not parts:
            raise ConfigError(f"mount {path!r}: the site root cannot be mounted")
        if parts[0] in self.reserved and not owned:
            raise ConfigError(f"mount {path!r}: /{parts[0]} belongs to ahtwist")
        prefix = tuple(p.encode() for p in parts)
        group = self.by_segment.setdefault(prefix[0], [])
        if any(m.prefix == prefix for m in group):
            raise ConfigError(f"mount {path!r} is defined twice")
        mounted = MountedApp(prefix, as_resource(app, self.node), name or path, strip)
        group.append(mounted)
        group.sort(key=lambda m: -len(m.prefix))  # longest prefix first
        return mounted

    def match(self, path: bytes) -> tuple[MountedApp, list[bytes]] | None:
        """The mount serving ``path`` and the path's segments, or None
        (every request asks: one dict lookup on the first segment)."""
        end = path.find(b"/", 1)
        group = self.by_segment.get(path[1:end] if end > 0 else path[1:])
        if group is None:
            return None
        for mounted in group:
            # the prefix, then the end of the path or a "/" (b"/" is 47); a
            # path under the same first segment but another mount (every
            # /api/<action> beside /api/openapi.json) costs no split
            prefix = mounted.path_bytes
            if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == 47):
                return mounted, path[1:].split(b"/")
        return None

    def dispatch(self, request: Any) -> bool:
        """Serve a request whose path matched a mount (``request.mount``);
        False when a static file at the site root has that path (static
        files keep priority) and the web server serves it."""
        mounted, segments = request.mount
        if self.static_first and self.node.files.resolve(
            [s.decode("latin-1") for s in segments], decode=True
        ):
            return False
        self.serve(request, mounted, segments)
        return True

    def serve(self, request: Any, mounted: MountedApp, segments: list[bytes]) -> None:
        """Render ``request`` with the mounted resource (twisted.web's
        contract: bytes, or NOT_DONE_YET and the resource finishes)."""
        from twisted.web.server import NOT_DONE_YET

        request.node = self.node
        n = len(mounted.prefix) if mounted.strip else 0
        request.prepath = segments[:n]
        request.postpath = segments[n:]
        body = getattr(request, "body", None)
        request.content = BytesIO(body.raw_body if body is not None else b"")
        try:
            result = mounted.resource.render(request)
        except Exception:
            log.failure("mounted app {name} failed", name=mounted.name)
            if not request.startedWriting:
                request.setResponseCode(500)
                request.setHeader(b"content-type", b"text/plain; charset=utf-8")
                request.write(b"internal server error")
            request.finish()
            return
        if result is NOT_DONE_YET:
            return
        if isinstance(result, bytes) and result:
            request.write(result)
        request.finish()


@implementer(IResource)
class LazyResource:
    """A mounted resource made on its first request: ``make()`` returns a
    mount target (see the module docstring).  The built-in health and
    OpenAPI routes are Klein apps; made lazily, a server that is never asked
    for them does not import Klein and werkzeug (~3.5 MiB of RSS); the first
    request to one of them imports them (~0.1 s, once)."""

    isLeaf = True

    def __init__(self, make: Callable[[], Any], node: Any) -> None:
        self._make: Callable[[], Any] | None = make
        self._node = node
        self._resource: Any = None

    def resource(self) -> Any:
        if self._make is not None:
            self._resource = as_resource(self._make(), self._node)
            self._make = None
        return self._resource

    def render(self, request: Any) -> Any:
        return self.resource().render(request)

    def getChildWithDefault(self, name: bytes, request: Any) -> Any:
        return self.resource().getChildWithDefault(name, request)

    def putChild(self, path: bytes, child: Any) -> None:
        self.resource().putChild(path, child)


def as_resource(app: Any, node: Any) -> Any:
    """A twisted.web resource for a mount target (see the module docstring)."""
    if IResource.providedBy(app):
        return app
    from klein import Klein  # noqa: PLC0415 -- imports the reactor; twistd has chosen it by now

    if isinstance(app, Klein):
        return app.resource()
    if isinstance(app, type):
        instance = app(node)
        bound = getattr(instance, "app", None)
        if isinstance(bound, Klein):
            return bound.resource()
        return as_resource(instance, node)
    if callable(app):
        return as_resource(app(node), node)
    bound = getattr(app, "app", None)
    if isinstance(bound, Klein):
        return bound.resource()
    raise ConfigError(f"{app!r} is not a Klein app, an app class, a factory or a resource")


def _health_app(node: Any) -> Any:
    from ahtwist.web.health import HealthApp  # noqa: PLC0415 -- imports Klein

    return HealthApp(node).app


def _metrics_app(node: Any) -> Any:
    from ahtwist.web.metrics import MetricsApp  # noqa: PLC0415 -- imports Klein

    return MetricsApp(node).app


def load_target(spec: str) -> Any:
    """``/abs/file.py:name`` or ``package.module:name`` -> the object."""
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py"):
        file = Path(target)
        if not file.is_file():
            raise ConfigError(f"mount app {spec!r}: {file} does not exist")
        name = f"ahtwist_user.mounts.{file.stem}_{abs(hash(str(file))):x}"
        module = sys.modules.get(name)
        if module is None:
            module_spec = importlib.util.spec_from_file_location(name, file)
            if module_spec is None or module_spec.loader is None:
                raise ConfigError(f"mount app {spec!r}: cannot be imported")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            try:
                module_spec.loader.exec_module(module)
            except Exception as e:
                sys.modules.pop(name, None)
                raise ConfigError(f"mount app {spec!r}: {type(e).__name__}: {e}") from None
    else:
        try:
            module = importlib.import_module(target)
        except Exception as e:
            raise ConfigError(f"mount app {spec!r}: {type(e).__name__}: {e}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"mount app {spec!r}: no {attr!r} in {target}") from None


def mount_table(node: Any) -> MountTable:
    """A node's mount table: ahtwist's own prefixes reserved, filled from the config."""
    config = node.config
    web = config.servers.web
    reserved = (web.urlPathForActions, web.urlPathForFiles, "file", config.servers.websocket.path)
    table = MountTable(node, reserved, static_first=web.rootEndpointType == "file")
    install_mounts(table, node)
    return table


def install_mounts(table: MountTable, node: Any) -> None:
    """Fill a node's mount table: the built-in health routes, the OpenAPI
    document and its /docs page (unless switched off), the metrics (when on
    and not on an endpoint of their own) and every
    ``[[servers.web.mounts]]`` entry."""
    web = node.config.servers.web
    if web.health.enabled and (web.health.livenessPath or web.health.readinessPath):
        health = LazyResource(lambda: _health_app(node), node)
        for path in (web.health.livenessPath, web.health.readinessPath):
            if path:
                table.add(path, health, name=f"health {path}", strip=False)
    if web.openapi.enabled:
        from ahtwist.apidocs import for_node  # noqa: PLC0415 -- only when enabled

        # built once, here: the web server is made after every action is
        # registered; its Klein app is made on the first request
        docs = for_node(node)
        openapi = LazyResource(docs.klein_app, node)
        table.add(web.openapi.path, openapi, name="openapi", strip=False, owned=True)
        if web.docs.enabled:
            table.add(web.docs.path, openapi, name="docs", strip=False, owned=True)
    metrics = node.config.metrics
    if metrics.enabled and not metrics.endpoint:
        table.add(metrics.path, LazyResource(lambda: _metrics_app(node), node), name="metrics", strip=False)
    for mount in web.mounts:
        table.add(mount.path, load_target(mount.app), name=mount.app.rpartition("/")[2])
