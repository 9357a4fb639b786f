"""The disk store's files: record codec, scanner, index reader and writer thread.

The format itself is described at the top of storage/disk.py; this module holds
the struct layouts and encoders, the scanner that verifies records and
resynchronises after corruption, the index reader used by recovery, the RAM
structure for one queue's references, and the Writer that the group commit runs
in a worker thread.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import sys
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from threading import Lock
from typing import Any
from zlib import crc32

from .base import RecoveredMessage, StoreError

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

# QueueRefs flags
REMOVED = 1
DELIVERED = 2


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
                      self.path, pos, nxt - pos, nxt)
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
                        self.path, pos, self.tail_bytes)
        else:
            self.skipped += 1
            log.error("store file %s: corrupt last record at offset %d (%d bytes), dropped",
                      self.path, pos, self.tail_bytes)


@dataclass(eq=False)
class Batch:
    """What one group commit writes; owned by the event loop until handed to the writer."""

    writes: list[tuple[int, int, list[bytes]]] = field(default_factory=list)  # seg, offset, chunks
    index: list[bytes] = field(default_factory=list)  # encoded index records, in order
    defs: list[bytes] = field(default_factory=list)  # the same definition records, for defs.log
    removes: dict[str, array] = field(default_factory=dict)  # type: ignore[type-arg]
    delivered: dict[str, array] = field(default_factory=dict)  # type: ignore[type-arg]
    snapshot: bytes | None = None  # a whole compacted index replacing index.log
    defs_snapshot: bytes | None = None  # ... and the compacted defs.log written with it
    unlink: list[int] = field(default_factory=list)  # segments to delete
    callbacks: list[Callable[[int, bool], None]] = field(default_factory=list)
    msg_ids: list[int] = field(default_factory=list)  # bodies the store holds until synced
    token: int = 0
    stage: int = 0  # writer's progress, so a retry never redoes an unlink
    # Index records that a client was promised (definitions, queue deletion) need an
    # fsync; acks and delivered marks only need to reach the page cache: losing them in
    # an OS crash redelivers a message (at-least-once), never loses one.
    sync_index: bool = False

    def has_data(self) -> bool:
        return bool(self.writes or self.index or self.defs or self.removes or self.delivered
                    or self.snapshot is not None or self.unlink)


class LogFile:
    """One append-only log (index.log or defs.log): its write fd and end offset."""

    def __init__(self, path: Path, magic: bytes) -> None:
        self.path = path
        self.magic = magic
        self.fd = -1
        self.off = 0

    def replace(self, data: bytes, do_fsync: bool) -> None:
        """Atomically replace the whole file with data (a compacted log)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            pwrite_all(fd, data, 0)
            if do_fsync:
                os.fsync(fd)
            os.replace(tmp, self.path)
        except OSError:
            os.close(fd)
            raise
        old, self.fd, self.off = self.fd, fd, len(data)  # the new file is in place
        if old >= 0:
            os.close(old)
        if do_fsync:
            fsync_dir(self.path.parent)

    def reuse(self, end: int) -> None:
        """Append to the existing file from offset `end`, dropping what follows it."""
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        if end < HEADER_SIZE:
            pwrite_all(self.fd, file_header(self.magic), 0)
            end = HEADER_SIZE
        os.ftruncate(self.fd, end)
        self.off = end

    def write(self, records: list[bytes]) -> int:
        """Write records at the end; the caller moves `off` once they are safe."""
        data = b"".join(records)
        pwrite_all(self.fd, data, self.off)
        return len(data)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Writer:
    """File writes for the group commit; runs in a worker thread, one batch list at a time."""

    def __init__(self, root: Path, do_fsync: bool) -> None:
        self.root = root
        self.seg_dir = root / "segments"
        self.index = LogFile(root / "index.log", INDEX_MAGIC)
        self.defs = LogFile(root / "defs.log", DEFS_MAGIC)
        self.do_fsync = do_fsync
        self.lock = Lock()  # close() may flush while a batch is in flight
        self._fds: dict[int, int] = {}

    def seg_path(self, seg: int) -> Path:
        return self.seg_dir / f"{seg:08d}.seg"

    def commit(self, batches: list[Batch]) -> tuple[int, OSError | None]:
        """Write batches in order; returns how many completed and the error that stopped it."""
        with self.lock:
            for done, batch in enumerate(batches):
                try:
                    self._commit_one(batch)
                except OSError as exc:
                    return done, exc
            return len(batches), None

    def _commit_one(self, b: Batch) -> None:
        if b.stage < 1:
            touched: set[int] = set()
            created = False
            for seg, offset, chunks in b.writes:
                fd = self._fds.get(seg)
                if fd is None:
                    fd = os.open(self.seg_path(seg), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
                    self._fds[seg] = fd
                    created = True
                pwrite_all(fd, b"".join(chunks), offset)
                touched.add(fd)
            if self.do_fsync:
                for fd in touched:
                    os.fsync(fd)
                if created:
                    fsync_dir(self.seg_dir)
            if b.writes:  # keep only the newest segment open for writing
                newest = b.writes[-1][0]
                for seg in [s for s in self._fds if s < newest]:
                    os.close(self._fds.pop(seg))
            b.stage = 1
        if b.stage < 2:
            for seg in b.unlink:
                fd = self._fds.pop(seg, None)
                if fd is not None:
                    os.close(fd)
                try:
                    os.unlink(self.seg_path(seg))
                except FileNotFoundError:
                    pass
            if b.unlink and self.do_fsync:
                fsync_dir(self.seg_dir)
            b.stage = 2
        if b.stage < 3:
            if b.snapshot is not None:
                self.index.replace(b.snapshot, self.do_fsync)
            b.stage = 3
        if b.stage < 4:
            if b.defs_snapshot is not None:
                self.defs.replace(b.defs_snapshot, self.do_fsync)
            # Appended records: both files written, then both fsync'd (one journal commit
            # usually covers both); an error before the end rewrites both at the same offsets.
            logs = [(f, f.write(records)) for f, records in ((self.index, b.index),
                                                               (self.defs, b.defs)) if records]
            if self.do_fsync and b.sync_index:
                for f, _ in logs:
                    os.fsync(f.fd)
            for f, n in logs:
                f.off += n
            b.stage = 4

    def replace_logs(self, index: bytes, defs: bytes) -> None:
        """Replace index.log then defs.log with compacted ones (each atomically)."""
        self.index.replace(index, self.do_fsync)
        self.defs.replace(defs, self.do_fsync)

    def close(self) -> None:
        with self.lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
            self.index.close()
            self.defs.close()


class QueueRefs:
    """One queue's message references in msg_id order (RAM, 9 bytes each)."""

    __slots__ = ("flags", "head", "ids", "removed")

    def __init__(self) -> None:
        self.ids = array("q")
        self.flags = bytearray()
        self.head = 0  # no live reference before this index
        self.removed = 0

    def find(self, msg_id: int) -> int:
        ids, i = self.ids, self.head
        if i >= len(ids) or ids[i] != msg_id:
            i = bisect_left(ids, msg_id, i)
        if i < len(ids) and ids[i] == msg_id and not self.flags[i] & REMOVED:
            return i
        return -1

    def drop(self, i: int) -> None:
        flags = self.flags
        flags[i] |= REMOVED
        self.removed += 1
        while self.head < len(flags) and flags[self.head] & REMOVED:
            self.head += 1
        if self.removed > 1024 and self.removed * 2 > len(flags):
            self._compact()

    def _compact(self) -> None:
        if self.removed == self.head:  # the usual FIFO case: all removals are at the front
            del self.ids[:self.head]
            del self.flags[:self.head]
        else:
            keep = [i for i, f in enumerate(self.flags) if not f & REMOVED]
            self.ids = array("q", [self.ids[i] for i in keep])
            self.flags = bytearray(self.flags[i] for i in keep)
        self.head = self.removed = 0

    def live(self) -> Iterable[tuple[int, int]]:
        """(msg_id, flags) of every live reference."""
        flags = self.flags
        return ((m, flags[i]) for i, m in enumerate(self.ids) if not flags[i] & REMOVED)


class QueueIndex:
    """What the index says about one queue, while segments are scanned."""

    __slots__ = (
        "delivered",
        "dropped_upto",
        "has_live",
        "live",
        "live_upto",
        "messages",
        "name",
        "pos",
        "refs",
        "removed",
    )

    def __init__(self, name: str, live_upto: int = 0) -> None:
        self.name = name
        self.live = array("q")  # LIVE refs of a compacted index, sorted
        self.has_live = False  # the index has a LIVE record for this queue
        self.live_upto = live_upto  # refs up to this msg_id are alive only if LIVE-listed
        self.pos = 0  # scan position in live
        self.removed: set[int] = set()
        self.delivered: set[int] = set()
        self.dropped_upto = 0  # DELETE_QUEUE watermark
        self.refs: QueueRefs | None = None
        self.messages: list[RecoveredMessage] = []


@dataclass
class LogRead:
    """What one log file (index.log or defs.log) said about itself."""

    path: Path
    end: int = -1  # length of its good part; -1: no such file (or not even a header)
    version: int = 0  # from its header; 0 when the header is damaged
    base: int | None = None  # BASE's watermark
    end_record: tuple[int, int, int, int] | None = None  # END: watermark, seq, DEFs, LIVEs
    n_defs: int = 0  # DEF records read before END (the snapshot's)
    n_live: int = 0  # LIVE records read before END
    keys: set[str] = field(default_factory=set)  # keys of the snapshot's DEF records
    max_seq: int = 0  # of its definition records


class IndexState:
    """Everything read from index.log and defs.log, plus caches shared while segments are
    scanned."""

    def __init__(self) -> None:
        # definition key -> (seq, JSON record; None once deleted): the latest event of
        # either file (parsed once recovery has picked the winners)
        self.events: dict[str, tuple[int, bytes | None]] = {}
        # (seq, keys) of each complete definitions snapshot: at seq, exactly these keys existed
        self.def_snapshots: list[tuple[int, set[str]]] = []
        self.def_seq = 0  # the highest definition sequence number seen
        self.skipped = 0
        self.watermark = 0
        self.live_complete = False  # every LIVE record of the index's snapshot was read
        self.max_id = 0
        self.by_raw: dict[bytes, QueueIndex] = {}
        # (exchange, routing key, properties) by their bytes: shared between messages
        self.envelopes: dict[bytes, tuple[str, str, bytes]] = {}
        self._live_upto = 0  # live_upto of queues first met in a segment

    def queue(self, name: str) -> QueueIndex:
        raw = text_bytes(name)
        q = self.by_raw.get(raw)
        if q is None:
            q = self.by_raw[raw] = QueueIndex(name, self._live_upto)
        return q

    def event(self, key: str, seq: int, record: bytes | None) -> None:
        """One definition change; the highest seq wins (version 1 records, all seq 0,
        apply in file order)."""
        cur = self.events.get(key)
        if cur is None or seq >= cur[0]:
            self.events[key] = (seq, record)
        if seq > self.def_seq:
            self.def_seq = seq

    def finish(self, index: LogRead, defs: LogRead) -> None:
        """After both files are read: which snapshots are complete, and from there the
        definitions and the LIVE filter for the segment scan."""
        for f, other in ((index, defs), (defs, index)):
            if f.end >= 0 and f.max_seq < other.max_seq:
                log.warning("store file %s lacks definition changes that %s has (up to %d, "
                            "not %d); they are taken from there", f.path, other.path,
                            f.max_seq, other.max_seq)
            if f.end_record is None:
                continue
            _, seq, n_defs, _ = f.end_record
            self.def_seq = max(self.def_seq, seq)
            if f.n_defs == n_defs:
                self.def_snapshots.append((seq, f.keys))
            else:
                log.error("store file %s: %d of the %d definitions of its snapshot are "
                          "unreadable; the other file's copy is used", f.path,
                          n_defs - f.n_defs, n_defs)
        if index.end_record is not None:
            watermark, _, _, n_live = index.end_record
            complete = index.n_live == n_live
        elif index.base is not None:  # version 1 had no END: its snapshot was trusted
            watermark, complete = index.base, index.version == 1
        else:
            watermark, complete = 0, False
        self.watermark, self.live_complete = watermark, complete
        if watermark and not complete:
            log.error("store file %s: its list of live messages is incomplete; stored "
                      "messages of queues it does not list are kept (acknowledged ones may be "
                      "delivered again)", index.path)
        self._live_upto = watermark if complete else 0
        for q in self.by_raw.values():
            q.live_upto = watermark if complete or q.has_live else 0

    def definitions(self) -> dict[str, dict[str, Any]]:
        """The latest record of every definition that exists: a key a complete snapshot does
        not list was deleted by then, unless a later record of either file defines it."""
        events = self.events
        found = {key: raw for key, (_, raw) in events.items() if raw is not None}
        for at, keys in self.def_snapshots:
            for key in found.keys() - keys:
                if events[key][0] <= at:
                    del found[key]
        out = {}
        for key, raw in found.items():
            try:
                out[key] = json.loads(raw)
            except ValueError:
                log.error("store: definition %r is not readable JSON, skipped", key)
                self.skipped += 1
        return out


DEF_KINDS = frozenset((K_DEF, K_UNDEF, K_DEF_V1, K_UNDEF_V1))
INDEX_KINDS = DEF_KINDS | {K_REMOVE, K_DELIVERED, K_DELETE_QUEUE, K_LIVE}


def read_log(path: Path, magic: bytes, index: IndexState) -> LogRead:
    """Load index.log or defs.log into `index`; returns what the file said about itself."""
    info = LogRead(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return info
    info.version = check_header(data, magic, path)
    if info.version < 0:
        return info
    scan = Scanner(data, HEADER_SIZE, str(path))
    view = memoryview(data)
    in_snapshot = True  # before END
    for _, start, end in scan:
        payload = view[start:end]
        kind = payload[0]
        if kind == K_BASE and len(payload) == BASE.size:
            _, info.base, next_id = BASE.unpack_from(payload)
            index.max_id = max(index.max_id, next_id - 1)
            continue
        if kind == K_END and len(payload) == END.size and in_snapshot:
            info.end_record = END.unpack_from(payload)[1:]
            index.max_id = max(index.max_id, info.end_record[0])
            info.max_seq = max(info.max_seq, info.end_record[1])
            in_snapshot = False
            continue
        if kind not in INDEX_KINDS:
            log.error("store file %s: unknown record kind %d at offset %d",
                      path, kind, start - FRAME_SIZE)
            index.skipped += 1
            continue
        kind, name, rest = split_key(payload)
        if kind in DEF_KINDS:
            seq = 0  # version 1 records have none
            if kind == K_DEF or kind == K_UNDEF:
                seq = U64.unpack_from(rest)[0]
                rest = rest[U64.size:]
                info.max_seq = max(info.max_seq, seq)
            if kind == K_UNDEF or kind == K_UNDEF_V1:
                index.event(name, seq, None)
                continue
            index.event(name, seq, bytes(rest))
            if in_snapshot and kind == K_DEF:
                info.n_defs += 1
                info.keys.add(name)
        elif kind == K_DELETE_QUEUE:
            upto = U64.unpack_from(rest)[0]
            q = index.queue(name)
            q.dropped_upto = max(q.dropped_upto, upto)
            index.max_id = max(index.max_id, upto)
        else:
            ids = ids_from(rest)
            if ids:
                index.max_id = max(index.max_id, max(ids))
            q = index.queue(name)
            if kind == K_REMOVE:
                q.removed.update(ids)
            elif kind == K_DELIVERED:
                q.delivered.update(ids)
            else:
                q.live.extend(ids)
                q.has_live = True
                if in_snapshot:
                    info.n_live += 1
    index.skipped += scan.skipped
    info.end = scan.end
    return info


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
        log.warning("store file %s: shorter than its header, ignored", path)
        return -1
    got, version, flags, check = FILE_HEADER.unpack_from(data)
    if version >= 2 and check == crc32(data[:HEADER_CHECKED]):
        if version > VERSION:
            raise StoreError(f"{path}: format version {version} is newer than {VERSION}, the "
                             "newest this broker reads (written by a newer broker?)")
        if got != magic:
            log.error("store file %s: header magic %r instead of %r; reading its records "
                      "anyway", path, got, magic)
        return int(version)
    if version == 1 and flags == 0 and got == magic:
        return 1
    log.error("store file %s: damaged header (magic %r, version %d, flags %d); reading its "
              "records anyway", path, got, version, flags)
    return 0


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def fsync_dir(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
