"""Quotas and limits shared by every transport (``[limits]`` in the config).

Each rule lives here once; the core (rooms, processor) and the transports
call it.  A refusal is one of the texts in :mod:`ahtwist.errors`, so a client
always learns which limit it hit:

* room names and counts -- :meth:`Limits.check_room_name`,
  :meth:`Limits.check_new_room`, :meth:`Limits.check_join`;
* the message rate of one connection -- :class:`TokenBucket`, made per
  connection by :meth:`Limits.bucket` (off by default);
* connections per client address -- :meth:`Limits.connection_opened` /
  :meth:`Limits.connection_closed` (off by default);
* unsent output of one client -- :class:`OutputPolicy`, the one rule every
  transport applies to a client past its output limit (dropped, logged,
  counted, memory handed back), and :class:`OutboundMeter`, which counts
  that output for the websocket servers (the socket server counts its own
  backlog, files queued included, and calls the same policy).

The global in-flight cap and ``sleepTest``'s cap read their numbers from the
same table (the processor and the action apply them).
"""

import ctypes
import ctypes.util
from collections import Counter
from collections.abc import Callable
from typing import Any

import ahtwist.errors as errors
from ahtwist.config import LimitsConfig
from ahtwist.errors import RoomError

#: stats counter: clients dropped because their unsent output passed the limit
SLOW_CLIENTS_DROPPED = "limits:slowClientsDropped"
#: the log line of every transport's drop of a slow client
SLOW_CLIENT_LOG = "dropping {transport} client {id}: {n} bytes of output it does not read"
#: stats counter: messages refused by the rate limit
RATE_LIMITED = "limits:rateLimited"
#: stats counter: actions refused because too many were in flight
TOO_BUSY = "limits:tooBusy"


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved; one per message.

    Refilled lazily from the injected clock on each :meth:`take`, so an idle
    connection costs nothing.
    """

    __slots__ = ("rate", "burst", "tokens", "stamp", "seconds")

    def __init__(self, rate: float, burst: float, seconds: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.seconds = seconds
        self.stamp = seconds()

    def take(self) -> bool:
        """Spend one token; False (nothing spent) when none is left."""
        now = self.seconds()
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens < 1:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1
        return True


def over_rate(connection: Any) -> bool:
    """True when ``connection`` has no token left for one more message (the
    transport then answers :data:`~ahtwist.errors.TOO_FAST`)."""
    bucket = connection.bucket
    return bucket is not None and not bucket.take()


class OutboundMeter:
    """How far behind one client is with reading what we send it.

    Registered as the streaming producer of the client's transport: Twisted
    calls :meth:`pauseProducing` once its write buffer passes 64 KiB and
    :meth:`resumeProducing` once it is flushed.  While paused, every byte
    written is counted (:meth:`wrote`); past ``limit`` the client is behind
    without bound and ``on_over`` drops it.  ``on_pause``/``on_resume`` let
    the transport stop reading the client's requests meanwhile.
    """

    __slots__ = ("limit", "paused", "unsent", "on_over", "on_pause", "on_resume", "over")

    def __init__(
        self,
        limit: int,
        on_over: Callable[[int], None] | None,
        on_pause: Callable[[], None] | None = None,
        on_resume: Callable[[], None] | None = None,
    ) -> None:
        self.limit = limit
        self.paused = False
        self.unsent = 0
        self.over = False
        self.on_over = on_over
        self.on_pause = on_pause
        self.on_resume = on_resume

    def wrote(self, n: int) -> None:
        """``n`` bytes were written to the transport."""
        if self.paused:
            self.unsent += n
            if self.unsent > self.limit and not self.over:
                self.over = True
                self.went_over(self.unsent)

    # IPushProducer, driven by the transport's write buffer
    def pauseProducing(self) -> None:
        if not self.paused:
            self.paused = True
            self.paused_now()

    def resumeProducing(self) -> None:
        if self.paused:
            self.paused = False
            self.unsent = 0
            self.resumed_now()

    def stopProducing(self) -> None:
        self.paused = False
        self.unsent = 0

    # what happens: the callbacks given, or a subclass's methods
    def went_over(self, unsent: int) -> None:
        if self.on_over is not None:
            self.on_over(unsent)

    def paused_now(self) -> None:
        if self.on_pause is not None:
            self.on_pause()

    def resumed_now(self) -> None:
        if self.on_resume is not None:
            self.on_resume()


class OutputPolicy:
    """What happens to a client whose unsent output passed ``limit``, on
    every transport (issue 12: one policy): logged as
    :data:`SLOW_CLIENT_LOG`, counted (``limits:slowClientsDropped``), closed
    the transport's way, and the memory its buffers held handed back.

    A transport counts its client's backlog and compares it with ``limit``
    itself (a hot path: one add and one comparison per write), then calls
    :meth:`drop` once.
    """

    __slots__ = ("transport", "limit", "limits", "stats", "log")

    def __init__(self, transport: str, limit: int, limits: "Limits", stats: Any, log: Any) -> None:
        self.transport = transport
        self.limit = limit
        self.limits = limits
        self.stats = stats
        self.log = log

    def drop(self, client_id: Any, unsent: int, close: Callable[[], None]) -> None:
        """``client_id`` left ``unsent`` bytes (more than ``limit``) unread."""
        self.log.info(SLOW_CLIENT_LOG, transport=self.transport, id=client_id, n=unsent)
        self.limits.slow_client_dropped(self.stats, self.transport)
        close()


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None on another C library."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        return trim
    except (OSError, AttributeError):
        return None


class MemoryReturner:
    """Gives memory freed in a burst back to the operating system.

    Dropping a client that stopped reading frees megabytes of small buffers
    at once; glibc keeps freed heap pages for reuse, so without this the
    process's RSS stays at its high-water mark (the "ratchet" of issue 12:
    Python objects are all freed, the allocator keeps the pages).
    :meth:`soon` asks for one ``malloc_trim(0)`` ``delay`` seconds after the
    latest request (a burst of drops costs one trim, once they are all gone).
    """

    def __init__(self, clock: Any, delay: float = 3.0, trim: Callable[[int], int] | None = None) -> None:
        self.clock = clock
        self.delay = delay
        self.trim = trim if trim is not None else _malloc_trim()
        self._call: Any = None
        #: how many times memory was handed back (for tests and the bench)
        self.trims = 0

    def soon(self) -> None:
        if self.trim is None:
            return
        if self._call is not None and self._call.active():
            self._call.reset(self.delay)
        else:
            self._call = self.clock.callLater(self.delay, self._run)

    def _run(self) -> None:
        self._call = None
        self.trims += 1
        assert self.trim is not None
        self.trim(0)

    def cancel(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


class Limits:
    """The node's quotas (one per node; the config's ``[limits]``)."""

    def __init__(self, config: LimitsConfig, clock: Any) -> None:
        self.config = config
        self.seconds = clock.seconds
        #: hands memory back once a slow client was dropped
        self.memory = MemoryReturner(clock)
        self.max_room_name = config.maxRoomNameLength
        self.max_rooms = config.maxRooms
        self.max_rooms_per_connection = config.maxRoomsPerConnection
        self.room_view_members = config.maxRoomViewMembers
        self.rate = config.messagesPerSecond
        self.burst = max(config.messageBurst, 1)
        self.in_flight_cap = config.maxActionsInFlight
        self.sleep_cap = config.maxSleepDuration
        #: clients dropped for not reading their output, by transport (metrics)
        self.slow_clients_dropped: Counter[str] = Counter()

    # --- rooms ---------------------------------------------------------------

    def check_room_name(self, room: Any) -> None:
        """A room name anywhere (create, join, leave, view, say) is at most
        ``maxRoomNameLength`` characters."""
        if isinstance(room, str) and len(room) > self.max_room_name:
            raise RoomError(errors.ROOM_NAME_TOO_LONG.format(max=self.max_room_name))

    def check_new_room(self, existing: int) -> None:
        """``existing`` rooms already: one more is allowed up to ``maxRooms``."""
        if existing >= self.max_rooms:
            raise RoomError(errors.TOO_MANY_ROOMS.format(max=self.max_rooms))

    def check_join(self, joined: int) -> None:
        """A connection in ``joined`` rooms may join one more up to
        ``maxRoomsPerConnection``."""
        if joined >= self.max_rooms_per_connection:
            raise RoomError(errors.TOO_MANY_ROOMS_JOINED.format(max=self.max_rooms_per_connection))

    # --- output ----------------------------------------------------------------

    def output_policy(self, transport: str, limit: int, stats: Any, log: Any) -> OutputPolicy:
        """The output policy of one server: ``transport`` names it in the
        log line, ``limit`` is its setting (bytes a client may leave unread)."""
        return OutputPolicy(transport, limit, self, stats, log)

    def slow_client_dropped(self, stats: Any, transport: str) -> None:
        """A client was dropped for not reading its output: count it (in the
        stats and by ``transport``) and give the memory its buffers held back
        to the OS once it is gone."""
        stats.increment(SLOW_CLIENTS_DROPPED)
        self.slow_clients_dropped[transport] += 1
        self.memory.soon()

    def bucket(self) -> TokenBucket | None:
        """A new connection's rate limit, or None when it is off."""
        if self.rate <= 0:
            return None
        return TokenBucket(self.rate, self.burst, self.seconds)
