"""storage/streamlog.py: a stream's segment files, read by offset and by time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from amqp_broker.storage.base import StoreError
from amqp_broker.storage.records import HEADER_SIZE
from amqp_broker.storage.streamlog import RECOVER_BLOCK, StreamLog

EX, RK, PROPS = b"\x02ex", b"\x03key", b"\x00\x00"


def fill(log: StreamLog, n: int, size: int = 10, ts: int | None = None) -> None:
    for i in range(n):
        log.append(EX, RK, PROPS, str(i).encode().ljust(size, b"."), ts)


@pytest.fixture(params=["disk", "memory"])
def make(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    logs: list[StreamLog] = []

    def make_log(**kw: int | None) -> StreamLog:
        directory = tmp_path / "s" if request.param == "disk" else None
        log = StreamLog(directory, **kw)  # type: ignore[arg-type]
        log.open({"vhost": "/", "queue": "q"})
        logs.append(log)
        return log

    yield make_log
    for log in logs:
        log.close()


def test_offsets_are_contiguous_and_read_back(make) -> None:  # type: ignore[no-untyped-def]
    log = make()
    assert (log.first_offset, log.next_offset, log.count) == (0, 0, 0)
    fill(log, 1000, size=100)
    assert (log.first_offset, log.next_offset, log.count) == (0, 1000, 1000)
    got = log.read(0, 5)
    assert [e.offset for e in got] == [0, 1, 2, 3, 4]
    assert got[3].body.startswith(b"3.") and got[3].exchange == EX and got[3].routing_key == RK
    # a seek into the middle (past several sparse index entries)
    assert [e.offset for e in log.read(777, 3)] == [777, 778, 779]
    assert log.read(777, 1)[0].body.startswith(b"777")
    assert log.read(1000, 10) == []
    assert log.read(-5, 1)[0].offset == 0  # before the first: from the first
    assert len(log.read(0, 10_000, max_bytes=1000)) < 20  # bounded by bytes


def test_segments_roll_and_reads_cross_them(make) -> None:  # type: ignore[no-untyped-def]
    log = make(segment_bytes=2000)
    fill(log, 200, size=50)
    assert len(log.segments) > 5
    assert [e.offset for e in log.read(0, 200, max_bytes=10**9)] == list(range(200))
    seg = log.segments[2]
    assert log.read(seg.first, 1)[0].offset == seg.first


def test_retention_by_bytes_drops_whole_old_segments(make) -> None:  # type: ignore[no-untyped-def]
    log = make(segment_bytes=2000, max_bytes=5000)
    fill(log, 300, size=50)
    assert log.first_offset > 0
    assert log.next_offset == 300
    assert log.bytes <= 5000 + 2000  # at most one segment over, never a partial one
    assert log.read(0, 1)[0].offset == log.first_offset
    assert log.first_offset in log.firsts  # dropped at a segment boundary


def test_retention_by_age(make) -> None:  # type: ignore[no-untyped-def]
    log = make(segment_bytes=2000, max_age_ms=1000)
    fill(log, 100, size=50, ts=1_000)  # old
    fill(log, 100, size=50, ts=10_000_000_000_000)  # far in the future: kept
    assert log.first_offset >= 90
    assert log.next_offset == 200
    log.retain(now_ms=10_000_000_000_000 + 10_000)
    assert len(log.segments) == 1  # the newest segment always stays


def test_offset_at_finds_the_first_message_at_or_after_a_time(make) -> None:  # type: ignore[no-untyped-def]
    log = make(segment_bytes=4000)
    for i in range(300):
        log.append(EX, RK, PROPS, b"x" * 40, 1000 + i * 10)
    assert log.offset_at(0) == 0
    assert log.offset_at(1000 + 150 * 10) == 150
    assert log.offset_at(1000 + 150 * 10 - 5) == 150
    assert log.offset_at(10**15) == 300


def test_recovery_keeps_everything_and_continues_offsets(tmp_path: Path) -> None:
    log = StreamLog(tmp_path / "s", segment_bytes=3000)
    log.open()
    fill(log, 120, size=60)
    log.close()
    again = StreamLog(tmp_path / "s", segment_bytes=3000)
    again.open()
    assert (again.first_offset, again.next_offset) == (0, 120)
    assert again.append(EX, RK, PROPS, b"more") == 120
    assert [e.offset for e in again.read(110, 20)] == list(range(110, 121))
    again.close()


def test_a_torn_tail_is_truncated_and_later_segments_set_aside(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = StreamLog(tmp_path / "s", segment_bytes=3000)
    log.open()
    fill(log, 120, size=60)
    segs = [s.path for s in log.segments]
    log.close()
    assert segs[1] is not None
    size = os.path.getsize(segs[1])
    with open(segs[1], "r+b") as f:  # tear the second segment's last record
        f.truncate(size - 7)
    again = StreamLog(tmp_path / "s", segment_bytes=3000)
    again.open()
    # the torn record is gone; segments after it can no longer follow without a gap
    assert again.next_offset == log.segments[1].next - 1
    assert any("torn" in r.getMessage() for r in caplog.records)
    assert all(p is not None and p.with_name(p.name + ".bad").exists() for p in segs[2:])
    assert again.append(EX, RK, PROPS, b"x") == again.next_offset - 1
    again.close()


def test_a_corrupt_record_is_not_served(tmp_path: Path) -> None:
    log = StreamLog(tmp_path / "s")
    log.open()
    fill(log, 10, size=60)
    path = log.segments[0].path
    assert path is not None
    with open(path, "r+b") as f:
        f.seek(HEADER_SIZE + 40)
        f.write(b"\xff\xff")
    with pytest.raises(StoreError, match="bad record"):
        log.read(0, 10)
    log.close()


def test_destroy_removes_the_directory(tmp_path: Path) -> None:
    log = StreamLog(tmp_path / "s")
    log.open({"vhost": "/", "queue": "q"})
    fill(log, 3)
    assert (tmp_path / "s" / "meta.json").exists()
    log.destroy()
    assert not (tmp_path / "s").exists()
    with pytest.raises(StoreError):
        log.append(EX, RK, PROPS, b"x")


def test_sync_is_safe_after_close(tmp_path: Path) -> None:
    log = StreamLog(tmp_path / "s")
    log.open()
    fill(log, 3)
    assert log.dirty
    log.sync()
    assert not log.dirty
    log.close()
    log.sync()  # the store's writer may run it after the stream was deleted


def test_reads_that_go_on_where_the_last_stopped(make) -> None:  # type: ignore[no-untyped-def]
    """A consumer's successive reads (resumed at the remembered position) see every
    offset once, across segments, appends made meanwhile and retention."""
    log = make(segment_bytes=3000, max_bytes=6_000)
    fill(log, 50, size=40)
    seen: list[int] = []
    offset = 0
    for round_ in range(40):
        got = log.read(offset, 7)
        seen += [e.offset for e in got]
        offset = got[-1].offset + 1 if got else offset
        assert all(e.body.startswith(str(e.offset).encode()) for e in got)
        if round_ % 3 == 0:
            fill_from = log.next_offset
            for i in range(fill_from, fill_from + 5):
                log.append(EX, RK, PROPS, str(i).encode().ljust(40, b"."))
    assert seen == list(range(seen[0], seen[0] + len(seen)))
    assert len(log._resume) <= 2  # one reader: its hint, replaced as it goes
    assert log.first_offset > 0  # retention dropped segments meanwhile


def test_recovery_reads_records_larger_than_its_read_block(tmp_path: Path) -> None:
    log = StreamLog(tmp_path / "s")
    log.open()
    fill(log, 3)
    big = b"B" * (RECOVER_BLOCK + 12345)
    log.append(EX, RK, PROPS, big)
    fill(log, 3)
    log.close()
    again = StreamLog(tmp_path / "s")
    again.open()
    assert again.next_offset == 7
    assert again.read(3, 1, max_bytes=10**9)[0].body == big
    assert [e.offset for e in again.read(4, 5)] == [4, 5, 6]
    again.close()
