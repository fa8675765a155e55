"""Connections: the seam between transports and the core.

Every transport (web, websocket, socket) makes one :class:`Connection` per
client (web: per request) and gives it an :class:`IConnectionTransport` the
core pushes through.  Rooms, actions and middleware only ever see the
:class:`Connection`; they never know which transport is behind it.
"""

from collections.abc import Mapping
from typing import Any

import attrs
from zope.interface import Attribute, Interface, implementer

from ahtwist.ids import new_id
from ahtwist.servers.peer import peer_certificate


class _Empty(dict[str, Any]):
    """An empty dict that stays empty (it is shared)."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("this mapping is shared and read-only")

    __setitem__ = __delitem__ = _refuse
    setdefault = update = pop = popitem = clear = __ior__ = _refuse  # type: ignore[assignment]


#: the headers, cookies and query of a connection that had no handshake
#: (socket clients): one empty, read-only dict shared by all of them
EMPTY: Mapping[str, Any] = _Empty()

#: ActionHero's spellings of connection types, accepted wherever a type is named
TYPE_ALIASES = {"webSocket": "websocket"}


def canonical_type(name: str) -> str:
    """``webSocket`` (ActionHero's name) -> ``websocket``; others unchanged."""
    return TYPE_ALIASES.get(name, name)


def type_names(names: Any) -> frozenset[str]:
    """A set of connection type names with both spellings of each alias."""
    out = set()
    for name in names:
        out.add(name)
        out.add(canonical_type(name))
    return frozenset(out)


@attrs.frozen
class ConnectionRaw:
    """``connection.raw`` of a long-lived connection: what its handshake said.

    ``headers`` (lower-case names) ``cookies`` and ``query`` come from the
    websocket upgrade request (on the socket, and a websocket's when the
    request had none: :data:`EMPTY`, one shared, read-only empty dict);
    ``secure`` is True over
    TLS; :attr:`peer_certificate` is the client's certificate (a
    ``cryptography`` ``x509.Certificate``) when it presented one.
    """

    headers: Mapping[str, str] = attrs.Factory(dict)
    cookies: Mapping[str, str] = attrs.Factory(dict)
    query: Mapping[str, Any] = attrs.Factory(dict)
    secure: bool = False
    #: the connection's TCP/TLS transport (the certificate is read from it)
    transport: Any = attrs.field(default=None, repr=False, eq=False)

    @property
    def peer_certificate(self) -> Any:
        """Read when asked: a TLS handshake may finish after the connection
        was made (the socket's connection exists from the first byte)."""
        return peer_certificate(self.transport)


#: ``connection.raw`` of every client with no handshake and no TLS (socket
#: clients over TCP or a unix socket): one immutable object shared by all
NO_HANDSHAKE = ConnectionRaw(EMPTY, EMPTY, EMPTY)


class IConnectionTransport(Interface):
    """What a transport does for the core (one provider per connection)."""

    def send_message(message: dict[str, Any]) -> None:
        """Deliver one message (socket: a JSON line; websocket: a frame)."""

    def send_file(path: str) -> Any:
        """Send a static file through the containment resolver."""

    def close() -> None:
        """Say goodbye if the transport has one, then close."""


class IConnection(Interface):
    id = Attribute("unique id")
    type = Attribute("'web', 'websocket' or 'socket'")
    fingerprint = Attribute("stable client id (web cookie) or the id")
    rooms = Attribute("joined rooms, in join order (a Membership; read-only: join through node.rooms)")
    params = Attribute("params (sticky on the socket)")

    def send_message(message: dict[str, Any]) -> None:
        """Push a message to the client."""

    def send_file(path: str) -> Any:
        """Push a file to the client."""

    def destroy() -> None:
        """Close the connection from the server side."""


class Membership(dict[str, None]):
    """The rooms a connection is in: a set that remembers join order.

    Joining, leaving and "is it a member" are O(1) (a connection in many
    rooms once made each of these a list scan).  A dict underneath (keys
    only), so making one, ``len`` and ``in`` cost what a dict's do: every web
    request makes a connection.  It compares equal to a list or tuple of the
    same rooms in the same order.
    """

    __slots__ = ()

    def add(self, room: str) -> None:
        self[room] = None

    def discard(self, room: str) -> None:
        self.pop(room, None)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (Membership, list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = None

    def __repr__(self) -> str:
        return f"Membership({list(self)!r})"


class _NoRooms(Membership):
    """The rooms of a connection that is in none: one empty Membership shared
    by all of them, so it refuses changes (rooms are joined through
    ``node.rooms``, which gives the connection a Membership of its own)."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("join and leave rooms through node.rooms")

    __setitem__ = __delitem__ = _refuse
    add = discard = setdefault = update = pop = popitem = clear = __ior__ = _refuse  # type: ignore[assignment]


#: ``connection.rooms`` while the connection is in no room
NO_ROOMS: Membership = _NoRooms()


@implementer(IConnection)
class Connection:
    """One client of any transport (docs/python-api.md, 'Connections')."""

    __slots__ = (
        "id",
        "type",
        "remote_ip",
        "remote_port",
        "fingerprint",
        "_params",
        "rooms",
        "pending_actions",
        "total_actions",
        "message_count",
        "connected_at",
        "can_chat",
        "raw",
        "bucket",
        "waiting",
        "transport",
        "destroyed",
        "node",
        "_session",
        "__weakref__",
    )

    #: web: the path's extension and the route that matched (slots of
    #: :class:`~ahtwist.web.api.WebConnection`); None on other transports
    extension: str | None = None
    matched_route: Any = None

    def __init__(
        self,
        type: str,
        remote_ip: str,
        remote_port: int,
        connected_at: int,
        transport: Any = None,
        id: str | None = None,
        fingerprint: str | None = None,
        node: Any = None,
    ) -> None:
        self.id = id or new_id()
        self.type = type if type != "webSocket" else "websocket"  # ActionHero's spelling
        self.remote_ip = remote_ip
        self.remote_port = remote_port
        self.fingerprint = fingerprint or self.id
        #: the params, made at the first use (:attr:`params`): a transport's hot
        #: path may read this directly (None: nothing was ever set)
        self._params: dict[str, Any] | None = None
        #: joined rooms: :data:`NO_ROOMS` until the first join (:meth:`joined`)
        self.rooms: Membership = NO_ROOMS
        self.pending_actions = 0
        self.total_actions = 0
        self.message_count = 0
        self.connected_at = connected_at
        self.can_chat = type != "web"
        #: the handshake: headers, cookies, query, secure, peer_certificate
        #: (web: :class:`~ahtwist.web.api.WebRaw`; others: :class:`ConnectionRaw`)
        self.raw: Any = None
        #: the message-rate TokenBucket (None: no rate limit)
        self.bucket: Any = None
        #: Deferreds of this connection's actions still running (cancelled
        #: when it goes away, so they stop holding it)
        self.waiting: set[Any] | None = None
        self.transport = transport
        self.destroyed = False
        self.node = node
        self._session: dict[str, Any] | None = None

    @property
    def params(self) -> dict[str, Any]:
        """The connection's params (docs/python-api.md, 'Connections'): an
        idle connection holds none until something reads or sets them."""
        params = self._params
        if params is None:
            params = self._params = {}
        return params

    @params.setter
    def params(self, value: dict[str, Any]) -> None:
        self._params = value

    def joined(self, room: str) -> None:
        """Record a join in :attr:`rooms` (the room service calls it)."""
        rooms = self.rooms
        if rooms is NO_ROOMS:
            rooms = self.rooms = Membership()
        rooms.add(room)

    def left(self, room: str) -> None:
        """Record a leave in :attr:`rooms`; out of the last room, the
        connection holds the shared :data:`NO_ROOMS` again."""
        rooms = self.rooms
        if room in rooms:
            if len(rooms) == 1:
                self.rooms = NO_ROOMS
            else:
                rooms.discard(room)

    @property
    def session(self) -> dict[str, Any]:
        """Per-connection data of the application (a user id after a login,
        ...), kept for the connection's life; a web connection lives for one
        request.  Connections have fixed attributes: this is the place for
        anything else."""
        session = self._session
        if session is None:
            session = self._session = {}
        return session

    def __repr__(self) -> str:
        return f"<Connection {self.type} {self.id}>"

    def details(self) -> dict[str, Any]:
        """The ``detailsView`` object, keys in ActionHero's order."""
        return {
            "id": self.id,
            "fingerprint": self.fingerprint,
            "remoteIP": self.remote_ip,
            "remotePort": self.remote_port,
            "params": self.params,
            "connectedAt": self.connected_at,
            "rooms": list(self.rooms),
            "totalActions": self.total_actions,
            "pendingActions": self.pending_actions,
        }

    # --- what the core and actions call -------------------------------------

    def send_message(self, message: dict[str, Any]) -> None:
        if self.transport is not None and not self.destroyed:
            self.transport.send_message(message)

    def send_file(self, path: str) -> Any:
        if self.transport is not None and not self.destroyed:
            return self.transport.send_file(path)
        return None

    def destroy(self) -> None:
        """Close from the server side; the transport's close path calls
        ``node.destroy_connection`` which runs the destroy middleware."""
        if self.transport is not None and not self.destroyed:
            self.transport.close()
        elif self.node is not None:
            self.node.destroy_connection(self)
