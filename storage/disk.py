# On-disk format (version 2; version 1 files are read too). All integers are little-endian.
#
#   <data_dir>/LOCK                 flock'd while a store has the directory open
#   <data_dir>/segments/NNNNNNNN.seg  message segments, NNNNNNNN = segment number (decimal)
#   <data_dir>/index.log            queue index and durable definitions (append log)
#   <data_dir>/defs.log             the definitions and queue deletions again (append log)
#   <data_dir>/*.log.tmp            a compacted log being written (deleted on open)
#
# Every file starts with a 16-byte header:
#   magic[8] ("AMQPSEG\0" segments, "AMQPIDX\0" index.log, "AMQPDEF\0" defs.log)
#   | u16 version (2) | u16 flags (0) | u32 zlib.crc32 of the header's first 12 bytes
# (version 1 had the file number, 0 for the index, where version 2 has the checksum). A
# header whose checksum holds and whose version is above 2 is a newer format: the store
# refuses to open, naming the file and version. Any other header that is not exactly a
# version 2 one (checksum holds) or a version 1 one (magic, version 1, flags 0) is
# damaged, e.g. one flipped bit: that is logged and the file's records are read anyway,
# since each is self-checking. A newer format must keep bytes 0-15 so.
# The header is followed by records, each framed as:
#   u32 record magic 0x5245438E | u32 payload length | u32 zlib.crc32(payload) | payload
# The payload's first byte is its kind.
#
# A segment holds MESSAGE records only, one per message however many queues it
# was routed to (the queue names are the per-queue enqueue references):
#   u8 kind=1 | u64 msg_id | u32 body_len | u32 props_len | u16 n_queues
#   | u16 exchange_len | u16 routing_key_len
#   | n_queues x (u16 len | queue name) | exchange | routing_key
#   | properties (raw content-header property bytes) | body
# Names, keys and routing keys are their wire bytes (not necessarily UTF-8).
# A message's address is (segment number, record offset); RAM keeps
# msg_id -> (segment, offset, record length) in arrays. Segments are only ever
# appended to; a new one is started when the current one would pass
# segment_size and on every open. A segment file is deleted once none of its
# messages is referenced by any queue.
#
# The index holds everything else as small records:
#   DEF          u8 10 | u16 key_len | key | u64 seq | record as UTF-8 JSON
#   UNDEF        u8 11 | u16 key_len | key | u64 seq
#   REMOVE       u8 4 | u16 queue_len | queue | u64 msg_id...   refs left the queue
#   DELIVERED    u8 5 | u16 queue_len | queue | u64 msg_id...   refs were delivered
#   DELETE_QUEUE u8 6 | u16 queue_len | queue | u64 W   drops every ref of queue with msg_id <= W
#   BASE         u8 7 | u64 W | u64 next_msg_id        first record of a compacted index
#   LIVE         u8 8 | u16 queue_len | queue | u64 msg_id...   one per queue (after BASE)
#   END          u8 9 | u64 W | u64 seq | u32 n_defs | u32 n_live   closes the snapshot
# (version 1 wrote DEF as u8 2 | u16 key_len | key | JSON and UNDEF as u8 3 | u16 key_len
# | key, without seq, and no END; they are still read, applying in file order.)
# A queue reference (queue, msg_id) found in a segment is alive when it is not
# removed by a REMOVE or DELETE_QUEUE record, and, if msg_id <= W, it is
# listed in a LIVE record (a compacted index lists the live references instead
# of the removed ones). The LIVE filter applies to every queue only when the snapshot
# is complete: END was read and so were the n_live LIVE records before it (for version
# 1, BASE was read). Otherwise it applies only to the queues whose LIVE record was
# read: the refs of other queues up to W are kept, so a truncated or corrupt index
# may bring acknowledged messages back but never loses an unacknowledged one.
#
# Definitions are kept twice. Every DEF, UNDEF and DELETE_QUEUE record is appended to
# index.log and to defs.log in the same group commit, both fsync'd before the change is
# confirmed. seq numbers every definition change (a store-wide counter). Recovery reads
# both files: a key's record is that of its highest-seq DEF or UNDEF in either file;
# a compacted file starts with a snapshot whose DEF records all carry the snapshot's
# seq S (END's seq), and when END was read with n_defs DEF records before it, the
# snapshot is complete: a key it does not list was deleted by S, so an older DEF in the
# other file does not bring it back. DELETE_QUEUE watermarks from both files are merged
# (the highest wins). So one corrupt or lost record of either file, or a truncated
# index.log, costs no definition and no queue deletion.
#
# Both logs are compacted together on open and whenever index.log has grown to 4x the
# size a compacted one would have (and at least 2 MB): the whole live state is written to
# index.log.tmp (header, BASE, DEFs, DELETE_QUEUEs, LIVE and DELIVERED per queue, END) and
# the definitions to defs.log.tmp (header, DEFs, DELETE_QUEUEs, END with n_live 0), each
# fsync'd, renamed over its log and the directory fsync'd, after segments they no longer
# describe have been deleted. A DELETE_QUEUE is carried into snapshots while a segment
# whose first msg_id is <= its W exists (its refs may be there).
#
# Recovery verifies every record's frame and CRC. A bad tail (torn write) is
# logged and the file truncated to the last good record; a bad record followed
# by good ones is logged with file and offset and skipped by searching forward
# for the next record magic whose record verifies.
"""A durable MessageStore: segment files, an index log, and a group commit.

Publishes, acks and definitions are appended to an in-memory batch; `run()`
writes and fsyncs each batch in a worker thread while the next one fills, then
calls the sync callbacks (publisher confirms). See storage.base for the contract.
This module keeps the store's state and the write path; the rest of it lives in
storage/records.py (the records above: encoders, header check, the Scanner that
verifies them), storage/writer.py (the worker thread's file writes), storage/recovery.py
(reading the logs and segments back on open) and storage/refs.py (a queue's references).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any
from zlib import crc32

import anyio

from . import records as fmt
from .base import MessageStore, Recovery, StoreError, SyncCallback
from .recovery import IndexState, SegmentLoader, read_log
from .refs import DELIVERED, QueueRefs
from .writer import Batch, Writer, fsync_dir

log = logging.getLogger(__name__)

INDEX_COMPACT_MIN = 2 * 1024 * 1024  # bytes of index.log before compaction is considered
INDEX_COMPACT_RATIO = 4  # ... and only once it is this many times the compacted size


class DiskStore(MessageStore):
    """Messages in append-only segment files, refs and definitions in an index log."""

    retry_interval = 1.0  # seconds between write attempts after a failure

    def __init__(self, data_dir: str | Path, *, segment_size: int = 64 * 1024 * 1024,
                 fsync: bool = True) -> None:
        if not fmt.HEADER_SIZE < segment_size < 2**32:
            raise ValueError(f"segment_size must be between {fmt.HEADER_SIZE} bytes and 4 GiB")
        self.root = Path(data_dir)
        self.segment_size = segment_size
        self._writer = Writer(self.root, fsync)
        self._roll_dead_at = min(segment_size // 2, 1024 * 1024)
        self._lock_fd = -1
        self._opened = self._closed = False
        self._wakeup: anyio.Event | None = None
        self._pending = Batch()
        self._retry: list[Batch] = []
        self._in_flight: Batch | None = None  # the last batch the writer thread has
        # message table, sorted by msg_id: msg_id -> (segment, offset, record length), refcount
        self._ids = array("q")
        self._segs = array("I")
        self._offs = array("I")
        self._lens = array("I")
        self._refs = array("I")
        self._dead = 0  # table entries whose refcount is 0
        self._queues: dict[str, QueueRefs] = {}
        self._seg_live: dict[int, int] = {}  # live messages per existing segment
        self._seg_first: dict[int, int] = {}  # first msg_id of each existing segment
        self._seg_no = 0
        self._seg_off = 0  # 0: the current segment has not been started
        self._read_fds: dict[int, int] = {}
        self._unsynced: dict[int, bytes] = {}  # bodies not yet known to be on disk
        self.unsynced_bytes = 0
        self._qfields: dict[str, bytes] = {}  # queue name -> encoded name field
        self._defs: dict[str, dict[str, Any]] = {}
        self._def_seq = 0  # sequence number of the latest definition change
        # queue -> DELETE_QUEUE watermark, kept while a segment may still hold its refs
        self._dropped: dict[str, int] = {}
        self._last_msg_id = 0
        self._token = 0
        self.synced_token = 0  # every token up to this one is on disk
        self._index_bytes = 0  # size of index.log, including what is pending
        self._live_refs = 0  # (queue, msg_id) references held
        self.commits = 0  # group commits written (one fsync round each)

    # --- lifecycle ---------------------------------------------------------
    def open(self) -> Recovery:
        if self._opened:
            raise StoreError("store already opened")
        self._opened = True
        started = time.perf_counter()
        self._writer.seg_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.root / "LOCK", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            self._lock_fd = -1  # close() must not close it again
            raise StoreError(f"data directory {self.root} is in use by another store") from None
        for log_file in (self._writer.index, self._writer.defs):
            log_file.path.with_name(log_file.path.name + ".tmp").unlink(missing_ok=True)
        recovery = self._recover()
        recovery.seconds = time.perf_counter() - started
        log.info("store opened: %d queues, %d messages, %d definitions in %.2fs",
                 len(recovery.queues), len(self._ids) - self._dead,
                 len(recovery.definitions), recovery.seconds,
                 extra={"queues": len(recovery.queues),
                        "messages": len(self._ids) - self._dead,
                        "definitions": len(recovery.definitions),
                        "seconds": round(recovery.seconds, 3)})
        return recovery

    def _recover(self) -> Recovery:
        recovery = Recovery()
        index = IndexState()
        writer = self._writer
        index_read = read_log(writer.index.path, fmt.INDEX_MAGIC, index)
        defs_read = read_log(writer.defs.path, fmt.DEFS_MAGIC, index)
        if defs_read.end < 0 and index_read.end >= 0 and index_read.version != 1:
            log.warning("store %s: defs.log is missing or empty; definitions are read from "
                        "index.log only", self.root, extra={"store": str(self.root)})
        index.finish(index_read, defs_read)
        self._defs = index.definitions()
        self._def_seq = index.def_seq
        seg_dir = writer.seg_dir
        segments = sorted(int(p.stem) for p in seg_dir.glob("*.seg") if p.stem.isdigit())
        if segments and index_read.end < 0:
            log.warning("store %s: index.log is missing or empty; every stored message is "
                        "recovered", self.root, extra={"store": str(self.root)})
        loader = SegmentLoader(index, recovery, writer.do_fsync)
        for seg in segments:
            loader.load(seg, writer.seg_path(seg))
        self._ids, self._segs, self._offs = loader.ids, loader.segs, loader.offs
        self._lens, self._refs = loader.lens, loader.refs
        self._seg_live, self._seg_first = loader.seg_live, loader.seg_first
        last_id = loader.last_id
        recovery.skipped_records += index.skipped
        self._dropped = {q.name: q.dropped_upto for q in index.by_raw.values()
                         if q.dropped_upto}
        for q in index.by_raw.values():
            if q.refs is not None:
                self._queues[q.name] = q.refs
                recovery.queues[q.name] = q.messages
                self._live_refs += len(q.messages)
        recovery.definitions = dict(self._defs)
        recovery.next_msg_id = max(last_id, index.max_id) + 1
        self._last_msg_id = recovery.next_msg_id - 1
        self._seg_no = max(segments, default=0)
        dead = [seg for seg in segments if not self._seg_live.get(seg)]
        for seg in dead:
            self._seg_live.pop(seg, None)
            self._seg_first.pop(seg, None)
            writer.seg_path(seg).unlink(missing_ok=True)
        if dead and writer.do_fsync:
            fsync_dir(seg_dir)
        try:
            snapshot, defs_snapshot = self.snapshots()
            writer.replace_logs(snapshot, defs_snapshot)
            self._index_bytes = len(snapshot)
        except OSError as exc:  # e.g. disk full: keep appending to the files we just read
            log.error("store %s: cannot compact index.log and defs.log (%s)", self.root, exc,
                      extra={"store": str(self.root), "error": str(exc)})
            self.failed = True
            for log_file, read in ((writer.index, index_read), (writer.defs, defs_read)):
                if log_file.fd >= 0:  # this one was replaced
                    continue
                try:
                    log_file.reuse(max(read.end, 0))
                except OSError as exc2:
                    raise StoreError(f"cannot write {log_file.path}: {exc2}") from exc2
            self._index_bytes = writer.index.off
        return recovery

    async def run(self) -> None:
        while not self._closed:
            if not self._has_pending():
                self._wakeup = anyio.Event()
                await self._wakeup.wait()
                continue
            if not await self.commit():
                await anyio.sleep(self.retry_interval)

    async def commit(self) -> bool:
        """One group commit: write and fsync what is pending in a worker thread."""
        batches = self._retry + [self._take_batch()]
        self._retry = []
        if not any(b.has_data() for b in batches):
            self._finish(batches, len(batches), None)
            return True
        self.commits += 1
        with anyio.CancelScope(shield=True):  # never lose the outcome of a started write
            self._in_flight = batches[-1]
            try:
                done, exc = await anyio.to_thread.run_sync(self._writer.commit, batches)
            finally:
                self._in_flight = None
            self._finish(batches, done, exc)
        return exc is None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._opened:
            batches = self._retry + [self._take_batch(compact=False)]
            self._retry = []
            self._finish(batches, *self._writer.commit(batches))
            self._writer.close()
            for fd in self._read_fds.values():
                os.close(fd)
            self._read_fds.clear()
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1

    def _has_pending(self) -> bool:
        p = self._pending
        return bool(self._retry or p.callbacks) or p.has_data()

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    def _take_batch(self, compact: bool = True) -> Batch:
        """Swap in a fresh pending batch and finish encoding the old one."""
        if self._seg_off >= self._roll_dead_at and not self._seg_live.get(self._seg_no):
            self._retire_segment(self._seg_no)  # a full-of-garbage current segment
            self._seg_off = 0
        b, self._pending = self._pending, Batch()
        b.token = self._token
        for kind, per_queue in ((fmt.K_REMOVE, b.removes), (fmt.K_DELIVERED, b.delivered)):
            for queue, ids in per_queue.items():
                b.index.append(fmt.ids_record(kind, queue, ids))
        b.removes, b.delivered = {}, {}
        self._index_bytes += sum(map(len, b.index))
        # estimate what a snapshot would take (16 B per ref is generous)
        live_estimate = (16 * self._live_refs + 128 * len(self._defs)
                         + 64 * len(self._dropped))
        if (compact and not self._retry and self._index_bytes
                > max(INDEX_COMPACT_MIN, INDEX_COMPACT_RATIO * live_estimate)):
            b.snapshot, b.defs_snapshot = self.snapshots()  # include b.index's effects
            b.index, b.defs = [], []
            self._index_bytes = len(b.snapshot)
        return b

    def _finish(self, batches: list[Batch], done: int, exc: OSError | None) -> None:
        """On the event loop after a commit: release bodies, call callbacks."""
        for i, b in enumerate(batches):
            ok = i < done
            if ok:
                if b.token > self.synced_token:
                    self.synced_token = b.token
                for msg_id in b.msg_ids:
                    body = self._unsynced.pop(msg_id, None)
                    if body is not None:
                        self.unsynced_bytes -= len(body)
            callbacks, b.callbacks = b.callbacks, []
            for cb in callbacks:
                try:
                    cb(b.token, ok)
                except Exception:
                    log.exception("store sync callback failed")
        if exc is not None:
            self._retry = batches[done:]
            if not self.failed:
                log.error("store write failed (%s); will retry every %.1fs",
                          exc.strerror or exc, self.retry_interval,
                          extra={"error": str(exc.strerror or exc),
                                 "retry_interval": self.retry_interval})
            self.failed = True
        elif self.failed:
            log.warning("store writes succeed again")
            self.failed = False

    # --- definitions -------------------------------------------------------
    def save_definition(self, key: str, record: dict[str, Any] | None) -> int:
        self._check_open()
        if record is None:
            if self._defs.pop(key, None) is None:
                return self._token
            self._def_seq += 1
            rec = fmt.undef_record(key, self._def_seq)
        else:
            self._defs[key] = record
            self._def_seq += 1
            rec = fmt.def_record(key, self._def_seq, json.dumps(record, separators=(",", ":"))
                                 .encode())
        self._pending.index.append(rec)
        self._pending.defs.append(rec)  # the second copy, in defs.log
        self._pending.sync_index = True
        self._token += 1
        self._wake()
        return self._token

    # --- messages ----------------------------------------------------------
    def publish(self, msg_id: int, exchange: str, routing_key: str, properties: bytes,
                body: bytes, queues: Sequence[str]) -> int:
        self._check_open()
        if msg_id <= self._last_msg_id:
            raise StoreError(f"msg_id {msg_id} is not above the last one ({self._last_msg_id})")
        self._token += 1
        names = list(dict.fromkeys(queues))
        if not names:
            return self._token
        qfields = self._qfields
        fields = []
        for q in names:
            f = qfields.get(q)
            if f is None:
                f = qfields[q] = fmt.name_field(q)
            fields.append(f)
        head = fmt.message_head(msg_id, fmt.text_bytes(exchange), fmt.text_bytes(routing_key),
                                properties, body, b"".join(fields), len(names))
        size = len(head) + len(body)
        if self._seg_off == 0 or self._seg_off + size > self.segment_size:
            self._start_segment()
            self._seg_first[self._seg_no] = msg_id
        seg, off = self._seg_no, self._seg_off
        batch = self._pending
        last = batch.writes[-1] if batch.writes else None
        if last is not None and last[0] == seg:
            last[2].extend((head, body))
        else:
            batch.writes.append((seg, off, [head, body]))
        self._seg_off = off + size
        self._seg_live[seg] += 1
        self._ids.append(msg_id)
        self._segs.append(seg)
        self._offs.append(off)
        self._lens.append(size)
        self._refs.append(len(names))
        self._live_refs += len(names)
        for q in names:
            refs = self._queues.get(q)
            if refs is None:
                refs = self._queues[q] = QueueRefs()
            refs.ids.append(msg_id)
            refs.flags.append(0)
        self._unsynced[msg_id] = body
        self.unsynced_bytes += len(body)
        batch.msg_ids.append(msg_id)
        self._last_msg_id = msg_id
        self._wake()
        return self._token

    def _start_segment(self) -> None:
        old = self._seg_no
        if self._seg_off and not self._seg_live.get(old):
            self._retire_segment(old)
        self._seg_no += 1
        self._seg_live[self._seg_no] = 0
        header = fmt.file_header(fmt.SEGMENT_MAGIC)
        self._pending.writes.append((self._seg_no, 0, [header]))
        self._seg_off = len(header)

    def _retire_segment(self, seg: int) -> None:
        self._seg_live.pop(seg, None)
        self._seg_first.pop(seg, None)
        fd = self._read_fds.pop(seg, None)
        if fd is not None:
            os.close(fd)
        self._pending.unlink.append(seg)
        self._wake()

    def remove(self, queue: str, msg_ids: Iterable[int]) -> None:
        self._check_open()
        refs = self._queues.get(queue)
        if refs is None:
            return
        logged = self._pending.removes.get(queue)
        for msg_id in msg_ids:
            i = refs.find(msg_id)
            if i < 0:
                continue
            refs.drop(i)
            self._live_refs -= 1
            if logged is None:
                logged = self._pending.removes[queue] = array("q")
            logged.append(msg_id)
            self._release(msg_id)
        if logged:
            self._wake()

    def mark_delivered(self, queue: str, msg_id: int) -> None:
        self._check_open()
        refs = self._queues.get(queue)
        i = -1 if refs is None else refs.find(msg_id)
        if refs is None or i < 0 or refs.flags[i] & DELIVERED:
            return
        refs.flags[i] |= DELIVERED
        logged = self._pending.delivered.get(queue)
        if logged is None:
            logged = self._pending.delivered[queue] = array("q")
        logged.append(msg_id)
        self._wake()

    def delete_queue(self, queue: str) -> int:
        self._check_open()
        refs = self._queues.pop(queue, None)
        self._qfields.pop(queue, None)
        self._pending.removes.pop(queue, None)
        self._pending.delivered.pop(queue, None)
        if refs is not None:
            for msg_id, _ in list(refs.live()):
                self._release(msg_id)
                self._live_refs -= 1
        upto = self._last_msg_id
        if upto > self._dropped.get(queue, 0):
            self._dropped[queue] = upto
        rec = fmt.key_record(fmt.K_DELETE_QUEUE, queue, fmt.U64.pack(upto))
        self._pending.index.append(rec)
        self._pending.defs.append(rec)  # the queue stays deleted whatever befalls index.log
        self._pending.sync_index = True
        self._token += 1
        self._wake()
        return self._token

    def _release(self, msg_id: int) -> None:
        """One queue dropped its reference to msg_id."""
        i = self._find(msg_id)
        if i < 0:
            return
        self._refs[i] -= 1
        if self._refs[i]:
            return
        self._dead += 1
        body = self._unsynced.pop(msg_id, None)
        if body is not None:
            self.unsynced_bytes -= len(body)
        seg = self._segs[i]
        left = self._seg_live[seg] - 1
        self._seg_live[seg] = left
        if not left and (seg != self._seg_no or not self._seg_off):  # not being appended to
            self._retire_segment(seg)
        if self._dead > 1024 and self._dead * 2 > len(self._ids):
            self._compact_table()

    def _find(self, msg_id: int) -> int:
        i = bisect_left(self._ids, msg_id)
        if i < len(self._ids) and self._ids[i] == msg_id and self._refs[i]:
            return i
        return -1

    def _compact_table(self) -> None:
        refs = self._refs
        first = next((i for i, r in enumerate(refs) if r), len(refs))
        if first == self._dead:  # the usual FIFO case: every dead entry is at the front
            for arr in (self._ids, self._segs, self._offs, self._lens, refs):
                del arr[:first]
        else:
            keep = [i for i, r in enumerate(refs) if r]
            for name in ("_ids", "_segs", "_offs", "_lens", "_refs"):
                old = getattr(self, name)
                setattr(self, name, array(old.typecode, [old[i] for i in keep]))
        self._dead = 0

    def read_body(self, msg_id: int) -> bytes:
        body = self._unsynced.get(msg_id)
        if body is not None:
            return body
        i = self._find(msg_id)
        if i < 0:
            raise StoreError(f"message {msg_id} is not stored")
        seg, off, size = self._segs[i], self._offs[i], self._lens[i]
        try:
            fd = self._read_fds.get(seg)
            if fd is None:
                fd = os.open(self._writer.seg_path(seg), os.O_RDONLY | os.O_CLOEXEC)
                self._read_fds[seg] = fd
            rec = os.pread(fd, size, off)
        except OSError as exc:
            raise StoreError(f"message {msg_id}: segment {seg}: {exc}") from exc
        if len(rec) != size:
            raise StoreError(f"message {msg_id}: short read in segment {seg} at {off}")
        magic, _, crc = fmt.FRAME.unpack_from(rec)
        if magic != fmt.RECORD_MAGIC or crc32(memoryview(rec)[fmt.FRAME_SIZE:]) != crc:
            raise StoreError(f"message {msg_id}: bad checksum in segment {seg} at {off}")
        body_len = fmt.MSG_HEAD.unpack_from(rec, fmt.FRAME_SIZE)[2]
        return rec[size - body_len:]

    def on_sync(self, callback: SyncCallback) -> None:
        if self._has_pending():
            self._pending.callbacks.append(callback)
            self._wake()
        elif self._in_flight is not None:  # every token so far is in the batch being written
            self._in_flight.callbacks.append(callback)
        else:
            self.synced_token = self._token
            callback(self._token, True)

    @property
    def last_token(self) -> int:
        return self._token

    def sync_with(self, key: str, sync: Callable[[], None]) -> int:
        self._check_open()
        syncs = self._pending.syncs
        if key not in syncs:
            syncs[key] = sync
            self._token += 1
            self._wake()
        return self._token

    def stream_root(self) -> str | None:
        return str(self.root / "streams")

    def _check_open(self) -> None:
        if self._closed or not self._opened:
            raise StoreError("store is not open")

    # --- compaction and introspection ---------------------------------------
    def snapshots(self) -> tuple[bytes, bytes]:
        """The whole live state as a compacted index.log, and the definitions and queue
        deletions again as a compacted defs.log."""
        watermark = self._last_msg_id
        # a deletion is kept while a segment may hold refs it removed
        oldest = min(self._seg_first.values(), default=watermark + 1)
        self._dropped = {q: w for q, w in self._dropped.items() if w >= oldest}
        return fmt.compacted_logs(self._def_seq, watermark, self._defs, self._dropped,
                                  self._queues)

    def ram_bytes(self) -> int:
        """Approximate bytes held by the message table and queue references."""
        size = sum(a.buffer_info()[1] * a.itemsize
                   for a in (self._ids, self._segs, self._offs, self._lens, self._refs))
        for refs in self._queues.values():
            size += refs.ids.buffer_info()[1] * 8 + len(refs.flags)
        return size

    @property
    def stored_messages(self) -> int:
        return len(self._ids) - self._dead


