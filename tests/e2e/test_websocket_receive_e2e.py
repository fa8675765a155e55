"""Client frames over real sockets to a real ``twistd ahtwist``: the simple-frame
path (``ahtwist/websocket_receive.py``) and every case it leaves to Autobahn.

Each case opens its own websocket, writes raw bytes (several writes where
the case needs a frame split across TCP segments) and asserts the exact
frames the server answers with, or the close code it fails the connection
with.  ``maxMessageSize`` is 300 so that both length encodings the simple
path reads (7-bit and 16-bit) meet the limit.
"""

import json
import struct
import time

import pytest

from tests.e2e.twistd import AhtwistProcess
from tests.e2e.ws_blocking import BlockingWebSocket
from tests.wshelpers import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    encode_frame,
    mask_bytes,
)

MASK = b"\x01\x80\xfe\x7f"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = tmp_path_factory.mktemp("ws-receive") / "ahtwist.toml"
    config.write_text("[servers.websocket]\nmaxMessageSize = 300\n")
    process = AhtwistProcess(config=str(config)).start()
    yield process
    process.cleanup()


def connect(server) -> BlockingWebSocket:
    ws = BlockingWebSocket(server.ws_url, timeout=5)
    assert ws.status == 101
    assert ws.recv()["context"] == "api"
    return ws


def add(message_id, pad: int = 0, event: str = "roomAdd") -> bytes:
    """A masked text frame joining (or leaving) defaultRoom, padded with spaces."""
    body = '{"event":"%s","room":"defaultRoom","messageId":%s}' % (event, json.dumps(message_id))
    return encode_frame(OP_TEXT, (body + " " * pad).encode(), mask=MASK)


def leave(message_id, pad: int = 0) -> bytes:
    return add(message_id, pad, "roomLeave")


def added(count: int, message_id) -> tuple[int, bytes]:
    """The reply frame to a roomAdd or roomLeave that succeeded."""
    return OP_TEXT, (
        '{"status":"OK","context":"response","data":true,"messageCount":%d,"messageId":%s}'
        % (count, json.dumps(message_id))
    ).encode()


def raw_frame(first: int, second: int, extended: bytes, payload: bytes) -> bytes:
    return bytes([first, second]) + extended + MASK + mask_bytes(payload, MASK)


def closed_with(ws: BlockingWebSocket) -> int | None:
    """The code of the server's close frame (answered), after any other frames."""
    try:
        return ws.wait_closed(5)
    finally:
        ws.sock.close()


def exchange(server, *writes: bytes, frames: int) -> list[tuple[int, bytes]]:
    """Open a websocket, write each of ``writes`` (pausing between them so
    they arrive as separate reads), read ``frames`` frames, close."""
    ws = connect(server)
    try:
        for i, data in enumerate(writes):
            if i:
                time.sleep(0.05)
            ws.sock.sendall(data)
        return [ws.recv_frame() for _ in range(frames)]
    finally:
        ws.close()


def test_one_frame_7_and_16_bit_lengths(server):
    assert exchange(server, add(1), frames=1) == [added(1, 1)]
    padded = add("p", pad=200)
    assert padded[1] == 0x80 | 126
    assert exchange(server, padded, frames=1) == [added(1, "p")]


def test_several_frames_in_one_write_answer_in_order(server):
    assert exchange(server, add(1) + leave(2) + add(3), frames=3) == [added(1, 1), added(2, 2), added(3, 3)]


def test_frames_split_across_writes(server):
    a, b = add("a"), leave("b", pad=150)
    assert exchange(server, a[:1], a[1:7], a[7:] + b[:3], b[3:], frames=2) == [added(1, "a"), added(2, "b")]


def test_binary_frames_and_empty_frames_get_no_reply(server):
    writes = (
        encode_frame(OP_BINARY, b'{"event":"roomAdd","room":"defaultRoom"}', mask=MASK)
        + encode_frame(OP_TEXT, b"", mask=MASK)
        + encode_frame(OP_BINARY, b"", mask=MASK)
        + add(4)
    )
    assert exchange(server, writes, frames=1) == [added(1, 4)]


def test_non_ascii_utf8_text(server):
    body = '{"event":"roomAdd","room":"é€😀","messageId":5}'.encode()
    [(opcode, payload)] = exchange(server, encode_frame(OP_TEXT, body, mask=MASK), frames=1)
    assert opcode == OP_TEXT
    assert json.loads(payload)["messageId"] == 5


def test_a_ping_between_fragments_then_a_simple_frame(server):
    writes = (
        encode_frame(OP_TEXT, b'{"event":"roomAdd",', fin=False, mask=MASK)
        + encode_frame(OP_PING, b"hi", mask=MASK)
        + encode_frame(OP_CONT, b'"room":"defaultRoom","messageId":6}', mask=MASK)
        + leave(7)
    )
    assert exchange(server, writes, frames=3) == [(OP_PONG, b"hi"), added(1, 6), added(2, 7)]


def test_at_the_size_limit_is_answered(server):
    frame = add(8, pad=300 - len(add(8)) + 6)
    assert frame[1] == 0x80 | 126 and struct.unpack("!H", frame[2:4])[0] == 300
    assert exchange(server, frame, frames=1) == [added(1, 8)]


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("over the size limit", encode_frame(OP_TEXT, b" " * 301, mask=MASK), 1009),
        ("invalid UTF-8", encode_frame(OP_TEXT, b'{"event":"\xff"}', mask=MASK), 1007),
        ("a code point cut at the end", encode_frame(OP_TEXT, b'"\xe2\x82', mask=MASK), 1007),
        ("a UTF-8 surrogate", encode_frame(OP_TEXT, b'"\xed\xa0\x80"', mask=MASK), 1007),
        ("unmasked", encode_frame(OP_TEXT, b"{}", mask=None), 1002),
        ("RSV1 set", raw_frame(0xC1, 0x82, b"", b"{}"), 1002),
        ("a reserved opcode", raw_frame(0x83, 0x82, b"", b"{}"), 1002),
        ("a continuation outside a message", raw_frame(0x80, 0x82, b"", b"{}"), 1002),
        ("a 16-bit length that fits 7 bits", raw_frame(0x81, 0x80 | 126, struct.pack("!H", 2), b"{}"), 1002),
    ],
)
def test_frames_the_simple_path_leaves_to_autobahn_fail_the_connection(server, name, data, code):
    ws = connect(server)
    ws.sock.sendall(add(1) + data + add(2))
    assert ws.recv_frame() == added(1, 1)
    assert closed_with(ws) == code


def test_a_frame_then_a_close_in_one_write(server):
    ws = connect(server)
    ws.sock.sendall(add(1) + encode_frame(OP_CLOSE, struct.pack("!H", 1000), mask=MASK))
    assert ws.recv_frame() == added(1, 1)
    assert ws.recv_frame() == (OP_CLOSE, struct.pack("!H", 1000))
    ws.sock.close()


def test_quit_then_a_frame_in_one_write(server):
    ws = connect(server)
    ws.sock.sendall(encode_frame(OP_TEXT, b'{"event":"quit"}', mask=MASK) + add(1))
    assert ws.recv_frame() == (OP_CLOSE, struct.pack("!H", 1000))
    ws.sock.close()
