"""Websocket test helpers: :mod:`ahtwist.testing.websocket_client`, re-exported."""

from ahtwist.testing.websocket_client import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    SwappableTransport,
    WSClient,
    WSHarness,
    decode_frame,
    decode_frames,
    encode_frame,
    mask_bytes,
)

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "SwappableTransport",
    "WSClient",
    "WSHarness",
    "decode_frame",
    "decode_frames",
    "encode_frame",
    "mask_bytes",
]
