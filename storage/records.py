"""The disk store's record format: file headers, record frames, encoders, the scanner.

The format itself is described at the top of storage/disk.py. This module holds the
struct layouts and the encoders of every record, the header check, and the Scanner
that verifies records and resynchronises after corruption. The other pieces of the
disk store: storage/writer.py (the group commit's file writes), storage/recovery.py
(reading the logs and segments back), storage/refs.py (one queue's references in RAM).
"""

from __future__ import annotations

import json
import logging
import struct
import sys
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zlib import crc32

from .base import StoreError
from .refs import DELIVERED, QueueRefs

log = logging.getLogger(__name__)

VERSION = 2  # written; version 1 files are still read
SEGMENT_MAGIC = b"AMQPSEG\x00"
INDEX_MAGIC = b"AMQPIDX\x00"
DEFS_MAGIC = b"AMQPDEF\x00"
# magic, version, flags (0), then version 1: file number; version 2: crc32 of bytes 0-11
FILE_HEADER = struct.Struct("<8sHHI")
HEADER_SIZE = FILE_HEADER.size  # 16
HEADER_CHECKED = HEADER_SIZE - 4  # the bytes a version 2 header's checksum covers

RECORD_MAGIC = 0x5245438E  # b"\x8eCER" on disk
FRAME = struct.Struct("<III")  # record magic, payload length, crc32(payload)
FRAME_SIZE = FRAME.size  # 12
_MAGIC_BYTES = struct.pack("<I", RECORD_MAGIC)

# payload kinds: the first byte of every payload
K_MESSAGE = 1  # segments only
K_DEF_V1 = 2  # version 1 definition records (no sequence number): read only
K_UNDEF_V1 = 3
K_REMOVE = 4
K_DELIVERED = 5
K_DELETE_QUEUE = 6
K_BASE = 7
K_LIVE = 8
K_END = 9  # closes the snapshot that a compacted index.log or defs.log starts with
K_DEF = 10
K_UNDEF = 11

# message payload head: kind, msg_id, body_len, props_len, n_queues, exchange_len, rk_len
MSG_HEAD = struct.Struct("<BQIIHHH")
U16 = struct.Struct("<H")
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
KIND_U16 = struct.Struct("<BH")  # kind, name length (queue or definition key)
BASE = struct.Struct("<BQQ")  # kind, watermark, next_msg_id
END = struct.Struct("<BQQII")  # kind, watermark, definition seq, DEF records, LIVE records

_SWAP = sys.byteorder != "little"


def file_header(magic: bytes) -> bytes:
    """A version 2 header: its last 4 bytes are the crc32 of the first 12."""
    head = FILE_HEADER.pack(magic, VERSION, 0, 0)[:HEADER_CHECKED]
    return head + U32.pack(crc32(head))


def frame(payload: bytes) -> bytes:
    """One whole record: frame then payload."""
    return FRAME.pack(RECORD_MAGIC, len(payload), crc32(payload)) + payload


def text_bytes(text: str) -> bytes:
    """Names, keys and routing keys are bytes on the wire (AMQP short strings need not be
    UTF-8); the broker carries them as str with surrogate escapes, stored byte for byte."""
    return text.encode("utf-8", "surrogateescape")


def bytes_text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def name_field(name: str) -> bytes:
    """A u16-length-prefixed string (the name's wire bytes) for queue names and keys."""
    raw = text_bytes(name)
    return U16.pack(len(raw)) + raw


def message_head(msg_id: int, exchange: bytes, routing_key: bytes, properties: bytes,
                 body: bytes, queue_fields: bytes, n_queues: int) -> bytes:
    """Frame plus every payload byte before the body: the record is head + body."""
    meta = b"".join((MSG_HEAD.pack(K_MESSAGE, msg_id, len(body), len(properties), n_queues,
                                   len(exchange), len(routing_key)),
                     queue_fields, exchange, routing_key, properties))
    crc = crc32(body, crc32(meta))
    return FRAME.pack(RECORD_MAGIC, len(meta) + len(body), crc) + meta


def ids_bytes(ids: array) -> bytes:  # type: ignore[type-arg]
    if _SWAP:
        ids = array("q", ids)
        ids.byteswap()
    return ids.tobytes()


def ids_from(payload: bytes | memoryview) -> array:  # type: ignore[type-arg]
    ids = array("q")
    ids.frombytes(payload)
    if _SWAP:
        ids.byteswap()
    return ids


def ids_record(kind: int, queue: str, ids: array) -> bytes:  # type: ignore[type-arg]
    """REMOVE, DELIVERED or LIVE: the queue then msg_ids as little-endian u64s."""
    raw = text_bytes(queue)
    return frame(KIND_U16.pack(kind, len(raw)) + raw + ids_bytes(ids))


def key_record(kind: int, key: str, tail: bytes = b"") -> bytes:
    """DEF (tail = u64 seq + JSON), UNDEF (tail = u64 seq), DELETE_QUEUE (tail = u64
    watermark)."""
    raw = text_bytes(key)
    return frame(KIND_U16.pack(kind, len(raw)) + raw + tail)


def def_record(key: str, seq: int, raw_json: bytes) -> bytes:
    return key_record(K_DEF, key, U64.pack(seq) + raw_json)


def undef_record(key: str, seq: int) -> bytes:
    return key_record(K_UNDEF, key, U64.pack(seq))


def base_record(watermark: int, next_msg_id: int) -> bytes:
    return frame(BASE.pack(K_BASE, watermark, next_msg_id))


def end_record(watermark: int, seq: int, n_defs: int, n_live: int) -> bytes:
    return frame(END.pack(K_END, watermark, seq, n_defs, n_live))


def split_key(payload: memoryview) -> tuple[int, str, memoryview]:
    """(kind, name, rest) of a DEF/UNDEF/REMOVE/DELIVERED/LIVE/DELETE_QUEUE payload."""
    kind, n = KIND_U16.unpack_from(payload)
    end = KIND_U16.size + n
    return kind, bytes_text(bytes(payload[KIND_U16.size:end])), payload[end:]


class Scanner:
    """Iterates the verified records of one file's bytes.

    A record that fails its check (bad magic, length past the end, CRC
    mismatch) makes the scanner search forward for the next record magic whose
    record verifies. When one is found the bad stretch is logged with file and
    offset and counted in `skipped`; when none is found the bad bytes are the
    tail: `end` is where the file should be truncated.
    """

    def __init__(self, data: bytes, start: int, path: str) -> None:
        self.data = data
        self.start = start
        self.path = path
        self.skipped = 0
        self.end = start  # offset just past the last good record
        self.tail_bytes = 0  # bytes after `end` that will be dropped

    def _valid_at(self, pos: int) -> int:
        """End offset of a verified record at pos, or -1."""
        data = self.data
        if len(data) - pos < FRAME_SIZE:
            return -1
        magic, length, crc = FRAME.unpack_from(data, pos)
        end: int = pos + FRAME_SIZE + length
        if magic != RECORD_MAGIC or end > len(data):
            return -1
        if crc32(memoryview(data)[pos + FRAME_SIZE:end]) != crc:
            return -1
        return end

    def _resync(self, pos: int) -> int:
        find = self.data.find
        while True:
            pos = find(_MAGIC_BYTES, pos)
            if pos < 0 or self._valid_at(pos) >= 0:
                return pos
            pos += 1

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        """Yields (record offset, payload start, payload end)."""
        data = self.data
        size = len(data)
        view = memoryview(data)
        unpack = FRAME.unpack_from
        pos = self.start
        while pos < size:
            if size - pos >= FRAME_SIZE:
                magic, length, crc = unpack(data, pos)
                body = pos + FRAME_SIZE
                end = body + length
                if magic == RECORD_MAGIC and end <= size and crc32(view[body:end]) == crc:
                    yield pos, body, end
                    pos = self.end = end
                    continue
            nxt = self._resync(pos + 1)
            if nxt < 0:
                self._tail(pos)
                return
            self.skipped += 1
            log.error("store file %s: corrupt record at offset %d, skipped %d bytes to offset %d",
                      self.path, pos, nxt - pos, nxt,
                      extra={"file": str(self.path), "offset": pos, "skipped_bytes": nxt - pos})
            pos = nxt

    def _tail(self, pos: int) -> None:
        data = self.data
        self.tail_bytes = len(data) - pos
        torn = len(data) - pos < FRAME_SIZE or not data[pos:].strip(b"\x00")
        if not torn:
            magic, length, _ = FRAME.unpack_from(data, pos)
            torn = magic == RECORD_MAGIC and pos + FRAME_SIZE + length > len(data)
        if torn:
            log.warning("store file %s: torn record at offset %d (%d bytes), dropped",
                        self.path, pos, self.tail_bytes,
                        extra={"file": str(self.path), "offset": pos, "bytes": self.tail_bytes})
        else:
            self.skipped += 1
            log.error("store file %s: corrupt last record at offset %d (%d bytes), dropped",
                      self.path, pos, self.tail_bytes,
                      extra={"file": str(self.path), "offset": pos, "bytes": self.tail_bytes})


def check_header(data: bytes, magic: bytes, path: Path) -> int:
    """The format version of a file's header: 1 or 2, 0 when the header is damaged (its
    records are read anyway: each is self-checking), -1 when data is too short to hold a
    header. Raises StoreError for an intact header of a newer version.

    A version 2 header ends with the crc32 of its first 12 bytes, so that a flipped bit
    (in the version or anywhere else) is told apart from a newer format; a version 1
    header has no checksum and is taken as such only when it is exactly what version 1
    wrote (its magic, version 1, flags 0).
    """
    if len(data) < HEADER_SIZE:
        log.warning("store file %s: shorter than its header, ignored", path,
                    extra={"file": str(path)})
        return -1
    got, version, flags, check = FILE_HEADER.unpack_from(data)
    if version >= 2 and check == crc32(data[:HEADER_CHECKED]):
        if version > VERSION:
            raise StoreError(f"{path}: format version {version} is newer than {VERSION}, the "
                             "newest this broker reads (written by a newer broker?)")
        if got != magic:
            log.error("store file %s: header magic %r instead of %r; reading its records "
                      "anyway", path, got, magic, extra={"file": str(path)})
        return int(version)
    if version == 1 and flags == 0 and got == magic:
        return 1
    log.error("store file %s: damaged header (magic %r, version %d, flags %d); reading its "
              "records anyway", path, got, version, flags,
              extra={"file": str(path), "version": version, "flags": flags})
    return 0


def compacted_logs(seq: int, watermark: int, definitions: dict[str, dict[str, Any]],
                   dropped: dict[str, int], queues: dict[str, QueueRefs]) -> tuple[bytes, bytes]:
    """A compacted index.log holding the whole live state, and a compacted defs.log holding
    the definitions and queue deletions again; every DEF carries the snapshot's seq."""
    defs = [def_record(key, seq, json.dumps(record, separators=(",", ":")).encode())
            for key, record in definitions.items()]
    deleted = [key_record(K_DELETE_QUEUE, q, U64.pack(w)) for q, w in dropped.items()]
    parts = [file_header(INDEX_MAGIC), base_record(watermark, watermark + 1), *defs, *deleted]
    n_live = 0
    for queue, refs in queues.items():
        if refs.removed:
            refs._compact()
        live = refs.ids[refs.head:]
        if live:
            parts.append(ids_record(K_LIVE, queue, live))
            n_live += 1
        delivered = array("q", (m for m, f in refs.live() if f & DELIVERED))
        if delivered:
            parts.append(ids_record(K_DELIVERED, queue, delivered))
    parts.append(end_record(watermark, seq, len(defs), n_live))
    defs_file = [file_header(DEFS_MAGIC), *defs, *deleted, end_record(watermark, seq, len(defs), 0)]
    return b"".join(parts), b"".join(defs_file)
