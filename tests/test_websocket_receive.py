"""The simple-frame receive path (``ahtwist/websocket_receive.py``) against Autobahn's parser.

Every input below is fed, read by read, to two clients of the same node
build: one with the simple-frame path, one with it switched off (every
frame through Autobahn's ``processData``).  Everything observable must be
identical: the bytes the server writes after each read, the close code,
whether the connection was dropped, Autobahn's traffic counters and its
close bookkeeping.  The real-socket versions of these cases are in
``tests/e2e/test_websocket_receive_e2e.py``.
"""

import struct

import pytest

from ahtwist.websocket_receive import read_frames, simple_frame_limit, unmask
from tests.helpers import make_node
from tests.wshelpers import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    WSHarness,
    encode_frame,
    mask_bytes,
)

MASK = b"\x37\xfa\x21\x3d"


def text(value: str | bytes, **kw) -> bytes:
    return encode_frame(OP_TEXT, value.encode() if isinstance(value, str) else value, **kw)


def raw_frame(first: int, second: int, extended: bytes, payload: bytes, mask: bytes = MASK) -> bytes:
    """A frame with any first byte and length encoding (also invalid ones)."""
    return bytes([first, second]) + extended + mask + mask_bytes(payload, mask)


ADD = text('{"event":"roomAdd","room":"defaultRoom","messageId":1}')
LEAVE = text('{"event":"roomLeave","room":"defaultRoom","messageId":"two"}')
PADDED = text('{"event":"roomAdd","room":"defaultRoom","messageId":3}' + " " * 200)  # a 16-bit length
UNKNOWN = text('{"event":"nothing","messageId":4}')
QUIT = text('{"event":"quit","messageId":8}')
PING = encode_frame(OP_PING, b"hello")
CLOSE = encode_frame(OP_CLOSE, struct.pack("!H", 1000))

CASES = {
    "one text frame": [ADD],
    "a 16-bit length": [PADDED],
    "binary is ignored": [encode_frame(OP_BINARY, b"\xff\x00"), ADD],
    "two frames in one read": [ADD + LEAVE],
    "three frames and a ping in one read": [ADD + PING + LEAVE + UNKNOWN],
    "a frame and half of the next": [ADD + LEAVE[:5], LEAVE[5:]],
    "a frame byte by byte": [bytes([b]) for b in ADD] + [LEAVE],
    "the header split from the payload": [PADDED[:8], PADDED[8:]],
    "an empty text frame": [text(b""), ADD],
    "an empty binary frame": [encode_frame(OP_BINARY, b""), ADD],
    "an all-zero mask": [text('{"event":"roomAdd","room":"defaultRoom","messageId":7}', mask=b"\0\0\0\0")],
    "not JSON": [text("hello"), ADD],
    "non-ASCII UTF-8": [text('{"event":"roomAdd","room":"é€😀","messageId":5}')],
    "invalid UTF-8": [text(b'{"event":"\xff\xfe"}'), ADD],
    "a code point cut at the end": [text(b'"\xe2\x82'), ADD],
    "a UTF-8 surrogate": [text(b'"\xed\xa0\x80"'), ADD],
    "an overlong encoding": [text(b'"\xc0\xaf"'), ADD],
    "above U+10FFFF": [text(b'"\xf4\x90\x80\x80"'), ADD],
    "invalid UTF-8 in a binary frame": [encode_frame(OP_BINARY, b"\xff\xfe"), ADD],
    "unmasked": [text(b'{"event":"roomAdd","room":"defaultRoom"}', mask=None), ADD],
    "RSV1 set": [raw_frame(0xC1, 0x80 | 2, b"", b"{}"), ADD],
    "RSV3 set": [raw_frame(0x91, 0x80 | 2, b"", b"{}"), ADD],
    "reserved data opcode": [raw_frame(0x83, 0x80 | 2, b"", b"{}"), ADD],
    "reserved control opcode": [raw_frame(0x8B, 0x80 | 2, b"", b"{}"), ADD],
    "continuation outside a message": [raw_frame(0x80, 0x80 | 2, b"", b"{}"), ADD],
    "16-bit length that fits 7 bits": [raw_frame(0x81, 0x80 | 126, struct.pack("!H", 2), b"{}"), ADD],
    "64-bit length that fits 16 bits": [raw_frame(0x81, 0x80 | 127, struct.pack("!Q", 2), b"{}"), ADD],
    "fragmented with a ping inside": [
        encode_frame(OP_TEXT, b'{"event":"roomAdd",', fin=False),
        PING,
        encode_frame(OP_CONT, b'"room":"defaultRoom","messageId":6}'),
        ADD,
    ],
    "fragments in one read": [
        encode_frame(OP_TEXT, b'{"event":"roomAdd",', fin=False)
        + encode_frame(OP_CONT, b'"room":"defaultRoom","messageId":10}')
        + LEAVE
    ],
    "a new message inside a fragmented one": [encode_frame(OP_TEXT, b"{", fin=False) + ADD],
    "a ping": [PING, ADD],
    "a close": [CLOSE],
    "a frame then a close in one read": [ADD + CLOSE],
    "a frame after a close in one read": [CLOSE + ADD],
    "quit then a frame in one read": [QUIT + ADD],
    "quit, then a frame and a close answer": [QUIT, ADD + CLOSE],
    "a frame at the size limit": [text(b'{"messageId":9,"x":"' + b"a" * 78 + b'"}'), ADD],
    "a frame over the size limit": [text(b'{"messageId":9,"x":"' + b"a" * 79 + b'"}'), ADD],
    "two fragments over the limit": [
        encode_frame(OP_TEXT, b"a" * 60, fin=False) + encode_frame(OP_CONT, b"a" * 60),
        ADD,
    ],
}


def run(case: list[bytes], simple: bool) -> dict:
    """What a client of a node with ``maxMessageSize = 100`` sees for ``case``."""
    h = WSHarness(make_node("[servers.websocket]\nmaxMessageSize = 100\n"))
    factory = h.web_server.websocket_resource._factory
    if not simple:
        factory.protocol._simple_frame_limit = -1
    assert factory.protocol._simple_frame_limit == (100 if simple else -1)
    c = h.client()
    protocol = c.transport.protocol
    outputs = []
    for chunk in case:
        if c.transport.lost:
            break
        c.send_raw(chunk)
        h.pump()
        outputs.append(c.transport.value())
        c.transport.clear()
    h.node.reactor.advance(5)  # close handshake timeouts
    h.pump()
    stats = protocol.trafficStats
    return {
        "outputs": outputs,
        "lost": c.transport.lost,
        "aborted": c.transport.aborted,
        "state": protocol.state,
        "stats": {
            name: getattr(stats, name)
            for name in (
                "incomingOctetsWireLevel",
                "incomingOctetsWebSocketLevel",
                "incomingOctetsAppLevel",
                "incomingWebSocketFrames",
                "incomingWebSocketMessages",
            )
        },
        "close": [
            getattr(protocol, name)
            for name in ("wasClean", "wasNotCleanReason", "localCloseCode", "remoteCloseCode", "failedByMe")
        ],
        "rooms": len(h.node.rooms.local_members("defaultRoom")),
        "connections": len(h.node.connections),
    }


@pytest.mark.parametrize("name", list(CASES))
def test_the_simple_path_is_indistinguishable_from_autobahns_parser(name):
    case = CASES[name]
    simple, autobahn = run(case, True), run(case, False)
    assert simple == autobahn
    assert simple["outputs"], "the case produced no read at all"


def test_the_cases_cover_replies_and_every_close_code():
    """The comparison above is only worth something if the cases do things."""
    seen = {run(case, True)["close"][2] for case in CASES.values()}
    assert {None, 1000, 1002, 1007, 1009} <= seen
    reply = run([ADD], True)["outputs"][0]
    assert reply == encode_frame(OP_TEXT, b'{"status":"OK","context":"response","data":true,"messageCount":1,"messageId":1}', mask=None)


def test_read_frames_leaves_everything_it_does_not_take():
    """Directly: the bytes handed back start at the first frame it does not take."""
    h = WSHarness(make_node(""))
    c = h.client()
    protocol = c.transport.protocol
    assert read_frames(protocol, ADD[:-1]) == ADD[:-1]  # incomplete
    assert read_frames(protocol, PING + ADD) == PING + ADD  # control frame first
    assert read_frames(protocol, ADD + PING) == PING
    assert c.messages() == [{"status": "OK", "context": "response", "data": True, "messageCount": 1, "messageId": 1}]
    assert read_frames(protocol, ADD + LEAVE) == b""
    assert [m["messageId"] for m in c.messages()] == [1, "two"]


def test_unmask_is_rfc_6455_masking():
    for payload in (b"", b"a", b"abcd", b"abcde", bytes(range(256)) * 3):
        assert unmask(mask_bytes(payload, MASK), MASK) == payload
        assert bytes(b ^ MASK[i % 4] for i, b in enumerate(payload)) == mask_bytes(payload, MASK)


@pytest.mark.parametrize(
    ("options", "limit"),
    [
        ({}, 0xFFFF),
        ({"maxFramePayloadSize": 100}, 100),
        ({"maxMessagePayloadSize": 1000, "maxFramePayloadSize": 0}, 1000),
        ({"maxMessagePayloadSize": 0, "maxFramePayloadSize": 0}, 0xFFFF),
        ({"applyMask": False}, -1),
        ({"logFrames": True}, -1),
        ({"logOctets": True}, -1),
        ({"trackTimings": True}, -1),
    ],
)
def test_which_protocol_options_allow_the_simple_path(options, limit):
    class Options:
        applyMask = True
        logFrames = logOctets = trackTimings = False
        maxFramePayloadSize = maxMessagePayloadSize = 1048576

    for name, value in options.items():
        setattr(Options, name, value)
    assert simple_frame_limit(Options) == limit


def test_the_factory_sets_the_limit_from_max_message_size():
    h = WSHarness(make_node("[servers.websocket]\nmaxMessageSize = 4096\n"))
    assert h.web_server.websocket_resource._factory.protocol._simple_frame_limit == 4096
    h = WSHarness(make_node(""))
    assert h.web_server.websocket_resource._factory.protocol._simple_frame_limit == 0xFFFF


def test_the_limit_cases_are_at_and_over_the_limit():
    lengths = [len(CASES[name][0]) - 6 for name in ("a frame at the size limit", "a frame over the size limit")]
    assert lengths == [100, 101]
    at, over = run(CASES["a frame at the size limit"], True), run(CASES["a frame over the size limit"], True)
    assert (at["close"][2], over["close"][2]) == (None, 1009)


def test_a_simple_frame_never_reaches_autobahns_parser(monkeypatch):
    """The simple path is taken (the comparison above would also pass if it never were)."""
    h = WSHarness(make_node(""))
    c = h.client()
    protocol = c.transport.protocol

    def refuse() -> bool:
        raise AssertionError("processData called")

    monkeypatch.setattr(protocol, "processData", refuse)
    c.send_raw(ADD + LEAVE)
    assert [m["messageId"] for m in c.messages()] == [1, "two"]
    with pytest.raises(AssertionError, match="processData called"):
        c.send_raw(PING)
