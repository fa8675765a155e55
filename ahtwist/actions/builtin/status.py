"""status: node health, identity and the stats block."""

from typing import Any

from ahtwist._version import __version__
from ahtwist.actions.action import Action
from ahtwist.counters import SOCKET_REQUESTS, WEB_REQUESTS, WEBSOCKET_REQUESTS

MAX_MEMORY_MB = 200
MAX_EVENT_LOOP_DELAY_MS = 10

_process: Any = None


def _rss() -> int:
    """This process's resident set size in bytes (psutil, imported by the
    first ``status`` request: ~0.7 MiB a server never asked for it keeps)."""
    global _process
    if _process is None:
        import psutil  # noqa: PLC0415 -- see the docstring

        _process = psutil.Process()
    return int(_process.memory_info().rss)


#: connection types with their own block in ``stats``
_BUILTIN_TYPES = frozenset({"web", "socket", "websocket"})


class Status(Action):
    name = "status"
    description = "I will return some basic information about the API"
    output_example = {"id": "myhost-4242", "ahtwistVersion": __version__, "uptime": 10469}

    async def run(self, data):
        node = data.node
        general = node.config.general
        rss = _rss()
        memory_mb = round(rss / 1024 / 1024, 2)
        delay = node.event_loop_delay
        problems = []
        node_status = "Node Healthy"
        if memory_mb > MAX_MEMORY_MB:
            node_status = "Unhealthy"
            problems.append(f"Using more than {MAX_MEMORY_MB} MB of RAM/HEAP")
        if delay > MAX_EVENT_LOOP_DELAY_MS:
            node_status = "Node Unhealthy"
            problems.append(f"EventLoop Blocked for more than {MAX_EVENT_LOOP_DELAY_MS} ms")
        for problem in node.health_problems():
            node_status = "Node Unhealthy"
            problems.append(problem)

        totals = await node.stats.global_counts()
        uptime = node.uptime_ms()
        # users' servers (README "Writing a server"): one block per connection type seen
        custom = {
            kind: {
                "numberOfLocalActiveClients": active,
                "numberOfLocalRequests": node.stats.local(f"{kind}:requests"),
                "numberOfGlobalRequests": totals.get(f"{kind}:requests", 0),
            }
            for kind, active in node.active_by_type.items()
            if kind not in _BUILTIN_TYPES
        }
        data.response.update(
            {
                "nodeStatus": node_status,
                "problems": problems,
                "id": node.id,
                "ahtwistVersion": __version__,
                "uptime": uptime,
                "name": general.serverName,
                "description": general.description,
                "version": general.apiVersion,
                "consumedMemoryMB": memory_mb,
                "eventLoopDelay": delay,
                "stats": {
                    "id": node.id,
                    "uptimeSeconds": round(uptime / 1000, 3),
                    "memoryConsumption": rss,
                    "cache": {"numberOfObjects": await node.cache.size()},
                    "peers": await node.peers.peers(),
                    "webServer": {
                        "numberOfLocalWebRequests": node.stats.local(WEB_REQUESTS),
                        "numberOfGlobalWebRequests": totals.get(WEB_REQUESTS, 0),
                    },
                    "socketServer": {
                        "numberOfLocalSocketRequests": node.stats.local(SOCKET_REQUESTS),
                        "numberOfGlobalSocketRequests": totals.get(SOCKET_REQUESTS, 0),
                        "numberOfLocalActiveSocketClients": node.active_by_type["socket"],
                    },
                    "webSocketServer": {
                        "numberOfGlobalWebSocketRequests": totals.get(WEBSOCKET_REQUESTS, 0),
                        "numberOfLocalActiveWebSocketClients": node.active_by_type["websocket"],
                    },
                },
            }
        )
        if custom:
            data.response["stats"]["customServers"] = custom
