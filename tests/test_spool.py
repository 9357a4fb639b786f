"""The spool's segment log: records come back once, in order, across the write
buffer, segment files and segment rotation; read segments are deleted."""

from __future__ import annotations

import os
import random
from collections import deque
from pathlib import Path

import pytest

from amqp_broker.storage import spool
from amqp_broker.storage.spool import SegmentLog, SpoolRoot


def _files(log: SegmentLog) -> list[str]:
    return sorted(os.listdir(log.directory)) if log.directory.exists() else []


def test_records_come_back_in_order_from_buffer_and_files(tmp_path: Path) -> None:
    log = SegmentLog(tmp_path / "q", segment_size=10_000)
    sent = [os.urandom(random.Random(i).randrange(0, 3000)) for i in range(200)]
    for rec in sent:
        log.append(rec)
    log.flush()
    assert log.count == 200
    assert len(_files(log)) > 1  # rotated
    got: list[bytes] = []
    while log.count:
        got += log.read(5000)
    assert got == sent
    assert log.read() == []
    # every fully read segment but the one still written is gone
    assert len(_files(log)) <= 1


def test_interleaved_appends_and_reads_match_a_fifo(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool, "FLUSH_BYTES", 4096)
    rng = random.Random(7)
    log = SegmentLog(tmp_path / "q", segment_size=50_000)
    model: deque[bytes] = deque()
    n = 0
    for _ in range(3000):
        if rng.random() < 0.6:
            size = rng.choice([0, 1, 10, 100, 5000, 70_000])
            rec = n.to_bytes(4, "little") + bytes(size)
            n += 1
            log.append(rec)
            model.append(rec)
        else:
            for rec in log.read(rng.choice([1, 100, 10_000, 200_000])):
                assert rec == model.popleft()
        assert log.count == len(model)
    while log.count:
        for rec in log.read():
            assert rec == model.popleft()
    assert not model


@pytest.mark.parametrize("flushed", [False, True])
def test_a_record_larger_than_the_read_size_is_read_whole(tmp_path: Path,
                                                         flushed: bool) -> None:
    log = SegmentLog(tmp_path / "q")
    big = os.urandom(3 * 1024 * 1024)
    for rec in (b"a", big, b"b"):
        log.append(rec)
    if flushed:
        log.flush()
    got: list[bytes] = []
    while log.count:
        batch = log.read(10)
        assert batch
        got += batch
    assert got == [b"a", big, b"b"]


def test_close_deletes_the_files_and_root_is_emptied_at_start(tmp_path: Path) -> None:
    root = SpoolRoot(tmp_path / "spool")
    log = root.open(segment_size=1000)
    for _ in range(50):
        log.append(bytes(100))
    log.flush()
    assert _files(log)
    log.close()
    assert not log.directory.exists()
    assert log.count == 0
    stale = tmp_path / "spool" / "9"
    stale.mkdir(parents=True)
    (stale / "00000000.spl").write_bytes(b"old")
    SpoolRoot(tmp_path / "spool")
    assert not (tmp_path / "spool").exists()


def test_a_write_error_keeps_the_records_in_ram(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool, "FLUSH_BYTES", 100)
    log = SegmentLog(tmp_path / "q")

    def full(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spool.os, "write", full)
    sent = [bytes([i]) * 60 for i in range(5)]
    for rec in sent:
        log.append(rec)  # never raises
    assert log.error is not None and log.error.errno == 28
    monkeypatch.undo()
    monkeypatch.setattr(spool, "FLUSH_BYTES", 100)
    log.append(b"last")  # the disk is back: everything reaches the file
    assert log.error is None
    assert log.disk_bytes > 0
    got: list[bytes] = []
    while log.count:
        got += log.read()
    assert got == [*sent, b"last"]
