"""A complete HTTP request head without a body, parsed in one go.

Twisted's ``HTTPChannel`` parses a request line by line: ``LineReceiver``
splits the buffer once per line, ``lineReceived`` and ``headerReceived`` run
per line, the request line's target is checked a byte at a time in Python,
and each header goes through ``Headers.addRawHeader`` (name canonicalised
again, value sanitised).  For the commonest read of all -- one whole
``GET``/``HEAD``/... head with no body, arriving in one piece -- that is a
fifth of the cost of answering an action (``bench/profile_server.py
/api/randomNumber``).

:func:`parse_head` accepts only heads Twisted would accept and treat the same
way, and says ``None`` (let Twisted parse it, with its own errors and limits)
for anything else: a read that is not exactly one head ending in a blank
line, bare CR or LF, NUL, an obs-fold line, a header without a colon or with
a name that is not a token, ``Content-Length``, ``Transfer-Encoding`` or
``Expect``, more headers than the channel allows, a method it does not know,
a target with a byte Twisted refuses, a version other than HTTP/1.0 and 1.1,
or more than :data:`MAX_HEAD` bytes.
"""

from twisted.web.http_headers import InvalidHeaderName, _nameEncoder

#: the longest head parsed here (shorter than the request-line and
#: header-size limits of ahtwist and Twisted, so neither can apply)
MAX_HEAD = 8192
#: methods taken here (all RFC 9110 tokens); others are Twisted's
METHODS = frozenset((b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE"))
VERSIONS = frozenset((b"HTTP/1.1", b"HTTP/1.0"))
#: the request-target bytes Twisted's request-line check accepts (33-176)
_TARGET_BYTES = bytes(range(33, 177))
#: headers that need Twisted: a body, or a 100 Continue
_NOT_HERE = frozenset((b"Content-Length", b"Transfer-Encoding", b"Expect"))
#: canonical header names (Twisted's capitalisation) by name as received
_CANONICAL: dict[bytes, bytes] = {}
_MAX_CANONICAL = 1000


def canonical_name(name: bytes) -> bytes | None:
    """``name`` as Twisted's ``Headers`` stores it, or None if Twisted
    refuses it (not a token)."""
    found = _CANONICAL.get(name)
    if found is None:
        try:
            found = _nameEncoder.encode(name)
        except InvalidHeaderName:
            return None
        if len(_CANONICAL) < _MAX_CANONICAL:  # any number of names can be sent
            _CANONICAL[name] = found
    return found


def parse_head(data: bytes, max_headers: int) -> tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]]] | None:
    """``(method, target, version, [(name, value), ...])`` for a read that is
    exactly one request head with no body, names canonical and values
    stripped as Twisted's ``headerReceived`` stores them; None for anything
    Twisted's line parser must see (module docstring)."""
    end = len(data) - 4
    if end > MAX_HEAD or data.find(b"\r\n\r\n") != end or end < 0:
        return None
    lines = data[:end].split(b"\r\n")
    breaks = len(lines) + 1
    if data.count(b"\n") != breaks or data.count(b"\r") != breaks or b"\0" in data:
        return None  # a bare CR or LF, or NUL
    if len(lines) - 1 > max_headers:
        return None
    request_line = lines[0].split(b" ")
    if len(request_line) != 3:
        return None
    method, target, version = request_line
    if method not in METHODS or version not in VERSIONS or not target or target.translate(None, _TARGET_BYTES):
        return None
    headers = []
    known = _CANONICAL.get
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            return None
        # an obs-fold line (ahtwist refuses it) starts with a space or tab: not a token
        canonical = known(name) or canonical_name(name)
        if canonical is None or canonical in _NOT_HERE:
            return None
        headers.append((canonical, value.strip(b" \t")))
    return method, target, version, headers
