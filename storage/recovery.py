"""Recovery for the disk store: read index.log and defs.log, then rebuild the message table
from the segments, keeping the references the logs say are alive (format: storage/disk.py)."""

from __future__ import annotations

import json
import logging
import os
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .base import RecoveredMessage, Recovery
from .records import (
    BASE,
    END,
    FRAME_SIZE,
    HEADER_SIZE,
    K_BASE,
    K_DEF,
    K_DEF_V1,
    K_DELETE_QUEUE,
    K_DELIVERED,
    K_END,
    K_LIVE,
    K_MESSAGE,
    K_REMOVE,
    K_UNDEF,
    K_UNDEF_V1,
    MSG_HEAD,
    SEGMENT_MAGIC,
    U16,
    U64,
    Scanner,
    bytes_text,
    check_header,
    ids_from,
    split_key,
    text_bytes,
)
from .refs import DELIVERED, QueueRefs

log = logging.getLogger(__name__)


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
                            f.max_seq, other.max_seq,
                            extra={"file": str(f.path), "other_file": str(other.path)})
            if f.end_record is None:
                continue
            _, seq, n_defs, _ = f.end_record
            self.def_seq = max(self.def_seq, seq)
            if f.n_defs == n_defs:
                self.def_snapshots.append((seq, f.keys))
            else:
                log.error("store file %s: %d of the %d definitions of its snapshot are "
                          "unreadable; the other file's copy is used", f.path,
                          n_defs - f.n_defs, n_defs,
                          extra={"file": str(f.path), "unreadable": n_defs - f.n_defs})
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
                      "delivered again)", index.path, extra={"file": str(index.path)})
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
                log.error("store: definition %r is not readable JSON, skipped", key,
                          extra={"definition": str(key)})
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
                      path, kind, start - FRAME_SIZE,
                      extra={"file": str(path), "kind": kind, "offset": start - FRAME_SIZE})
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


class SegmentLoader:
    """Rebuilds the store's message table from its segments, one segment at a time in
    order, keeping the messages that some queue still references."""

    def __init__(self, index: IndexState, recovery: Recovery, do_fsync: bool) -> None:
        self.index = index
        self.recovery = recovery
        self.do_fsync = do_fsync
        # the message table, sorted by msg_id: msg_id -> (segment, offset, record length),
        # refcount; DiskStore takes these arrays over
        self.ids = array("q")
        self.segs = array("I")
        self.offs = array("I")
        self.lens = array("I")
        self.refs = array("I")
        self.seg_live: dict[int, int] = {}  # live messages per segment
        self.seg_first: dict[int, int] = {}  # first msg_id of each segment
        self.last_id = 0  # the highest msg_id seen

    def load(self, seg: int, path: Path) -> None:
        """Load one segment's live messages."""
        index, recovery = self.index, self.recovery
        data = path.read_bytes()
        self.seg_live[seg] = 0
        if check_header(data, SEGMENT_MAGIC, path) < 0:
            return
        last_id = self.last_id
        scan = Scanner(data, HEADER_SIZE, str(path))
        unpack_head, unpack_u16 = MSG_HEAD.unpack_from, U16.unpack_from
        head_size, first = MSG_HEAD.size, 0
        queues, envelopes = index.by_raw, index.envelopes
        sizes: dict[int, int] = {}  # one int object per distinct body size
        live_count = 0
        add_id, add_seg, add_off = self.ids.append, self.segs.append, self.offs.append
        add_len, add_refs = self.lens.append, self.refs.append
        for pos, start, end in scan:
            kind, msg_id, body_len, props_len, n_queues, ex_len, rk_len = unpack_head(data, start)
            if kind != K_MESSAGE or msg_id <= last_id:
                log.error("store file %s: unexpected record (kind %d, msg_id %d) at offset %d",
                          path, kind, msg_id, pos,
                          extra={"file": str(path), "kind": kind, "msg_id": msg_id,
                                 "offset": pos})
                recovery.skipped_records += 1
                continue
            last_id = msg_id
            if not first:
                first = msg_id
            p = start + head_size
            alive = []
            for _ in range(n_queues):
                n = unpack_u16(data, p)[0]
                raw = data[p + 2:p + 2 + n]
                p += 2 + n
                q = queues.get(raw)
                if q is None:
                    q = index.queue(bytes_text(raw))
                if msg_id <= q.dropped_upto or msg_id in q.removed:
                    continue
                if msg_id <= q.live_upto:  # compacted range: only LIVE-listed refs survive
                    live, i = q.live, q.pos
                    while i < len(live) and live[i] < msg_id:
                        i += 1
                    q.pos = i
                    if i == len(live) or live[i] != msg_id:
                        continue
                alive.append(q)
            if not alive:
                continue
            raw = data[p:p + ex_len + rk_len + props_len]
            envelope = envelopes.get(raw)
            if envelope is None:
                envelope = envelopes[raw] = (bytes_text(raw[:ex_len]),
                                             bytes_text(raw[ex_len:ex_len + rk_len]),
                                             raw[ex_len + rk_len:])
            exchange, routing_key, properties = envelope
            body_len = sizes.setdefault(body_len, body_len)
            for q in alive:
                delivered = msg_id in q.delivered
                q.messages.append(RecoveredMessage(msg_id, exchange, routing_key, properties,
                                                   body_len, delivered))
                refs = q.refs
                if refs is None:
                    refs = q.refs = QueueRefs()
                refs.ids.append(msg_id)
                refs.flags.append(DELIVERED if delivered else 0)
            add_id(msg_id)
            add_seg(seg)
            add_off(pos)
            add_len(end - pos)
            add_refs(len(alive))
            live_count += 1
        self.last_id = last_id
        self.seg_live[seg] = live_count
        if first:
            self.seg_first[seg] = first
        recovery.skipped_records += scan.skipped
        if scan.tail_bytes and live_count:
            with open(path, "r+b") as f:
                f.truncate(scan.end)
                if self.do_fsync:
                    os.fsync(f.fileno())
