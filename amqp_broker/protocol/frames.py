"""AMQP 0-9-1 framing, sans-IO: bytes in, frames out; frames in, bytes out.

A frame on the wire is: type (octet), channel (short), size (long), payload,
frame-end octet 0xCE. FrameReader splits a byte stream into frames and raises
FrameError for anything that is not valid framing; it never reads a socket.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from .errors import FRAME_ERROR, FrameError

FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8
FRAME_END = 0xCE
FRAME_END_BYTE = b"\xce"
FRAME_HEADER_SIZE = 7
FRAME_MIN_SIZE = 4096  # frame_max in force until tune-ok (spec: frame-min-size)

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"

_frame_head = struct.Struct(">BHI")
_unpack_head = _frame_head.unpack_from
_pack_head = _frame_head.pack

HEARTBEAT_FRAME = _pack_head(FRAME_HEARTBEAT, 0, 0) + FRAME_END_BYTE

Frame = tuple[int, int, bytes]  # (frame type, channel, payload)


class FrameReader:
    """Splits a byte stream into (type, channel, payload) frames.

    `frame_max` is the negotiated frame_max. As RabbitMQ (rabbit_reader's
    FRAME_SIZE_FUDGE), a payload of up to frame_max bytes is accepted, 8 more than
    the spec allows, since common clients get it wrong; a bigger one is a FRAME_ERROR
    with RabbitMQ's text.
    """

    __slots__ = ("_buf", "frame_max")

    def __init__(self, frame_max: int = FRAME_MIN_SIZE) -> None:
        # Immutable bytes: a socket read usually starts on a frame boundary, so the
        # chunk is parsed in place and each payload costs one slice, not two copies.
        self._buf = b""
        self.frame_max = frame_max

    def __len__(self) -> int:
        return len(self._buf)

    def hold(self, data: bytes) -> None:
        """Buffer data without parsing it (input paused)."""
        self._buf += data

    def feed(self, data: bytes) -> Iterator[Frame]:
        """Add data and yield every complete frame now available.

        Bytes of an incomplete trailing frame stay buffered for the next feed.
        """
        buf = self._buf + data if self._buf else bytes(data)
        self._buf = buf
        pos = 0
        end = len(buf)
        frame_max = self.frame_max
        try:
            while end - pos >= FRAME_HEADER_SIZE:
                frame_type, channel, size = _unpack_head(buf, pos)
                if size > frame_max:
                    raise FrameError(f"type {frame_type}, all octets = <<>>: "
                                     f"{{frame_too_large,{size},{frame_max - 8}}}")
                total = size + 8
                if end - pos < total:
                    break
                if buf[pos + total - 1] != FRAME_END:
                    raise FrameError(f"frame end octet missing (got {buf[pos + total - 1]:#x})")
                if frame_type not in (1, 2, 3, 8):
                    raise FrameError(f"unknown frame type {frame_type}", FRAME_ERROR)
                payload = buf[pos + FRAME_HEADER_SIZE: pos + total - 1]
                pos += total
                yield frame_type, channel, payload
        finally:
            if pos:
                self._buf = buf[pos:]


def frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    return b"".join((_pack_head(frame_type, channel, len(payload)), payload, FRAME_END_BYTE))


def method_frame(channel: int, payload: bytes) -> bytes:
    return _pack_head(FRAME_METHOD, channel, len(payload)) + payload + FRAME_END_BYTE


_content_header = struct.Struct(">BHIHHQ")


def content_frames(channel: int, properties: bytes, body: bytes, frame_max: int) -> list[bytes]:
    """Content header frame and as many body frames as frame_max requires."""
    parts = [
        _content_header.pack(FRAME_HEADER, channel, 12 + len(properties), 60, 0, len(body)),
        properties,
        FRAME_END_BYTE,
    ]
    if body:
        chunk = frame_max - 8
        if len(body) <= chunk:
            parts += (_pack_head(FRAME_BODY, channel, len(body)), body, FRAME_END_BYTE)
        else:
            view = memoryview(body)
            for start in range(0, len(body), chunk):
                piece = view[start: start + chunk]
                parts += (_pack_head(FRAME_BODY, channel, len(piece)), bytes(piece), FRAME_END_BYTE)
    return parts
