"""Load users' servers from the folders in ``general.paths.servers``.

Every ``*.py`` file (sorted, ``_``/``.`` names skipped) is imported the way
action files are; each :class:`~ahtwist.servers.base.Server` subclass defined
in it is known by its ``config_name`` (default: its ``type``).  A ``[servers.<name>]``
config table starts one; a table naming no known server stops start-up.
"""

from collections.abc import Iterable, Mapping
from typing import Any

from twisted.logger import Logger

from ahtwist.actions.loader import defined_in, user_modules
from ahtwist.errors import ConfigError
from ahtwist.servers.base import Server

log = Logger(namespace="ahtwist.servers")


def server_name(cls: type[Server]) -> str:
    """The ``[servers.<name>]`` a server class answers to."""
    return cls.config_name or cls.type


def load_servers(folders: Iterable[str]) -> dict[str, type[Server]]:
    """Server classes defined in the folders' files, by name."""
    found: dict[str, type[Server]] = {}
    missing: list[str] = []
    for file, module in user_modules(folders, missing):
        for cls in defined_in(module, Server):
            name = server_name(cls)
            if name in found:
                raise ConfigError(f"{file}: server {name!r} is defined twice")
            found[name] = cls
    for folder in missing:
        log.warn("servers folder {folder} does not exist; skipped", folder=folder)
    return found


def build_custom_servers(node: Any, reactor: Any, config: Any, known: Mapping[str, type[Server]]) -> list[Server]:
    """One server per enabled ``[servers.<name>]`` table."""
    servers = []
    for name, entry in config.custom_servers.items():
        cls = known.get(name)
        if cls is None:
            where = f"{config.source}: " if config.source else ""
            raise ConfigError(f"{where}servers.{name}: no server named {name!r} in general.paths.servers")
        if entry.enabled:
            servers.append(cls(node, reactor, entry.endpoints, entry.options))
    return servers
