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

# (frame type, channel, payload); the payload of a body frame of BODY_VIEW_MIN bytes or
# more is a memoryview of the bytes it was read in (ContentAssembler.body copies it)
Frame = tuple[int, int, bytes]
BODY_VIEW_MIN = 16 * 1024
_FRAME_TYPES = frozenset((FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT))


class FrameReader:
    """Splits a byte stream into (type, channel, payload) frames.

    `frame_max` is the negotiated frame_max. As RabbitMQ (rabbit_reader's
    FRAME_SIZE_FUDGE), a payload of up to frame_max bytes is accepted, 8 more than
    the spec allows, since common clients get it wrong; a bigger one is a FRAME_ERROR
    with RabbitMQ's text.

    Each chunk fed is parsed where it is (bytes are immutable, so each payload costs
    one slice). Bytes left after the last whole frame are kept as they came, not
    copied: the next feed joins the rest of that frame from them and its first bytes,
    copying only that frame's payload, then goes on in place in the new chunk.
    """

    __slots__ = ("_held", "_rest", "frame_max")

    def __init__(self, frame_max: int = FRAME_MIN_SIZE) -> None:
        # chunks (or views of their tails) not yet parsed, oldest first; _held bytes
        self._rest: list[bytes | memoryview] = []
        self._held = 0
        self.frame_max = frame_max

    def __len__(self) -> int:
        return self._held

    def hold(self, data: bytes) -> None:
        """Buffer data without parsing it (input paused)."""
        if data:
            self._rest.append(bytes(data) if type(data) is not bytes else data)
            self._held += len(data)

    def feed(self, data: bytes) -> Iterator[Frame]:
        """Add data and yield every complete frame now available.

        Bytes of an incomplete trailing frame stay buffered for the next feed.
        """
        if type(data) is not bytes:
            data = bytes(data)
        pos = 0
        if self._rest:
            self.hold(data)
            first = self._first_frame()
            if first is None:
                return
            frame, data, pos = first
        else:
            frame = None
        buf = data
        end = len(buf)
        frame_max = self.frame_max
        unpack = _unpack_head
        view_min = BODY_VIEW_MIN
        try:
            if frame is not None:
                yield frame
            while end - pos >= 7:  # FRAME_HEADER_SIZE
                frame_type, channel, size = unpack(buf, pos)
                if size > frame_max:
                    raise FrameError(_too_large(frame_type, size, frame_max))
                last = pos + size + 7  # the frame end octet
                if last >= end:
                    break
                if buf[last] != 0xCE:  # FRAME_END
                    raise FrameError(f"frame end octet missing (got {buf[last]:#x})")
                if frame_type not in _FRAME_TYPES:
                    raise FrameError(f"unknown frame type {frame_type}", FRAME_ERROR)
                if size < view_min or frame_type != 3:  # FRAME_BODY
                    payload = buf[pos + 7: last]
                else:
                    # a big body frame: a view of the chunk (immutable bytes, so the view
                    # stays valid); the assembler copies it once, into the whole body
                    payload = memoryview(buf)[pos + 7: last]  # type: ignore[assignment]
                pos = last + 1
                yield frame_type, channel, payload
        finally:
            if pos < end:
                # a view of the tail, not a copy of it (buf is bytes: it cannot change)
                self._rest = [buf if not pos else memoryview(buf)[pos:]]
                self._held = end - pos

    def _first_frame(self) -> tuple[Frame, bytes, int] | None:
        """The frame the buffered chunks begin with, once they hold all of it, and where
        parsing goes on: (frame, chunk, offset in it). None while it is incomplete."""
        rest = self._rest
        if self._held < FRAME_HEADER_SIZE:
            return None
        if len(rest[0]) < FRAME_HEADER_SIZE:  # a read ended inside a frame header
            rest[:] = [b"".join(rest)]
        head = rest[0]
        frame_type, channel, size = _unpack_head(head, 0)
        if size > self.frame_max:
            raise FrameError(_too_large(frame_type, size, self.frame_max))
        total = size + 8
        if self._held < total:
            return None
        # the frame's bytes: whole chunks, then the head of the one it ends in
        pieces: list[bytes | memoryview] = []
        got = 0
        i = 0
        while True:
            chunk = rest[i]
            n = len(chunk)
            if got + n >= total:
                cut = total - got
                last = memoryview(chunk)[:cut] if cut < n else chunk
                pieces.append(last)
                break
            pieces.append(chunk)
            got += n
            i += 1
        end_octet = last[-1]
        if end_octet != FRAME_END:
            raise FrameError(f"frame end octet missing (got {end_octet:#x})")
        if frame_type not in _FRAME_TYPES:
            raise FrameError(f"unknown frame type {frame_type}", FRAME_ERROR)
        # the payload alone, copied once: drop the header and the end octet by view
        pieces[0] = memoryview(pieces[0])[FRAME_HEADER_SIZE:]
        pieces[-1] = memoryview(pieces[-1])[:-1]
        payload = bytes(pieces[0]) if len(pieces) == 1 else b"".join(pieces)
        frame = (frame_type, channel, payload)
        self._rest = []
        self._held = 0
        # what follows the frame: the rest of the chunk it ended in, then later chunks
        after = rest[i + 1:]
        if cut < n:
            if not after and type(chunk) is bytes:
                return frame, chunk, cut  # the chunk just fed: parsing goes on in it
            after.insert(0, memoryview(chunk)[cut:])
        if not after:
            return frame, b"", 0
        if len(after) == 1 and type(after[0]) is bytes:
            return frame, after[0], 0
        return frame, b"".join(after), 0


def _too_large(frame_type: int, size: int, frame_max: int) -> str:
    return f"type {frame_type}, all octets = <<>>: {{frame_too_large,{size},{frame_max - 8}}}"


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
