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
# C-level slice copies, instead of a bytearray, a hex string and five slices
# in Python per id (a socket or websocket action without a messageId needs one)
_UUIDS_PER_BATCH = _RandomPool.PAGE // 16
#: byte -> the byte with the version nibble 4 / the RFC 4122 variant bits
_VERSION_4 = bytes((b & 0x0F) | 0x40 for b in range(256))
_VARIANT = bytes((b & 0x3F) | 0x80 for b in range(256))
#: 36 characters and a space per id; the x's are overwritten with hex digits
_TEMPLATE = b"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx " * _UUIDS_PER_BATCH
#: (offset in the template's 37, offset in the id's 32 hex digits) of every digit
_DIGITS = tuple((j + (j >= 8) + (j >= 12) + (j >= 16) + (j >= 20), j) for j in range(32))
_ids: list[str] = []


def _new_ids() -> list[str]:
    """A batch of fresh uuids (each as ``new_id`` returns it)."""
    raw = bytearray(os.urandom(_RandomPool.PAGE))
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_VARIANT)
    digits = raw.hex().encode("ascii")
    out = bytearray(_TEMPLATE)
    for to, at in _DIGITS:
        out[to::37] = digits[at::32]
    return out.decode("ascii").split()


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
