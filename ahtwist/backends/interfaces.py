"""Interfaces every backend provides; the core only talks to these.

All methods that may need the network return Deferreds (the in-memory
providers return already-fired ones), so callers are written once.
"""

from zope.interface import Attribute, Interface


class ICache(Interface):
    """A key/value cache with expiry (ActionHero's ``api.cache``)."""

    def save(key, value, expire_ms=None):
        """Store ``value``; fires True."""

    def load(key):
        """Fires ``{key, value, expireTimestamp, createdAt, readAt}`` (readAt =
        the previous read, or None) and records this read; fails with
        :class:`CacheMiss` when absent or expired."""

    def destroy(key):
        """Fires True if the key existed, else False."""

    def size():
        """Fires the number of unexpired entries."""


class IStats(Interface):
    """Request counters: local to this node and cluster-wide totals."""

    def increment(key, count=1):
        """Add to a counter (never blocks: cluster providers batch)."""

    def local(key):
        """This node's value of a counter (int, synchronous)."""

    def global_counts():
        """Fires a dict of cluster-wide counter totals."""


class IPeers(Interface):
    """Live node ids of the cluster (this node included)."""

    node_id = Attribute("this node's id")

    def peers():
        """Fires the sorted list of live node ids."""


class IRoomBackend(Interface):
    """Where rooms and memberships live.

    Membership records are ``{"id", "joinedAt", "host"}`` (host = node id).
    Room events travel on the :class:`IBus`, not here.
    """

    def add_room(room):
        """Fires True if created, False if it already existed."""

    def remove_room(room):
        """Fires True if it existed."""

    def room_exists(room):
        """Fires a bool."""

    def list_rooms():
        """Fires the sorted room names."""

    def members(room):
        """Fires ``{id: record}`` in join order."""

    def add_member(room, record):
        """Fires True if added, False if already a member."""

    def remove_member(room, connection_id):
        """Fires True if removed."""


class IBus(Interface):
    """How the nodes of a cluster talk to each other.

    Room events published with :meth:`publish` are delivered, once, to every
    handler subscribed on every node (this node's included), never
    synchronously from inside ``publish``.  :meth:`call_remote` runs an
    operation on a connection another node holds; that node's ``on_rpc``
    answers it.
    """

    on_rpc = Attribute(
        "callable(connection_id, method, args) set by the node: runs an "
        "operation another node asked for on a connection held here (a Deferred "
        "of its result), or returns None when the connection is not held here"
    )

    def subscribe(handler):
        """Call ``handler(event)`` for every room event, in subscription order."""

    def publish(event):
        """Send a room event (a JSON-able dict) to every node."""

    def call_remote(connection_id, method, args):
        """Run ``method`` for a connection held by another node; fires its
        result or fails with RoomError(RPC_TIMEOUT)."""


class IRoomHistory(Interface):
    """Per-room chat history with offsets and an epoch (docs/architecture.md,
    'Room history and resume').

    Every message said in a room gets the room's next **offset** (1, 2, 3,
    ...; a room where nothing was said is at offset 0).  The room's
    **epoch** is an opaque string that changes whenever its history is lost
    (the room is re-created, a node restarts with in-memory history, Redis
    lost its data): offsets are only comparable within one epoch.

    History keeps at most ``max_messages`` messages and, when ``max_age`` is
    not 0, only those said in the last ``max_age`` seconds (the defaults come
    from ``[history]``; :meth:`create` may override them per room).
    ``max_messages`` 0 keeps nothing: offsets are still assigned, and a
    resume is then recovered only when nothing was missed.

    Ordering promise (the dedupe of :mod:`ahtwist.resume` relies on it): a
    room's say events reach every node in offset order; a provider (or its
    bus) that detects a gap fills it, in order, before it delivers anything
    later.  An event whose offset is not above the last one a member got in
    the same epoch is dropped as a duplicate.

    A room the provider has no state for (never created through
    :meth:`create`, e.g. it existed before history did) gets one lazily with
    the default limits and a fresh epoch on first use.
    """

    def create(room, max_messages=None, max_age=None):
        """A room was created: start its history at offset 0 with a new epoch
        (replacing any previous state of that name).  ``max_messages``/
        ``max_age`` (seconds) override the defaults for this room when not
        None (0 = off / no age limit).  Fires the new epoch (str)."""

    def destroy(room):
        """A room was deleted: forget its history.  Fires None."""

    def publish_say(room, payload):
        """Say ``payload`` (the chat message dict as non-resuming members get
        it) in ``room``: assign the room's next offset, store the message
        (within the room's bounds) and publish the bus event
        ``{"type": "say", "room", "payload", "offset", "epoch"}`` -- as **one
        operation**, so events reach every node in offset order and no
        reader of :meth:`since` sees an offset whose event is not published.
        Fires ``(offset, epoch)``."""

    def since(room, offset, epoch):
        """What a member that last saw ``offset`` of ``epoch`` missed.

        Fires ``(recovered, messages, position, current_epoch)``:
        ``messages`` is the list of stored ``(offset, payload)`` after
        ``offset``, in order (empty when the epoch differs); ``position`` is
        the room's current offset; ``recovered`` is True when ``messages``
        holds *every* message after ``offset`` (same epoch, history still
        covers it, and ``offset`` is not beyond ``position``).  ``offset``
        None means "from now": ``(True, [], position, current_epoch)``."""

    def position(room):
        """Fires ``(offset, epoch)``: the room's latest offset and epoch."""
