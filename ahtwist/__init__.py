"""ahtwist: an ActionHero-compatible API server on Twisted.

One set of actions is served over HTTP(S), WebSockets and a line-oriented
TCP/TLS socket at once; connections from every transport meet in shared chat
rooms; several nodes share state through Redis.  Run it with
``twistd -n ahtwist``.

The public API for writing actions, middleware, initializers and servers is re-exported here.
"""

from ahtwist._version import __version__
from ahtwist.actions.action import Action, Input, json_schema
from ahtwist.actions.data import ActionData
from ahtwist.actions.middleware import ActionMiddleware, ChatMiddleware, ConnectionMiddleware
from ahtwist.connection import Connection, ConnectionRaw
from ahtwist.errors import ActionError, RoomError
from ahtwist.initializers import Initializer
from ahtwist.servers.base import Server

__all__ = [
    "Action",
    "ActionData",
    "ActionError",
    "ActionMiddleware",
    "ChatMiddleware",
    "Connection",
    "ConnectionMiddleware",
    "ConnectionRaw",
    "Initializer",
    "Input",
    "RoomError",
    "Server",
    "__version__",
    "json_schema",
]
