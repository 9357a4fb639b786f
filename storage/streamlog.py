# On-disk format of a stream queue's log (one directory per stream):
#
#   <data_dir>/streams/<sha1 of vhost NUL queue name>/meta.json   {"vhost": ..., "queue": ...}
#   <data_dir>/streams/<...>/<first offset, 20 decimal digits>.seg    segment files
#
# A segment starts with the 16-byte file header of storage/records.py (magic "AMQPSTM\0",
# version 2, crc32 of the header) and holds records framed as the message store's are
# (u32 record magic | u32 payload length | u32 crc32(payload) | payload), little-endian:
#   u8 kind=32 | u64 offset | u64 timestamp (ms since the epoch, when appended)
#   | u16 exchange_len | u16 routing_key_len | u32 properties_len
#   | exchange | routing_key | properties (raw content-header property bytes) | body
# (exchange and routing key are AMQP short strings: a length octet, then the bytes).
# Offsets number the messages of the stream from 0 without gaps; a segment's name is the
# offset of its first record, so the segments list the whole retained log in order.
# Records are only ever appended (to the newest segment); a new segment starts when the
# current one would pass the segment size. Retention (x-max-length-bytes, x-max-age)
# deletes whole segments, oldest first, never the newest one, when a segment is rolled
# and when the log is opened, as RabbitMQ's osiris does.
#
# RAM holds, per segment, a sparse index: (offset, file position, timestamp) of its first
# record and then of one record per INDEX_EVERY bytes; a read seeks to the nearest indexed
# record before the wanted offset and scans forward, reading INDEX_EVERY-sized blocks.
#
# Durability: appends are written to the file at once (page cache); `sync()` fsyncs the
# newest segment, and the broker runs it in the message store's group commit before it
# sends the publisher confirms of what was appended (storage/base.py sync_with). On open
# every record is verified (frame, crc32, offset sequence); a torn or corrupt tail is
# logged and the segment truncated to its last good record, and later segments, which can
# no longer follow without a gap, are set aside (renamed *.seg.bad), never read as data.
#
# Without a directory (the broker keeps messages in memory only) segments are bytearrays
# with the same layout and rules.
"""A stream queue's append-only log: segments of records read by offset or by time."""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple
from zlib import crc32

from .base import StoreError
from .records import (
    FRAME,
    FRAME_SIZE,
    HEADER_CHECKED,
    HEADER_SIZE,
    RECORD_MAGIC,
    U32,
    file_header,
)
from .writer import fsync_dir

log = logging.getLogger(__name__)

STREAM_MAGIC = b"AMQPSTM\x00"
K_STREAM = 32
HEAD = struct.Struct("<BQQHHI")  # kind, offset, timestamp, exchange, routing key, props lengths
INDEX_EVERY = 16 * 1024  # bytes of records between two sparse index entries
READ_BLOCK = 64 * 1024
RECOVER_BLOCK = 1024 * 1024  # bytes read at a time when a segment is verified at open
RESUME_HINTS = 1024  # read positions remembered for consumers going on (see read)
DEFAULT_SEGMENT_BYTES = 500_000_000  # RabbitMQ's default x-stream-max-segment-size-bytes


class Entry(NamedTuple):
    """One record read back."""

    offset: int
    timestamp: int  # ms since the epoch
    exchange: bytes
    routing_key: bytes
    properties: bytes
    body: bytes


class Segment:
    """One segment: a file (fd) or, without a directory, a bytearray (data)."""

    __slots__ = ("data", "fd", "first", "last_ts", "next", "offs", "path", "poss", "size",
                 "tss", "_indexed_at")

    def __init__(self, first: int, path: Path | None) -> None:
        self.first = first  # offset of its first record
        self.next = first  # offset its next record would have
        self.path = path
        self.fd = -1
        self.data: bytearray | None = None if path is not None else bytearray(
            file_header(STREAM_MAGIC))
        self.size = HEADER_SIZE
        self.last_ts = 0
        self.offs = array("q")
        self.poss = array("q")
        self.tss = array("q")
        self._indexed_at = -INDEX_EVERY

    @property
    def count(self) -> int:
        return self.next - self.first

    def note(self, offset: int, pos: int, ts: int, end: int) -> None:
        """A record at pos was appended or recovered; it ends at end."""
        if pos - self._indexed_at >= INDEX_EVERY:
            self.offs.append(offset)
            self.poss.append(pos)
            self.tss.append(ts)
            self._indexed_at = pos
        self.next = offset + 1
        self.size = end
        self.last_ts = ts

    def pread(self, n: int, pos: int) -> bytes:
        if self.data is not None:
            return bytes(self.data[pos:pos + n])
        return os.pread(self.fd, n, pos)


def _name(first: int) -> str:
    return f"{first:020d}.seg"


def encode(offset: int, timestamp: int, exchange: bytes, routing_key: bytes,
           properties: bytes, body: bytes) -> list[bytes]:
    """A record as chunks (the body is not copied)."""
    meta = HEAD.pack(K_STREAM, offset, timestamp, len(exchange), len(routing_key),
                     len(properties)) + exchange + routing_key + properties
    crc = crc32(body, crc32(meta))
    return [FRAME.pack(RECORD_MAGIC, len(meta) + len(body), crc) + meta, body]


def decode(payload: bytes | memoryview) -> Entry:
    kind, offset, ts, ex_len, rk_len, props_len = HEAD.unpack_from(payload, 0)
    pos = HEAD.size
    ex = bytes(payload[pos:pos + ex_len])
    pos += ex_len
    rk = bytes(payload[pos:pos + rk_len])
    pos += rk_len
    props = bytes(payload[pos:pos + props_len])
    pos += props_len
    return Entry(offset, ts, ex, rk, props, bytes(payload[pos:]))


class StreamLog:
    """The retained messages of one stream, numbered by offset."""

    def __init__(self, directory: Path | None, segment_bytes: int = DEFAULT_SEGMENT_BYTES,
                 max_bytes: int | None = None, max_age_ms: int | None = None,
                 do_fsync: bool = True) -> None:
        self.dir = directory
        self.segment_bytes = max(segment_bytes, HEADER_SIZE + 1)
        self.max_bytes = max_bytes
        self.max_age_ms = max_age_ms
        self.do_fsync = do_fsync
        self.segments: list[Segment] = []
        self.firsts: list[int] = []  # first offset of each segment, for bisect
        self.bytes = 0  # record bytes in the retained segments
        self.dirty = False  # appended since the last sync
        self.closed = False
        self._lock = threading.Lock()  # sync() runs in the store's writer thread
        # next offset -> (segment, its position) where earlier reads stopped
        self._resume: dict[int, tuple[Segment, int]] = {}

    # --- lifecycle -------------------------------------------------------------
    def open(self, meta: dict[str, str] | None = None) -> None:
        """Create the directory, or recover the segments it holds."""
        if self.dir is not None:
            fresh = not self.dir.exists()
            self.dir.mkdir(parents=True, exist_ok=True)
            if fresh:
                if meta is not None:
                    (self.dir / "meta.json").write_text(json.dumps(meta))
                fsync_dir(self.dir.parent)
            names = sorted(p.name for p in self.dir.glob("*.seg"))
            expected: int | None = None
            for name in names:
                path = self.dir / name
                try:
                    first = int(name[:-4])
                except ValueError:
                    continue
                if expected is not None and first != expected:
                    self._set_aside(path, f"does not follow offset {expected - 1}")
                    continue
                seg, complete = self._recover(path, first)
                if seg is None:
                    continue
                self._add(seg)
                expected = seg.next
                if not complete:
                    expected = -1  # nothing after a truncated segment can follow it
        if not self.segments:
            self._add(self._new_segment(0))
        self.retain()

    def _recover(self, path: Path, first: int) -> tuple[Segment | None, bool]:
        seg = Segment(first, path)
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        seg.fd = fd
        size = os.fstat(fd).st_size
        head = os.pread(fd, HEADER_SIZE, 0)
        if len(head) < HEADER_SIZE or head[:8] != STREAM_MAGIC or (
                U32.unpack_from(head, HEADER_CHECKED)[0] != crc32(head[:HEADER_CHECKED])):
            if size <= HEADER_SIZE:  # created but never written: start it again
                os.ftruncate(fd, 0)
                os.pwrite(fd, file_header(STREAM_MAGIC), 0)
                return seg, True
            os.close(fd)
            self._set_aside(path, "bad file header")
            return None, True
        pos = HEADER_SIZE
        offset = first
        complete = True
        buf = b""
        base = pos  # file position of buf[0]
        while pos < size:
            if pos + FRAME_SIZE > base + len(buf):
                buf, base = os.pread(fd, RECOVER_BLOCK, pos), pos
            ok = pos + FRAME_SIZE <= base + len(buf)
            if ok:
                magic, length, crc = FRAME.unpack_from(buf, pos - base)
                end = pos + FRAME_SIZE + length
                ok = magic == RECORD_MAGIC and length >= HEAD.size and end <= size
            if ok:
                if end > base + len(buf):  # the record runs past the block: read it whole
                    buf, base = os.pread(fd, max(RECOVER_BLOCK, end - pos), pos), pos
                payload = memoryview(buf)[pos - base + FRAME_SIZE:end - base]
                ok = (len(payload) == length and crc32(payload) == crc
                      and payload[0] == K_STREAM and HEAD.unpack_from(payload, 0)[1] == offset)
            if not ok:
                log.error("stream segment %s: bad or torn record at byte %d; truncated there "
                          "(%d bytes dropped)", path, pos, size - pos,
                          extra={"segment": str(path), "position": pos})
                os.ftruncate(fd, pos)
                complete = False
                break
            seg.note(offset, pos, HEAD.unpack_from(payload, 0)[2], end)
            self.bytes += end - pos
            offset += 1
            pos = end
        return seg, complete

    def _set_aside(self, path: Path, why: str) -> None:
        bad = path.with_name(path.name + ".bad")
        log.error("stream segment %s %s; renamed to %s and not read", path, why, bad.name,
                  extra={"segment": str(path)})
        os.replace(path, bad)

    def _new_segment(self, first: int) -> Segment:
        path = self.dir / _name(first) if self.dir is not None else None
        seg = Segment(first, path)
        if path is not None:
            seg.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            os.pwrite(seg.fd, file_header(STREAM_MAGIC), 0)
            if self.do_fsync:
                os.fsync(seg.fd)
                fsync_dir(path.parent)
        return seg

    def _add(self, seg: Segment) -> None:
        self.segments.append(seg)
        self.firsts.append(seg.first)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            for seg in self.segments:
                if seg.fd >= 0:
                    os.close(seg.fd)
                    seg.fd = -1

    def destroy(self) -> None:
        """The stream was deleted: close and remove every segment."""
        self.close()
        self.segments.clear()
        self.firsts.clear()
        self._resume.clear()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- sizes -----------------------------------------------------------------
    @property
    def first_offset(self) -> int:
        return self.segments[0].first if self.segments else 0  # none once destroyed

    @property
    def next_offset(self) -> int:
        return self.segments[-1].next if self.segments else 0

    @property
    def count(self) -> int:
        return self.next_offset - self.first_offset

    # --- writes ------------------------------------------------------------------
    def append(self, exchange: bytes, routing_key: bytes, properties: bytes, body: bytes,
               timestamp: int | None = None) -> int:
        """Append one message; returns its offset. StoreError if it cannot be written."""
        if self.closed:
            raise StoreError("the stream is closed")
        seg = self.segments[-1]
        ts = int(time.time() * 1000) if timestamp is None else timestamp
        offset = seg.next
        chunks = encode(offset, ts, exchange, routing_key, properties, body)
        n = len(chunks[0]) + len(body)
        if seg.count and seg.size + n > self.segment_bytes:
            seg = self._roll()
        pos = seg.size
        if seg.data is not None:
            seg.data += chunks[0]
            seg.data += body
        else:
            try:
                _pwritev_all(seg.fd, chunks, pos)
            except OSError as exc:
                try:
                    os.ftruncate(seg.fd, pos)
                except OSError:
                    pass
                raise StoreError(f"cannot append to stream segment {seg.path}: "
                                 f"{exc.strerror or exc}") from None
            self.dirty = True
        seg.note(offset, pos, ts, pos + n)
        self.bytes += n
        return offset

    def _roll(self) -> Segment:
        old = self.segments[-1]
        if old.fd >= 0 and self.do_fsync:
            with self._lock:
                os.fsync(old.fd)  # sync() only covers the newest segment
        seg = self._new_segment(old.next)
        self._add(seg)
        self.retain()
        return seg

    def sync(self) -> None:
        """fsync what was appended (the store's writer thread calls this)."""
        with self._lock:
            if self.closed or not self.do_fsync:
                return
            self.dirty = False
            seg = self.segments[-1]
            if seg.fd >= 0:
                os.fsync(seg.fd)

    def retain(self, now_ms: int | None = None) -> int:
        """Drop whole old segments past the retention limits; returns messages dropped."""
        dropped = 0
        if self.max_bytes is None and self.max_age_ms is None:
            return 0
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        while len(self.segments) > 1:
            seg = self.segments[0]
            too_big = self.max_bytes is not None and self.bytes > self.max_bytes
            too_old = self.max_age_ms is not None and seg.last_ts < now_ms - self.max_age_ms
            if not (too_big or too_old):
                break
            self.segments.pop(0)
            self.firsts.pop(0)
            self.bytes -= seg.size - HEADER_SIZE
            dropped += seg.count
            self._resume = {k: v for k, v in self._resume.items() if v[0] is not seg}
            with self._lock:
                if seg.fd >= 0:
                    os.close(seg.fd)
                    seg.fd = -1
            if seg.path is not None:
                try:
                    os.unlink(seg.path)
                except FileNotFoundError:
                    pass
        return dropped

    # --- reads -------------------------------------------------------------------
    def offset_at(self, timestamp_ms: int) -> int:
        """The offset of the first retained message appended at or after timestamp_ms
        (next_offset when there is none)."""
        for seg in self.segments:
            if not seg.count or seg.last_ts < timestamp_ms:
                continue
            i = max(bisect_left(seg.tss, timestamp_ms) - 1, 0)
            for entry, _end in self._scan(seg, seg.poss[i], seg.offs[i]):
                if entry.timestamp >= timestamp_ms:
                    return entry.offset
        return self.next_offset

    def clamp(self, offset: int) -> int:
        """A requested start offset within the log: before the first retained one reads
        from the first, past the end waits for the next, as osiris."""
        return min(max(offset, self.first_offset), self.next_offset)

    def read(self, offset: int, max_count: int, max_bytes: int = READ_BLOCK) -> list[Entry]:
        """Up to max_count messages from offset on (fewer when about max_bytes are read;
        at least one if any). An offset dropped by retention reads from the first one.
        A read that starts where an earlier one stopped (a consumer going on) starts at
        that file position; any other seeks with the sparse index."""
        offset = self.clamp(offset)
        out: list[Entry] = []
        if offset >= self.next_offset or max_count <= 0:
            return out
        i = bisect_right(self.firsts, offset) - 1
        got = 0
        hint = self._resume.pop(offset, None)
        while i < len(self.segments) and len(out) < max_count and got < max_bytes:
            seg = self.segments[i]
            if hint is not None and hint[0] is seg:
                pos, at = hint[1], offset
            else:
                k = bisect_right(seg.offs, offset) - 1
                pos, at = seg.poss[k], seg.offs[k]
            hint = None
            for entry, end in self._scan(seg, pos, at, offset):
                out.append(entry)
                got += len(entry.body) + 64
                if len(out) >= max_count or got >= max_bytes:
                    self._remember(entry.offset + 1, seg, end)
                    break
            else:
                if i == len(self.segments) - 1:  # read to the end: go on from there
                    self._remember(seg.next, seg, seg.size)
            offset = seg.next
            i += 1
        return out

    def _remember(self, offset: int, seg: Segment, pos: int) -> None:
        """Where the record of offset starts, for the read that goes on from there."""
        resume = self._resume
        if offset <= seg.next:
            resume[offset] = (seg, pos)
            if len(resume) > RESUME_HINTS:
                del resume[next(iter(resume))]

    def _scan(self, seg: Segment, pos: int, offset: int,
              start: int = 0) -> Iterator[tuple[Entry, int]]:
        """(record, position after it) for the records of seg from pos (the record of
        offset) to its end, verified; records before offset start are skipped unread."""
        buf = b""
        base = pos
        end = seg.size
        while pos < end:
            need = pos - base + FRAME_SIZE
            if len(buf) < need:
                buf = seg.pread(max(READ_BLOCK, FRAME_SIZE), pos)
                base = pos
            magic, length, crc = FRAME.unpack_from(buf, pos - base)
            if magic != RECORD_MAGIC:
                raise StoreError(f"stream segment {seg.path}: bad record at byte {pos} "
                                 f"(offset {offset})")
            after = pos + FRAME_SIZE + length
            if offset < start:
                offset += 1
                pos = after
                continue
            stop = pos - base + FRAME_SIZE + length
            if len(buf) < stop:
                buf = seg.pread(max(READ_BLOCK, FRAME_SIZE + length), pos)
                base = pos
                stop = FRAME_SIZE + length
            payload = memoryview(buf)[stop - length:stop]
            if len(payload) != length or crc32(payload) != crc:
                raise StoreError(f"stream segment {seg.path}: bad record at byte {pos} "
                                 f"(offset {offset})")
            yield decode(payload), after
            offset += 1
            pos = after


def _pwritev_all(fd: int, chunks: list[bytes], pos: int) -> None:
    total = sum(map(len, chunks))
    n = os.pwritev(fd, chunks, pos)
    if n < total:  # a short write (rare): write the rest from a joined copy
        rest = b"".join(chunks)[n:]
        pos += n
        while rest:
            k = os.pwrite(fd, rest, pos)
            rest = rest[k:]
            pos += k
