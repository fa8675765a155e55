"""Start-up lists what it loaded: one info line per kind.

Actions (``name@version``), middleware (action, connection and chat), the
initializers, the servers with their listeners, the routes and the mounted
HTTP apps -- so an operator sees from the log what this process serves.
"""

from typing import Any

from twisted.logger import Logger

from ahtwist.actions.action import render_version

log = Logger(namespace="ahtwist.service")


def inventory(node: Any, initializers: Any = None, servers: Any = (), mounts: Any = None) -> dict[str, list[str]]:
    """What the node runs, by kind, each a list of short names."""
    registry = node.registry
    actions = [
        f"{name}@{render_version(action.version)}"
        for name in sorted(registry.versions)
        for _, action in sorted(registry.versions[name].items())
    ]
    middleware = (
        [f"action:{name}" for name in registry.middleware]
        + [f"connection:{m.name}" for m in node.connection_middleware]
        + [f"chat:{m.name}" for m in node.rooms.middleware]
    )
    routes = [
        f"{verb} {route.path} -> {route.action if route.action is not None else 'dir ' + str(route.dir)}"
        for verb, table in (node.config.routes.by_verb.items() if node.config.routes else ())
        for route in table
    ]
    return {
        "actions": actions,
        "middleware": middleware,
        "initializers": [i.name for i in (initializers.all if initializers is not None else ())],
        "servers": list(servers),
        "routes": routes,
        "mounts": [f"{m.path} ({m.name})" for m in (mounts.mounts if mounts is not None else ())],
    }


def log_inventory(found: dict[str, list[str]]) -> None:
    for kind, names in found.items():
        log.info(
            "loaded {count} {kind}: {names}",
            count=len(names),
            kind=kind,
            names=", ".join(names) if names else "none",
        )
