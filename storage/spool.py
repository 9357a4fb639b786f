# The disk-first queue store: where a queue's backlog lives once it outgrows RAM.
#
# A queue keeps a small head of ready messages in RAM (Queue.ready, bounded by
# queue.HEAD_COUNT and queue.HEAD_BYTES). A message that arrives while the head is
# full, or while older messages are already spooled, is appended to the queue's
# spool instead, and its Python object is dropped: the spool holds the message in
# segment files and RAM holds no per-message object, only this module's few
# counters per segment. When the head runs empty it is refilled from the spool,
# oldest first, with sequential reads of up to REFILL_BYTES at a time. So
#
#   * a message consumed right away never touches the disk (it goes straight to a
#     consumer, or sits in the head for a moment);
#   * every message in the spool is newer than every message in the head, so FIFO
#     order holds: a requeued delivery goes back into the head at its place, and
#     while the spool is not empty every new message goes behind it;
#   * the head is never empty while the spool is not (a message spooled into a queue
#     whose head is empty, as while everything is spooled, is read back at once), so
#     the head alone tells whether a queue has ready messages;
#   * RAM for a backlog of any length is the head plus one write buffer and one
#     read chunk per spooled queue.
#
# Layout: <spool root>/<queue number>/NNNNNNNN.spl, one directory per spooling queue,
# segment files numbered from 0. The whole root is deleted when the broker starts:
# what is spooled is the broker's RAM moved to disk, not its durable state. A
# persistent message in a durable queue is in the message store (storage.disk) as
# well; its spool record then carries no body, which is read back from the store
# at delivery, and recovery rebuilds the queue from the store, not from here.
# Spool files are never fsync'd.
#
# A segment file is a sequence of records, each `u32 length | payload` (little-
# endian), written through one write buffer of FLUSH_BYTES. Segments are append-only;
# a new one is started once the current one passes segment_size, and a segment is
# deleted as soon as its last record has been read. Records still in the write
# buffer are read from the buffer, so a short backlog never reaches the file system.
#
# The payload format belongs to the user of the log (queue.py encodes messages);
# this layer only keeps byte strings in order, so stream queues or a delayed-message
# store can use the same segments.
"""An append-only log of byte records in segment files, read once in order."""

from __future__ import annotations

import os
import shutil
import struct
from collections import deque
from pathlib import Path

_LEN = struct.Struct("<I")
FLUSH_BYTES = 256 * 1024
SEGMENT_BYTES = 64 * 1024 * 1024
REFILL_BYTES = 1024 * 1024


class SpoolRoot:
    """The directory holding every queue's spool; emptied when the broker starts."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._next = 0
        shutil.rmtree(self.root, ignore_errors=True)

    def open(self, segment_size: int = SEGMENT_BYTES) -> SegmentLog:
        """A new, empty log in its own directory (created on first write)."""
        self._next += 1
        return SegmentLog(self.root / str(self._next), segment_size)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class _Segment:
    __slots__ = ("number", "fd", "size")

    def __init__(self, number: int, fd: int) -> None:
        self.number = number
        self.fd = fd
        self.size = 0  # bytes written to the file (not counting the write buffer)


class SegmentLog:
    """Records appended at the tail and read once from the head, in order.

    `count` is the number of records not read yet. Writes go through a buffer and
    reach the file every FLUSH_BYTES. append never fails: when the file system
    refuses a write, the records stay in the buffer, `error` says why, and the next
    append tries again. read raises OSError when a file cannot be read."""

    def __init__(self, directory: Path, segment_size: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.segment_size = segment_size
        self.count = 0
        self._segments: deque[_Segment] = deque()  # oldest (being read) first
        self._buf = bytearray()  # records after the last segment's file contents
        self._buf_read = 0  # bytes of _buf already read (records taken from RAM)
        self._read_offset = 0  # in the oldest segment's file
        self._next_segment = 0
        self.closed = False
        self.error: OSError | None = None  # the last failed flush, None once one worked

    # --- writing -----------------------------------------------------------------
    def append(self, payload: bytes | bytearray | memoryview) -> None:
        buf = self._buf
        buf += _LEN.pack(len(payload))
        buf += payload
        self.count += 1
        if len(buf) - self._buf_read >= FLUSH_BYTES:
            try:
                self.flush()
            except OSError as exc:
                # the records stay in the buffer (RAM) and the next flush tries again
                self.error = exc
            else:
                self.error = None

    def flush(self) -> None:
        """Write the buffered records (not yet read) to the current segment file."""
        data = bytes(self._buf[self._buf_read:])
        if not data:
            self._reset_buffer()
            return
        seg = self._segments[-1] if self._segments else None
        if seg is None or seg.size >= self.segment_size:
            seg = self._new_segment()
        written = 0
        try:
            while written < len(data):
                written += os.write(seg.fd, data[written:])
        finally:
            seg.size += written
            # whatever reached the file is no longer the buffer's
            del self._buf[:self._buf_read + written]
            self._buf_read = 0

    def _reset_buffer(self) -> None:
        self._buf.clear()
        self._buf_read = 0

    def _new_segment(self) -> _Segment:
        self.directory.mkdir(parents=True, exist_ok=True)
        number = self._next_segment
        path = self.directory / f"{number:08d}.spl"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0),
                     0o600)
        self._next_segment += 1
        seg = _Segment(number, fd)
        if not self._segments:
            self._read_offset = 0
        self._segments.append(seg)
        return seg

    # --- reading -----------------------------------------------------------------
    def read(self, max_bytes: int = REFILL_BYTES) -> list[bytes]:
        """The next records in order, about max_bytes of them (at least one when
        count > 0)."""
        out: list[bytes] = []
        budget = max_bytes
        segments = self._segments
        while self.count and budget > 0:
            if segments and self._read_offset >= segments[0].size:
                if len(segments) > 1:
                    self._drop_oldest()
                    continue
                got = self._read_buffer(budget, out)  # the file is read to its end
            elif segments:
                got = self._read_file(budget, out)
            else:
                got = self._read_buffer(budget, out)
            if got == 0:
                break
            budget -= got
        return out

    def _read_file(self, budget: int, out: list[bytes]) -> int:
        seg = self._segments[0]
        offset = self._read_offset
        want = min(max(budget, 64 * 1024), seg.size - offset)
        chunk = os.pread(seg.fd, want, offset)
        used = self._parse(chunk, out)
        if used == 0:  # one record larger than the chunk: read it whole
            if len(chunk) < 4:
                raise OSError(f"spool segment {seg.number} of {self.directory} is shorter "
                              "than written")
            (size,) = _LEN.unpack_from(chunk, 0)
            record = os.pread(seg.fd, size, offset + 4)
            if len(record) != size:
                raise OSError(f"spool segment {seg.number} of {self.directory} is shorter "
                              "than written")
            out.append(record)
            self.count -= 1
            used = 4 + size
        self._read_offset = offset + used
        return used

    def _read_buffer(self, budget: int, out: list[bytes]) -> int:
        start = self._buf_read
        if len(self._buf) - start < 4:
            return 0
        used = self._parse(bytes(self._buf[start:start + max(budget, 4)]), out)
        if used == 0:  # one record larger than the budget
            (size,) = _LEN.unpack_from(self._buf, start)
            out.append(bytes(self._buf[start + 4:start + 4 + size]))
            self.count -= 1
            used = 4 + size
        self._buf_read = start + used
        if self._buf_read == len(self._buf):
            self._reset_buffer()
        return used

    def _parse(self, chunk: bytes, out: list[bytes]) -> int:
        """Whole records at the start of chunk into out; returns the bytes used."""
        pos = 0
        end = len(chunk)
        unpack = _LEN.unpack_from
        taken = 0
        while pos + 4 <= end and taken < self.count:
            (size,) = unpack(chunk, pos)
            if pos + 4 + size > end:
                break
            out.append(chunk[pos + 4:pos + 4 + size])
            pos += 4 + size
            taken += 1
        self.count -= taken
        return pos

    def _drop_oldest(self) -> None:
        seg = self._segments.popleft()
        os.close(seg.fd)
        try:
            os.unlink(self.directory / f"{seg.number:08d}.spl")
        except FileNotFoundError:
            pass
        self._read_offset = 0

    # --- the end -----------------------------------------------------------------
    def close(self) -> None:
        """Forget every record and delete the files."""
        if self.closed:
            return
        self.closed = True
        for seg in self._segments:
            try:
                os.close(seg.fd)
            except OSError:
                pass
        self._segments.clear()
        self._reset_buffer()
        self.count = 0
        shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def disk_bytes(self) -> int:
        """Bytes written to segment files not yet dropped."""
        return sum(seg.size for seg in self._segments)
