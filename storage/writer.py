"""The group commit's file writes: a Batch of encoded records, the two append logs, and
the Writer that a worker thread runs one batch list at a time (format: storage/disk.py)."""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from threading import Lock

from .records import DEFS_MAGIC, HEADER_SIZE, INDEX_MAGIC, file_header


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
    syncs: dict[str, Callable[[], None]] = field(default_factory=dict)  # other files (streams)
    token: int = 0
    stage: int = 0  # writer's progress, so a retry never redoes an unlink
    # Index records that a client was promised (definitions, queue deletion) need an
    # fsync; acks and delivered marks only need to reach the page cache: losing them in
    # an OS crash redelivers a message (at-least-once), never loses one.
    sync_index: bool = False

    def has_data(self) -> bool:
        return bool(self.writes or self.index or self.defs or self.removes or self.delivered
                    or self.snapshot is not None or self.unlink or self.syncs)


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
            for sync in b.syncs.values():  # files the broker wrote itself (stream logs)
                sync()
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
