"""The common client frame read without Autobahn's frame machinery.

Autobahn parses every incoming frame through ``processData`` (twice per
frame), ``onFrameBegin`` with a new XOR masker object, ``onFrameData``,
``onMessageFrameBegin``/``Data``/``End``, ``onFrameEnd`` and the incremental
UTF-8 validator: about a third of the server's work for a small websocket
action (``bench/profile_server.py websocket``).  Almost every frame a client
sends is the simplest kind: one complete, final, masked text (or binary)
frame with no extension bits and a payload under 64 KiB, arriving whole,
outside a fragmented message.  :func:`read_frames` handles exactly those
and hands everything else -- control frames, fragments, partial frames,
unmasked frames, reserved bits or opcodes, non-minimal lengths, payloads
over the limits, invalid UTF-8, anything on a connection that is not open
or has compression -- to Autobahn unchanged, so its protocol rules and
close codes apply to them as before.  A frame accepted here is delivered
exactly as Autobahn would deliver it (``onMessage(payload, is_binary)``,
the same traffic counters, the same auto-ping bookkeeping).
"""

from typing import Any

from autobahn.websocket.protocol import WebSocketProtocol

_OPEN = WebSocketProtocol.STATE_OPEN
#: the largest payload read here (a 16-bit length); larger frames are Autobahn's
MAX_SIMPLE_PAYLOAD = 0xFFFF


def simple_frame_limit(options: Any) -> int:
    """The largest payload :func:`read_frames` may take for a protocol class
    with these Autobahn options, or -1 when every frame must go to Autobahn
    (masks not applied, frames or octets logged, timings tracked: paths
    only Autobahn's parser serves)."""
    if not options.applyMask or options.logFrames or options.logOctets or options.trackTimings:
        return -1
    limit = MAX_SIMPLE_PAYLOAD
    for bound in (options.maxFramePayloadSize, options.maxMessagePayloadSize):
        if bound > 0:
            limit = min(limit, bound)
    return limit


def unmask(masked: bytes, mask: bytes) -> bytes:
    """``masked`` XOR the 4-byte ``mask`` repeated (RFC 6455 section 5.3)."""
    n = len(masked)
    key = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(masked, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def read_frames(protocol: Any, data: bytes) -> bytes:
    """Deliver the simple frames at the start of ``data`` (a read on an
    open connection with nothing buffered and no frame or message under
    way); the rest, from the first frame that is not simple, is returned
    for Autobahn's ``consumeData``.  The read is counted first, as
    Autobahn's ``_dataReceived`` counts it."""
    limit = protocol._simple_frame_limit
    validate = protocol.utf8validateIncoming
    stats = protocol.trafficStats
    stats.incomingOctetsWireLevel += len(data)
    while True:
        n = len(data)
        if n < 6:
            return data
        first = data[0]
        if first != 0x81 and first != 0x82:  # FIN, no RSV bits, text or binary
            return data
        length = data[1] - 0x80  # negative: not masked
        if length < 126:
            if length < 0:
                return data
            start = 6
        elif length == 126 and n >= 8:
            length = (data[2] << 8) | data[3]
            if length < 126:  # not the minimal encoding: a protocol error
                return data
            start = 8
        else:
            return data
        end = start + length
        if end > n or length > limit:
            return data
        payload = unmask(data[start:end], data[start - 4 : start]) if length else b""
        if first == 0x81 and validate and not payload.isascii():
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:  # Autobahn fails the connection (1007)
                return data
        stats.incomingOctetsWebSocketLevel += length
        stats.incomingOctetsAppLevel += length
        stats.incomingWebSocketFrames += 1
        stats.incomingWebSocketMessages += 1
        if protocol.autoPingTimeoutCall and protocol.autoPingRestartOnAnyTraffic:
            protocol._cancelAutoPingTimeoutCall()
        data = data[end:]
        protocol.onMessage(payload, first == 0x82)
        if not data or protocol.state != _OPEN or protocol.failedByMe:
            return data
