"""Ids: uuids for connections and messages, random bytes for fingerprints.

Both come from the operating system's CSPRNG a page at a time (one system
call per few hundred draws); a forked child (``--workers``) starts with
nothing of its parent's, so no two processes hand out the same bytes or ids.
"""

import os


class _RandomPool:
    """Bytes from ``os.urandom`` fetched a page at a time: one system call per
    few hundred draws instead of one per draw.  A forked child (``--workers``)
    starts with an empty pool, so no two processes hand out the same bytes."""

    PAGE = 4096

    def __init__(self) -> None:
        self.buffer = b""
        self.used = 0

    def take(self, n: int) -> bytes:
        used = self.used
        if used + n > len(self.buffer):
            self.buffer, used = os.urandom(self.PAGE), 0
        self.used = used + n
        return self.buffer[used : used + n]

    def reset(self) -> None:
        self.buffer, self.used = b"", 0


_pool = _RandomPool()
#: ``random_bytes(n)``: n bytes from the operating system's CSPRNG
random_bytes = _pool.take

# new_id's batch: 256 uuids made from one page of random bytes with a few
# C-level passes, instead of a bytearray, a hex string and five slices in
# Python per id (a socket or websocket action without a messageId needs one)
_UUIDS_PER_BATCH = _RandomPool.PAGE // 16
#: byte -> the byte with the version nibble 4 / the RFC 4122 variant bits
_VERSION_4 = bytes((b & 0x0F) | 0x40 for b in range(256))
_VARIANT = bytes((b & 0x3F) | 0x80 for b in range(256))
_SPACES = b" " * (_UUIDS_PER_BATCH - 1)
_ids: list[str] = []


def _new_ids() -> list[str]:
    """A batch of fresh uuids (each as ``new_id`` returns it)."""
    raw = bytearray(os.urandom(_RandomPool.PAGE))
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_VARIANT)
    # hex digits in groups of 4 ("-" between): 40 characters an id, the last
    # its "-" to the next; that one becomes a space, and the dashes after the
    # 1st, 6th and 7th groups go (8-4-4-4-12), last first so the offsets hold
    text = bytearray(raw.hex("-", 2), "ascii")
    text[39::40] = _SPACES
    del text[34::40]
    del text[29::39]
    del text[4::38]
    return text.decode("ascii").split(" ")


def new_id() -> str:
    """A fresh lowercase RFC 4122 v4 uuid (as ``str(uuid.uuid4())``, faster:
    made a batch at a time)."""
    if not _ids:
        _ids.extend(_new_ids())
    return _ids.pop()


def _reset_after_fork() -> None:
    """A forked child (``--workers``) starts with nothing of its parent's:
    no two processes hand out the same bytes or ids."""
    _pool.reset()
    _ids.clear()


os.register_at_fork(after_in_child=_reset_after_fork)
