"""The says of this node not stored in Redis yet (cluster mode): held while
Redis is out of reach, sent in order, at most ``window`` waiting for an
answer at a time (docs/deployment.md, 'Cluster delivery guarantees').

A burst of says, or the says held through an outage, is worked through at
Redis's pace -- the next sent when one is answered -- instead of being queued
all at once behind whatever else the node asks (a room re-assertion, a gap
fill, the link's own pings).  Each say carries its node's number; one sent
again after its connection was lost is marked so, and the store script
(:data:`ahtwist.backends.redis.history.SAY`) keeps it from being stored
twice.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import txredisapi
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ahtwist.backends.redis.link import RedisLink, RedisUnavailable
from ahtwist.backends.redis.scripts import text

log = Logger(namespace="ahtwist.redis")

#: says held (not stored yet), at most; past it the oldest is dropped
MAX_HELD = 10000
#: says sent and not answered yet, at most
SEND_WINDOW = 256


class HeldSay:
    """A say not stored yet: waiting for Redis, or sent on connection ``sent_on``."""

    __slots__ = ("room", "payload", "number", "id", "sent_on", "delivered_here", "done")

    def __init__(self, room: str, payload: bytes, number: int, say_id: str) -> None:
        self.room = room
        self.payload = payload
        self.number = number
        self.id = say_id
        self.sent_on = 0
        #: already delivered to this node's members (said while Redis was down)
        self.delivered_here = False
        #: the sayer's answer: (offset, epoch) once stored, (0, "") when the
        #: link is lost first (the say is stored later); None once answered
        self.done: Deferred[tuple[int, str]] | None = None

    def answer(self, result: tuple[int, str]) -> None:
        done, self.done = self.done, None
        if done is not None:
            done.callback(result)


class SayQueue:
    """Says in the order they were said, until Redis stored them.

    ``store(say, again)`` runs the store script for one say and fires with
    its reply (``[offset, epoch]``).  The owner calls :meth:`came_up` once
    the scripts are loaded on a new connection (every say not stored yet is
    sent, again, on it) and :meth:`went_down` when the link is lost.

    Counters (plain attributes; never reset): ``held`` -- says made while
    Redis was out of reach, or lost with a connection, stored later;
    ``held_dropped`` -- dropped because more than ``max_held`` were waiting.
    """

    def __init__(
        self,
        link: RedisLink,
        store: Callable[[HeldSay, bool], Deferred[Any]],
        *,
        max_held: int = MAX_HELD,
        window: int = SEND_WINDOW,
    ) -> None:
        self.link = link
        self.store = store
        self.max_held = max_held
        self.window = window
        self.held = 0
        self.held_dropped = 0
        #: says not yet stored, in the order they were said
        self._held: deque[HeldSay] = deque()
        #: the end of ``_held`` not sent on the current connection yet
        self._unsent: deque[HeldSay] = deque()
        #: says sent on connection ``_sent_on`` (the current one), not answered
        self._in_flight = 0
        self._sent_on = 0
        self._pumping = False

    def __len__(self) -> int:
        return len(self._held)

    def add(self, say: HeldSay) -> Deferred[tuple[int, str]] | None:
        """Queue ``say``: its answer, or None when Redis is out of reach
        (then it is held, and sent once Redis is back)."""
        self._held.append(say)
        if len(self._held) > self.max_held:
            dropped = self._held.popleft()
            if self._unsent and self._unsent[0] is dropped:
                self._unsent.popleft()
            dropped.answer((0, ""))
            self.held_dropped += 1
            if self.held_dropped == 1 or self.held_dropped % 1000 == 0:
                log.error("{count} says dropped so far: more than {max} were waiting for Redis",
                          count=self.held_dropped, max=self.max_held)
        self._unsent.append(say)
        if not self.link.up:
            self.held += 1
            return None
        done: Deferred[tuple[int, str]] = Deferred()
        say.done = done
        self._pump()
        return done

    def came_up(self) -> None:
        """Send every say not stored yet on the new connection, in order."""
        self._unsent = deque(self._held)
        self._sent_on, self._in_flight = self.link.connections, 0
        self._pump()

    def went_down(self) -> None:
        # sayers waiting for the window are answered now, as those whose say
        # was lost with the connection are: stored once Redis is back
        for say in self._unsent:
            say.answer((0, ""))

    def _pump(self) -> None:
        """Send the next says, in order, while fewer than ``window`` wait --
        on a connection :meth:`came_up` has taken (the says left unanswered
        on the last one go first)."""
        if self._pumping:
            return  # a say answered at once, within the loop below: it goes on
        self._pumping = True
        try:
            link = self.link
            while self._unsent and self._in_flight < self.window and link.up and self._sent_on == link.connections:
                self._send(self._unsent.popleft())
        finally:
            self._pumping = False

    def _send(self, say: HeldSay) -> None:
        again = bool(say.sent_on)
        say.sent_on = connection = self.link.connections
        self._in_flight += 1

        def stored(reply: list[Any]) -> None:
            self._answered(connection)
            self._forget(say)
            say.answer((int(reply[0]), text(reply[1])))
            self._pump()

        def failed(failure: Any) -> None:
            if failure.check(RedisUnavailable, txredisapi.ConnectionError):
                # the connection is gone: sent again on the next one (came_up)
                self.held += 1
                say.answer((0, ""))
                return
            self._answered(connection)
            self._forget(say)
            say.answer((0, ""))
            log.failure("storing a say in {room} failed", failure, room=say.room)
            self._pump()

        self.store(say, again).addCallbacks(stored, failed)

    def _answered(self, connection: int) -> None:
        if connection == self._sent_on:
            self._in_flight -= 1

    def _forget(self, say: HeldSay) -> None:
        if self._held and self._held[0] is say:
            self._held.popleft()
        else:
            try:
                self._held.remove(say)
            except ValueError:
                pass

