"""Room history on Redis Streams (cluster mode), and a bus with no silent gaps
(docs/deployment.md, 'Cluster delivery guarantees').

Per room, in Redis::

    <p>:history:<room>          hash    epoch, offset (the latest), maxMessages / maxAge
                                        when the room overrides the defaults
    <p>:history:<room>:stream   stream  entry id "<offset>-0": p = payload JSON, t = ms
    <p>:history:node:<nonce>    string  the number of the last say of one node
                                        process stored (a day: makes a say sent
                                        again after a lost reply idempotent)

One Lua script (:data:`SAY`) assigns the next offset, appends to the stream
(trimmed to ``maxMessages``, and to ``maxAge`` seconds), and PUBLISHes the
say event with its offset and epoch, atomically: events reach every node in
offset order, and no reader of the stream sees an offset whose event was not
published.  A room whose hash is missing -- never said to, or Redis lost its
data -- gets a new epoch and starts again at offset 1; a client that resumes
with the old epoch is answered ``recovered: false``.

The node side (:class:`RedisRoomHistory`) also watches the say events it
receives: it remembers the latest offset of each room it has seen, drops a
say it has already delivered (same epoch, offset not past it), and after a
subscription gap (the link lost and found again) reads what it missed from
the streams and delivers it, in order, before the live says that arrived
meanwhile.  Says made while Redis is out of reach are held (up to
``max_held``) and stored and published, in order, once it is back.  The says not stored yet are
kept, and sent in a bounded window, by :mod:`ahtwist.backends.redis.says`.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from ahtwist._async import start
from ahtwist.backends.history import HistoryLimits, new_epoch
from ahtwist.backends.interfaces import IRoomHistory
from ahtwist.backends.redis.bus import RedisBus
from ahtwist.backends.redis.link import RedisLink
from ahtwist.backends.redis.says import MAX_HELD, SEND_WINDOW, HeldSay, SayQueue
from ahtwist.backends.redis.scripts import Script, text
from ahtwist.encoding import dumps, loads

log = Logger(namespace="ahtwist.redis")

#: ms a node's last stored say number is kept after its last say (a say re-sent
#: after a lost reply within that time is not stored twice)
SAID_TTL_MS = 86400000
#: entries looked at per say for the age trim
AGE_TRIM_SCAN = 64

# KEYS: room hash, its stream; ARGV[1]: new epoch, ARGV[2]: maxMessages or '', ARGV[3]: maxAge or ''
CREATE = Script(
    """
    redis.call('DEL', KEYS[1], KEYS[2])
    redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'offset', 0)
    if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'maxMessages', ARGV[2]) end
    if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'maxAge', ARGV[3]) end
    return ARGV[1]
    """
)

# KEYS: room hash, its stream, the saying node's key.  ARGV[1]: channel, ARGV[2]:
# the event message up to the payload, ARGV[3]: payload JSON, ARGV[4]/[5]:
# default maxMessages / maxAge, ARGV[6]: a new epoch (used if the room has
# none), ARGV[7]: the node key's lifetime (ms), ARGV[8]: the say's id when the
# saying node already delivered it to its own members (kept in the entry and
# the event, so that node skips it), else '', ARGV[9]: the say's number (a
# node sends its says in that order, and again in that order after a lost
# connection), ARGV[10]: '1' when sent again: then one at or below the last
# stored number is a repeat.
# Returns {offset, epoch}, or {0, ''} for a repeat.
SAY = Script(
    """
    local last = tonumber(redis.call('GET', KEYS[3]) or '0')
    if ARGV[10] == '1' and last >= tonumber(ARGV[9]) then return {0, ''} end
    local epoch = redis.call('HGET', KEYS[1], 'epoch')
    if not epoch then
        epoch = ARGV[6]
        redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
        redis.call('DEL', KEYS[2])
    end
    local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
    local max_messages = tonumber(redis.call('HGET', KEYS[1], 'maxMessages') or ARGV[4])
    local max_age = tonumber(redis.call('HGET', KEYS[1], 'maxAge') or ARGV[5])
    if max_messages > 0 then
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        if ARGV[8] ~= '' then
            redis.call('XADD', KEYS[2], 'MAXLEN', max_messages, offset .. '-0', 'p', ARGV[3], 't', now, 'i', ARGV[8])
        else
            redis.call('XADD', KEYS[2], 'MAXLEN', max_messages, offset .. '-0', 'p', ARGV[3], 't', now)
        end
        if max_age > 0 then
            local cutoff = now - max_age * 1000
            local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', %d)
            local keep = nil
            for _, entry in ipairs(oldest) do
                if tonumber(entry[2][4]) > cutoff then keep = entry[1]; break end
            end
            if keep then redis.call('XTRIM', KEYS[2], 'MINID', keep) end
            redis.call('PEXPIRE', KEYS[2], max_age * 1000)
        end
    end
    local said = ''
    if ARGV[8] ~= '' then said = ',"said":"' .. ARGV[8] .. '"' end
    redis.call('PUBLISH', ARGV[1],
               ARGV[2] .. ARGV[3] .. ',"offset":' .. offset .. ',"epoch":"' .. epoch .. '"' .. said .. '}}')
    if tonumber(ARGV[9]) > last then redis.call('SET', KEYS[3], ARGV[9], 'PX', ARGV[7]) end
    return {offset, epoch}
    """
    % AGE_TRIM_SCAN
)

# KEYS: room hash, its stream.  ARGV[1]: offset seen ('' = none: the position
# only), ARGV[2]: its epoch, ARGV[3]: a new epoch (used if the room has none),
# ARGV[4]: default maxAge.  Returns {position, epoch, entries after the
# offset (when the epoch is the room's), not older than maxAge}.
SINCE = Script(
    """
    local epoch = redis.call('HGET', KEYS[1], 'epoch')
    if not epoch then
        epoch = ARGV[3]
        redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
        redis.call('DEL', KEYS[2])
    end
    local position = tonumber(redis.call('HGET', KEYS[1], 'offset'))
    if ARGV[1] == '' or ARGV[2] ~= epoch or tonumber(ARGV[1]) >= position then
        return {position, epoch, {}}
    end
    local entries = redis.call('XRANGE', KEYS[2], '(' .. ARGV[1] .. '-0', '+')
    local max_age = tonumber(redis.call('HGET', KEYS[1], 'maxAge') or ARGV[4])
    if max_age > 0 and #entries > 0 then
        local t = redis.call('TIME')
        local cutoff = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - max_age * 1000
        local fresh = {}
        for _, entry in ipairs(entries) do
            if tonumber(entry[2][4]) > cutoff then table.insert(fresh, entry) end
        end
        entries = fresh
    end
    return {position, epoch, entries}
    """
)

Missed = list[tuple[int, dict[str, Any]]]


@implementer(IRoomHistory)
class RedisRoomHistory:
    """:class:`~ahtwist.backends.interfaces.IRoomHistory` on Redis Streams,
    shared by every node of the cluster, and the gap filler of this node's
    bus (module docstring).

    Counters (plain attributes, read by metrics; never reset):

    * ``gaps_filled`` -- subscription gaps after which missed says were read
      back from the streams and delivered;
    * ``messages_filled`` -- says delivered that way;
    * ``epochs_lost`` -- rooms found with a new epoch after a gap (Redis lost
      their history: what was said before is gone, what came after is
      delivered);
    * ``duplicates_dropped`` -- say events received again (already delivered);
    * ``held``, ``held_dropped`` -- of its :class:`SayQueue` (``says``).
    """

    def __init__(
        self,
        link: RedisLink,
        bus: RedisBus,
        *,
        prefix: str,
        limits: HistoryLimits | None = None,
        max_held: int = MAX_HELD,
        window: int = SEND_WINDOW,
    ) -> None:
        self.link = link
        self.bus = bus
        self.prefix = prefix
        self.limits = limits if limits is not None else HistoryLimits()
        self._key_prefix = f"{prefix}:history:"
        self._ids = itertools.count(1)
        self._node_nonce = os.urandom(8).hex()
        self._node_key = f"{self._key_prefix}node:{self._node_nonce}"
        #: says not stored yet
        self.says = SayQueue(link, self._store, max_held=max_held, window=window)
        #: room -> (offset, epoch) of the latest say delivered here
        self.seen: dict[str, tuple[int, str]] = {}
        #: ids of says delivered here while Redis was down, not yet seen back
        self._delivered_here: set[str] = set()
        self._filling = False
        self._waiting: list[dict[str, Any]] = []
        self.gaps_filled = 0
        self.messages_filled = 0
        self.epochs_lost = 0
        self.duplicates_dropped = 0
        bus.intake = self._incoming
        link.on_up.append(self._came_up)
        link.on_down.append(self.says.went_down)

    def _keys(self, room: str) -> list[str]:
        base = self._key_prefix + room
        return [base, base + ":stream"]

    def _envelope(self, room: str) -> bytes:
        """The say event message up to its payload (the script adds the rest)."""
        head = dumps({"serverToken": self.bus.server_token, "serverId": self.bus.node_id, "kind": "event"})
        return head[:-1] + b',"event":{"type":"say","room":' + dumps(room) + b',"payload":'

    # --- IRoomHistory -----------------------------------------------------------------

    def create(self, room: str, max_messages: int | None = None, max_age: int | None = None) -> Deferred[str]:
        epoch = new_epoch()
        args = [epoch, "" if max_messages is None else max(0, int(max_messages)),
                "" if max_age is None else max(0, int(max_age))]
        self.seen.pop(room, None)
        if not self.link.up:
            return succeed(epoch)
        d = CREATE(self.link, self._keys(room), args)
        d.addCallback(lambda _: self._note(room, 0, epoch))
        d.addErrback(lambda f: log.warn("creating the history of {room} failed: {reason}",
                                        room=room, reason=f.getErrorMessage()))
        return d.addCallback(lambda _: epoch)

    def destroy(self, room: str) -> Deferred[None]:
        self.seen.pop(room, None)
        if not self.link.up:
            return succeed(None)
        d = self.link.execute("DEL", *self._keys(room))
        d.addErrback(lambda f: log.warn("deleting the history of {room} failed: {reason}",
                                        room=room, reason=f.getErrorMessage()))
        return d.addCallback(lambda _: None)

    @property
    def held(self) -> int:
        return self.says.held

    @property
    def held_dropped(self) -> int:
        return self.says.held_dropped

    def publish_say(self, room: str, payload: dict[str, Any]) -> Deferred[tuple[int, str]]:
        number = next(self._ids)
        say = HeldSay(room, dumps(payload), number, f"{self._node_nonce}:{number}")
        answer = self.says.add(say)
        if answer is not None:
            return answer
        # Redis is out of reach: this node's members get it now (no offset
        # yet: it has none); stored and published to the others, in order,
        # once Redis is back (its event then carries its id: not delivered
        # here twice)
        say.delivered_here = True
        self._delivered_here.add(say.id)
        self.bus.deliver_here({"type": "say", "room": room, "payload": payload})
        return succeed((0, ""))

    def _store(self, say: HeldSay, again: bool) -> Deferred[Any]:
        keys = [*self._keys(say.room), self._node_key]
        args = [self.link.channel, self._envelope(say.room), say.payload, self.limits.max_messages,
                self.limits.max_age, new_epoch(), SAID_TTL_MS, say.id if say.delivered_here else "",
                say.number, "1" if again else ""]
        return SAY(self.link, keys, args)

    def since(self, room: str, offset: int | None, epoch: str | None) -> Deferred[tuple[bool, Missed, int, str]]:
        return start(self._since(room, offset, epoch))

    async def _since(self, room: str, offset: int | None, epoch: str | None) -> tuple[bool, Missed, int, str]:
        position, current, entries = await self._read(room, offset, epoch)
        messages = [(entry_offset, payload) for entry_offset, payload, _ in entries]
        if offset is None:
            return True, [], position, current
        if epoch != current or offset < 0 or offset > position:
            return False, [], position, current
        recovered = offset == position or bool(messages and messages[0][0] == offset + 1)
        return recovered, messages, position, current

    def position(self, room: str) -> Deferred[tuple[int, str]]:
        return start(self._position(room))

    async def _position(self, room: str) -> tuple[int, str]:
        position, epoch, _ = await self._read(room, None, None)
        return position, epoch

    async def _read(
        self, room: str, offset: int | None, epoch: str | None
    ) -> tuple[int, str, list[tuple[int, dict[str, Any], str | None]]]:
        """(position, epoch, [(offset, payload, id of a say delivered by its
        node while Redis was down, or None), ...])"""
        args = ["" if offset is None else int(offset), epoch or "", new_epoch(), self.limits.max_age]
        reply = await SINCE(self.link, self._keys(room), args)
        position, current = int(reply[0]), text(reply[1])
        messages = []
        for entry_id, fields in reply[2]:
            said = _field(fields, "i")
            offset_of = int(text(entry_id).partition("-")[0])
            messages.append((offset_of, loads(_field(fields, "p")), None if said is None else text(said)))
        self._note(room, position, current)
        return position, current, messages

    def _note(self, room: str, position: int, epoch: str) -> None:
        """Start watching ``room`` from ``position`` if not watched yet (so a
        gap right after a join is filled too)."""
        if room not in self.seen:
            self.seen[room] = (position, epoch)

    # --- the bus side: dedupe, and filling gaps ----------------------------------------

    def _incoming(self, event: dict[str, Any]) -> None:
        if self._filling:
            self._waiting.append(event)
            return
        self._accept(event)

    def _accept(self, event: dict[str, Any]) -> None:
        kind, room = event.get("type"), event.get("room")
        if kind == "say":
            offset, epoch = event.get("offset"), event.get("epoch")
            if type(offset) is int and isinstance(epoch, str) and isinstance(room, str):
                seen = self.seen.get(room)
                if seen is not None and seen[1] == epoch and offset <= seen[0]:
                    self.duplicates_dropped += 1
                    return
                self.seen[room] = (offset, epoch)
                said = event.get("said")
                if said is not None and said in self._delivered_here:
                    self._delivered_here.discard(said)
                    return  # this node's members had it while Redis was down
        elif kind == "destroy" and isinstance(room, str):
            self.seen.pop(room, None)
        self.bus.deliver(event)

    def _came_up(self) -> None:
        # first on the new connection: a say must never wait for its script
        for script in (SAY, SINCE, CREATE):
            script.load(self.link).addErrback(lambda f: log.warn("loading a script failed: {reason}",
                                                                 reason=f.getErrorMessage()))
        self.says.came_up()
        if self.link.connections > 1 and self.seen:
            start(self._fill_gap())

    async def _fill_gap(self) -> None:
        """Read back what was said while this node was not subscribed."""
        if self._filling:
            return
        self._filling = True
        filled = 0
        try:
            for room, (offset, epoch) in list(self.seen.items()):
                position, current, missed = await self._read(room, offset, epoch)
                if current != epoch:
                    # Redis lost this room's history: everything of the new epoch is new here
                    self.epochs_lost += 1
                    log.warn("history of room {room} was lost in Redis (new epoch)", room=room)
                    self.seen[room] = (0, current)
                    position, current, missed = await self._read(room, 0, current)
                for message_offset, payload, said in missed:
                    seen = self.seen.get(room)
                    if seen is not None and seen[1] == current and message_offset <= seen[0]:
                        continue
                    if said is not None and said in self._delivered_here:
                        # said here while Redis was down: this node's members had it
                        self._delivered_here.discard(said)
                        self.seen[room] = (message_offset, current)
                        continue
                    filled += 1
                    self._accept({"type": "say", "room": room, "payload": payload,
                                  "offset": message_offset, "epoch": current})
        except Exception as e:
            log.warn("filling the subscription gap from history failed: {reason}", reason=e)
        finally:
            self._filling = False
            waiting, self._waiting = self._waiting, []
            for event in waiting:
                self._accept(event)
        if filled:
            self.gaps_filled += 1
            self.messages_filled += filled
            log.info("filled the subscription gap with {count} message(s) from history", count=filled)


def _field(fields: list[Any], name: str) -> Any:
    for key, value in zip(fields[::2], fields[1::2], strict=True):
        if text(key) == name:
            return value
    return None
