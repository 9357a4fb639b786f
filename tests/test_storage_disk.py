"""DiskStore: durability round trips, space reclaim, recovery from damage, group commit."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import random
import shutil
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from amqp_broker.storage import DiskStore, Recovery, StoreError, disk
from amqp_broker.storage import segment as fmt

PROPS = b"\x10\x00\x02"  # flags: delivery-mode, then 2 (persistent)


def commit(store: DiskStore) -> bool:
    return asyncio.run(store.commit())


def reopen(path: Path, **kwargs: Any) -> tuple[DiskStore, Recovery]:
    store = DiskStore(path, fsync=False, **kwargs)
    return store, store.open()


def ids(recovery: Recovery, queue: str) -> list[int]:
    return [m.msg_id for m in recovery.queues.get(queue, [])]


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def body(i: int, size: int = 100) -> bytes:
    return (b"%08d" % i * (size // 8 + 1))[:size]


def test_publish_remove_restart_keeps_order_and_bodies(tmp_path: Path) -> None:
    store, rec = reopen(tmp_path)
    assert rec.queues == {} and rec.next_msg_id == 1
    for i in range(1, 101):
        store.publish(i, "amq.direct", f"key.{i}", PROPS, body(i), ["q"])
    assert commit(store)
    store.remove("q", range(1, 51, 2))
    store.close()

    store, rec = reopen(tmp_path)
    expected = [i for i in range(1, 101) if i > 50 or i % 2 == 0]
    assert ids(rec, "q") == expected
    m = rec.queues["q"][0]
    assert (m.msg_id, m.exchange, m.routing_key, m.properties, m.body_size, m.delivered) == \
        (2, "amq.direct", "key.2", PROPS, 100, False)
    assert rec.next_msg_id == 101
    assert all(store.read_body(i) == body(i) for i in expected)
    with pytest.raises(StoreError):
        store.read_body(1)
    store.close()


def test_read_body_before_and_after_sync(tmp_path: Path) -> None:
    store, _ = reopen(tmp_path)
    store.publish(1, "", "q", PROPS, b"hello", ["q"])
    assert store.read_body(1) == b"hello"  # still in the write buffer
    assert commit(store)
    assert store.read_body(1) == b"hello"  # now from the segment file
    assert store.unsynced_bytes == 0
    store.publish(2, "", "q", PROPS, b"", ["q"])
    assert commit(store)
    assert store.read_body(2) == b""
    store.close()
    with pytest.raises(StoreError):
        store.publish(3, "", "q", PROPS, b"x", ["q"])


def test_delivered_flag_survives(tmp_path: Path) -> None:
    store, _ = reopen(tmp_path)
    for i in range(1, 6):
        store.publish(i, "", "q", PROPS, body(i), ["q", "r"])
    store.mark_delivered("q", 2)
    store.mark_delivered("q", 4)
    store.mark_delivered("r", 5)
    store.close()
    store, rec = reopen(tmp_path)
    assert [(m.msg_id, m.delivered) for m in rec.queues["q"]] == \
        [(1, False), (2, True), (3, False), (4, True), (5, False)]
    assert [m.delivered for m in rec.queues["r"]] == [False] * 4 + [True]
    store.close()
    # after the compaction on open the flags are carried over in the snapshot
    store, rec = reopen(tmp_path)
    assert [m.msg_id for m in rec.queues["q"] if m.delivered] == [2, 4]
    store.close()


def test_message_to_three_queues_is_stored_once(tmp_path: Path) -> None:
    store, _ = reopen(tmp_path)
    big = os.urandom(64 * 1024)
    store.publish(1, "", "", PROPS, big, ["a"])
    assert commit(store)
    before = dir_size(tmp_path / "segments")
    store.publish(2, "amq.fanout", "", PROPS, big, ["a", "b", "c"])
    assert commit(store)
    grown = dir_size(tmp_path / "segments") - before
    assert len(big) < grown < len(big) + 200
    store.remove("a", [2])
    store.remove("b", [2])
    store.close()
    store, rec = reopen(tmp_path)
    assert (ids(rec, "a"), ids(rec, "b"), ids(rec, "c")) == ([1], [], [2])
    assert store.read_body(2) == big
    store.close()


def test_definitions_round_trip_and_delete(tmp_path: Path) -> None:
    store, _ = reopen(tmp_path)
    for i in range(10_000):
        store.save_definition(f"queue/%2F/q{i}", {"durable": True, "arguments": {"n": i}})
    store.save_definition("exchange/%2F/x", {"type": "topic"})
    store.save_definition("exchange/%2F/x", {"type": "direct"})
    store.save_definition("queue/%2F/q7", None)
    store.save_definition("never/existed", None)
    assert commit(store)
    store.close()
    store, rec = reopen(tmp_path)
    assert len(rec.definitions) == 10_000
    assert rec.definitions["exchange/%2F/x"] == {"type": "direct"}
    assert rec.definitions["queue/%2F/q9999"] == {"durable": True, "arguments": {"n": 9999}}
    assert "queue/%2F/q7" not in rec.definitions
    store.save_definition("exchange/%2F/x", None)
    store.close()
    store, rec = reopen(tmp_path)
    assert "exchange/%2F/x" not in rec.definitions and len(rec.definitions) == 9_999
    store.close()


def test_delete_queue_then_recreate_starts_empty(tmp_path: Path) -> None:
    store, _ = reopen(tmp_path)
    for i in range(1, 11):
        store.publish(i, "", "", PROPS, body(i), ["q", "keep"] if i % 2 else ["q"])
    assert commit(store)
    store.delete_queue("q")
    store.publish(11, "", "", PROPS, body(11), ["q"])
    store.close()
    store, rec = reopen(tmp_path)
    assert ids(rec, "q") == [11]
    assert ids(rec, "keep") == [1, 3, 5, 7, 9]
    store.delete_queue("keep")
    store.delete_queue("q")
    store.close()
    store, rec = reopen(tmp_path)
    assert rec.queues == {} and rec.next_msg_id == 12
    assert list((tmp_path / "segments").iterdir()) == []
    store.close()


def test_segments_deleted_once_drained(tmp_path: Path) -> None:
    store, _ = reopen(tmp_path, segment_size=1024 * 1024)
    payload = os.urandom(1024)
    n = 50 * 1024
    for i in range(1, n + 1):
        store.publish(i, "", "", PROPS, payload, ["q", "r"] if i % 10 == 0 else ["q"])
        if i % 5000 == 0:
            assert commit(store)
    assert commit(store)
    assert dir_size(tmp_path) > 50 * 1024 * 1024
    for i in range(1, n + 1):  # one ack at a time, like a consumer
        store.remove("q", [i])
    assert commit(store)
    assert ids_left(store) == n // 10  # the r references
    store.delete_queue("r")
    assert commit(store)
    assert commit(store)
    assert dir_size(tmp_path) < 5 * 1024 * 1024
    assert store.stored_messages == 0
    store.close()
    store, rec = reopen(tmp_path)
    assert rec.queues == {} and rec.next_msg_id == n + 1
    store.close()


def ids_left(store: DiskStore) -> int:
    return store.stored_messages


def count_compactions(store: DiskStore) -> list[int]:
    """Counts index snapshots written after open."""
    count = [0]
    real = store._writer.index.replace

    def replace(data: bytes, do_fsync: bool) -> None:
        count[0] += 1
        real(data, do_fsync)

    store._writer.index.replace = replace  # type: ignore[method-assign]
    return count


def test_index_compaction_keeps_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(disk, "INDEX_COMPACT_MIN", 16 * 1024)
    store, _ = reopen(tmp_path, segment_size=64 * 1024)
    compactions = count_compactions(store)
    model: dict[str, set[int]] = {"a": set(), "b": set()}
    delivered: set[tuple[str, int]] = set()
    for i in range(1, 4001):
        store.publish(i, "", "", PROPS, body(i, 40), ["a", "b"])
        model["a"].add(i)
        model["b"].add(i)
        if i % 3 == 0:
            store.mark_delivered("a", i)
            delivered.add(("a", i))
        if i > 10:
            store.remove("a", [i - 10])
            model["a"].discard(i - 10)
        if i > 20 and (i - 20) % 50:  # every 50th message stays in b for good
            store.remove("b", [i - 20])
            model["b"].discard(i - 20)
        if i % 100 == 0:
            assert commit(store)
    assert commit(store)
    assert compactions[0] >= 2
    assert (tmp_path / "index.log").stat().st_size < 64 * 1024
    store.close()
    store, rec = reopen(tmp_path)
    for q in ("a", "b"):
        assert ids(rec, q) == sorted(model[q])
        assert {m.msg_id for m in rec.queues[q] if m.delivered} == \
            {i for (dq, i) in delivered if dq == q and i in model[q]}
    assert all(store.read_body(i) == body(i, 40) for i in model["b"])
    store.close()


def write_messages(path: Path, n: int, size: int = 200) -> list[int]:
    store, _ = reopen(path)
    for i in range(1, n + 1):
        store.publish(i, "", "", PROPS, body(i, size), ["q"])
    store.close()
    return list(range(1, n + 1))


def record_offsets(path: Path) -> list[int]:
    data = path.read_bytes()
    return [pos for pos, _, _ in fmt.Scanner(data, fmt.HEADER_SIZE, str(path))]


def test_torn_tail_is_truncated(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_messages(tmp_path, 20)
    seg = tmp_path / "segments" / "00000001.seg"
    last = record_offsets(seg)[-1]
    with open(seg, "r+b") as f:
        f.truncate(last + 50)  # mid-record: the frame says more bytes follow
    with caplog.at_level(logging.WARNING):
        store, rec = reopen(tmp_path)
    assert ids(rec, "q") == list(range(1, 20))
    assert rec.skipped_records == 0
    assert seg.stat().st_size == last
    assert "torn" in caplog.text
    store.publish(20, "", "", PROPS, b"again", ["q"])
    store.close()
    store, rec = reopen(tmp_path)
    assert ids(rec, "q") == list(range(1, 21)) and store.read_body(20) == b"again"
    store.close()


def test_corrupt_record_in_the_middle_is_skipped(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    write_messages(tmp_path, 30)
    seg = tmp_path / "segments" / "00000001.seg"
    bad = record_offsets(seg)[9]  # msg 10
    data = bytearray(seg.read_bytes())
    data[bad + 100:bad + 104] = b"XXXX"  # inside the payload
    seg.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR):
        store, rec = reopen(tmp_path)
    assert ids(rec, "q") == [i for i in range(1, 31) if i != 10]
    assert rec.skipped_records == 1
    assert str(seg) in caplog.text and f"offset {bad}" in caplog.text
    assert store.read_body(30) == body(30, 200)
    store.close()


def test_corrupt_length_field_resynchronises(tmp_path: Path) -> None:
    write_messages(tmp_path, 10)
    seg = tmp_path / "segments" / "00000001.seg"
    bad = record_offsets(seg)[4]
    data = bytearray(seg.read_bytes())
    data[bad + 4:bad + 8] = (10**9).to_bytes(4, "little")  # length runs past the end
    seg.write_bytes(bytes(data))
    store, rec = reopen(tmp_path)
    assert ids(rec, "q") == [1, 2, 3, 4, 6, 7, 8, 9, 10]
    assert rec.skipped_records == 1
    store.close()


def test_group_commit_one_fsync_for_many_publishes(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    store = DiskStore(tmp_path, fsync=True)
    store.open()
    fsyncs = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd))[1])
    results: list[tuple[int, bool]] = []
    for i in range(1, 1001):
        store.publish(i, "", "", PROPS, body(i), ["q"])
        store.on_sync(lambda token, ok: results.append((token, ok)))
    assert store.last_token == 1000

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.run)
            with anyio.fail_after(10):
                while len(results) < 1000:
                    await anyio.sleep(0.001)
            store.close()

    asyncio.run(main())
    assert results == [(1000, True)] * 1000
    assert 1 <= len(fsyncs) <= 3  # segment, its directory (new file), at most the index


def test_publishes_during_a_commit_go_to_the_next_batch(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    store = DiskStore(tmp_path, fsync=True)
    store.open()
    entered, release = threading.Event(), threading.Event()
    real_fsync = os.fsync
    fsyncs = []

    def slow_fsync(fd: int) -> None:
        fsyncs.append(fd)
        entered.set()
        release.wait(5)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    results: list[tuple[int, bool]] = []
    early: list[tuple[int, bool]] = []

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.run)
            store.publish(1, "", "", PROPS, b"first", ["q"])
            store.on_sync(lambda t, ok: results.append((t, ok)))
            await anyio.to_thread.run_sync(entered.wait)
            store.on_sync(lambda t, ok: early.append((t, ok)))  # nothing new: joins batch 1
            assert early == []
            for i in range(2, 202):  # arrive while the first batch is being fsync'd
                store.publish(i, "", "", PROPS, body(i), ["q"])
                store.on_sync(lambda t, ok: results.append((t, ok)))
            assert store.read_body(1) == b"first"  # in flight: still readable
            assert results == []
            first_batch_fsyncs = len(fsyncs)
            release.set()
            with anyio.fail_after(10):
                while len(results) < 201:
                    await anyio.sleep(0.001)
            assert len(fsyncs) - first_batch_fsyncs <= 3
            store.close()

    asyncio.run(main())
    assert results == [(1, True)] + [(201, True)] * 200
    assert early == [(1, True)]


@pytest.mark.parametrize("failing", ["pwrite", "fsync"])
def test_disk_full_reports_failure_and_recovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                failing: str) -> None:
    store = DiskStore(tmp_path, fsync=True)
    store.open()
    for i in range(1, 11):
        store.publish(i, "", "", PROPS, body(i), ["q"])
    assert commit(store) and not store.failed
    real = getattr(os, failing)

    def full(*args: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, failing, full)
    results: list[tuple[int, bool]] = []
    for i in range(11, 21):
        store.publish(i, "", "", PROPS, body(i), ["q"])  # never raises
    store.remove("q", [1, 2])
    store.on_sync(lambda t, ok: results.append((t, ok)))
    assert not commit(store)
    assert store.failed and results == [(20, False)]
    assert store.read_body(15) == body(15)  # kept for the retry
    assert not commit(store) and store.failed  # still full

    monkeypatch.setattr(os, failing, real)
    store.on_sync(lambda t, ok: results.append((t, ok)))
    assert commit(store)  # the retry writes the earlier batch too
    assert not store.failed and results[-1] == (20, True)
    store.close()
    store, rec = reopen(tmp_path)
    assert ids(rec, "q") == list(range(3, 21))
    store.close()


def test_disk_full_until_close_keeps_earlier_data(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = reopen(tmp_path, segment_size=4096)
    for i in range(1, 31):
        store.publish(i, "", "", PROPS, body(i), ["q"])
    store.save_definition("queue/q", {"durable": True})
    assert commit(store)
    written = [0]
    real_pwrite = os.pwrite

    def partly(fd: int, data: Any, offset: int) -> int:
        # a short write of half the buffer, then the disk is full
        if written[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        written[0] += 1
        return real_pwrite(fd, bytes(data)[: len(data) // 2], offset)

    monkeypatch.setattr(os, "pwrite", partly)
    results: list[bool] = []
    for i in range(31, 61):
        store.publish(i, "", "", PROPS, body(i), ["q"])
    store.on_sync(lambda t, ok: results.append(ok))
    store.save_definition("queue/other", {"durable": True})
    assert not commit(store)
    store.close()  # the final flush fails too; close must not raise
    assert results == [False] and store.failed
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    store, rec = reopen(tmp_path, segment_size=4096)
    assert ids(rec, "q")[:30] == list(range(1, 31))
    assert rec.definitions["queue/q"] == {"durable": True}
    assert all(store.read_body(i) == body(i) for i in ids(rec, "q"))
    store.close()


def definition_records(path: Path, key: str) -> int:
    data = path.read_bytes()
    raw = key.encode()
    return sum(1 for _, start, end in fmt.Scanner(data, fmt.HEADER_SIZE, str(path))
               if data[start] == fmt.K_DEF and data[start + 3:start + 3 + len(raw)] == raw)


def test_a_failed_defs_log_write_is_retried_without_duplicates(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = reopen(tmp_path)
    defs_fd = store._writer.defs.fd
    real_pwrite = os.pwrite
    failures = [1]

    def pwrite(fd: int, data: Any, offset: int) -> int:
        if fd == defs_fd and failures[0]:
            failures[0] -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    results: list[bool] = []
    store.save_definition("queue/q", {"durable": True})
    store.on_sync(lambda t, ok: results.append(ok))
    assert not commit(store) and results == [False] and store.failed
    store.on_sync(lambda t, ok: results.append(ok))
    assert commit(store) and results == [False, True] and not store.failed
    store.close()
    for name in ("index.log", "defs.log"):  # written again at the same offset: once each
        assert definition_records(tmp_path / name, "queue/q") == 1, name
    store, rec = reopen(tmp_path)
    assert rec.definitions == {"queue/q": {"durable": True}}
    store.close()


def test_open_goes_on_when_defs_log_cannot_be_compacted(tmp_path: Path) -> None:
    store, _ = reopen(tmp_path)
    store.save_definition("queue/a", {"n": 1})
    store.publish(1, "", "", PROPS, b"one", ["a"])
    store.close()
    store = DiskStore(tmp_path, fsync=False)

    def full(data: bytes, do_fsync: bool) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    store._writer.defs.replace = full  # type: ignore[method-assign]
    rec = store.open()  # index.log is compacted, defs.log appended to
    assert store.failed and rec.definitions == {"queue/a": {"n": 1}} and ids(rec, "a") == [1]
    store.save_definition("queue/b", {"n": 2})
    store.save_definition("queue/a", None)
    store.close()
    (tmp_path / "index.log").unlink()  # what defs.log alone says
    store, rec = reopen(tmp_path)
    assert rec.definitions == {"queue/b": {"n": 2}}
    assert ids(rec, "a") == [1]  # no index: every stored message is kept
    store.close()


def test_run_retries_after_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = reopen(tmp_path)
    store.retry_interval = 0.01
    real_pwrite = os.pwrite
    failures = [3]

    def flaky(fd: int, data: Any, offset: int) -> int:
        if failures[0]:
            failures[0] -= 1
            raise OSError(errno.EIO, "Input/output error")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", flaky)
    results: list[bool] = []

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.run)
            store.publish(1, "", "", PROPS, b"x", ["q"])
            store.on_sync(lambda t, ok: results.append(ok))
            with anyio.fail_after(5):
                while not results:
                    await anyio.sleep(0.001)
                assert store.failed
                while failures[0] or store.failed:
                    await anyio.sleep(0.005)
            store.on_sync(lambda t, ok: results.append(ok))
            store.close()

    asyncio.run(main())
    assert results == [False, True]
    store, rec = reopen(tmp_path)
    assert ids(rec, "q") == [1]
    store.close()


def test_second_open_of_same_directory_is_refused(tmp_path: Path) -> None:
    store, _ = reopen(tmp_path)
    with pytest.raises(StoreError):
        reopen(tmp_path)
    store.close()
    store, _ = reopen(tmp_path)
    store.close()


@pytest.mark.parametrize("seed", [7, 11, 23])
def test_random_operations_match_a_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         seed: int) -> None:
    monkeypatch.setattr(disk, "INDEX_COMPACT_MIN", 1024)
    monkeypatch.setattr(disk, "INDEX_COMPACT_RATIO", 1)
    rng = random.Random(seed)
    queues = ["q0", "q1", "q2", "q3"]
    model: dict[str, dict[int, bool]] = {q: {} for q in queues}  # msg_id -> delivered
    bodies: dict[int, bytes] = {}
    store, _ = reopen(tmp_path, segment_size=8192)
    compactions = [count_compactions(store)]
    durable: dict[str, dict[int, bool]] | None = None
    next_id = 1
    for step in range(3000):
        op = rng.random()
        if op < 0.45:
            targets = rng.sample(queues, rng.randint(1, 3))
            data = os.urandom(rng.randint(0, 600))
            store.publish(next_id, "x", "rk", PROPS, data, targets)
            bodies[next_id] = data
            for q in targets:
                model[q][next_id] = False
            next_id += 1
        elif op < 0.75:
            q = rng.choice(queues)
            if model[q]:
                gone = rng.sample(sorted(model[q]), min(len(model[q]), rng.randint(1, 4)))
                store.remove(q, gone)
                for m in gone:
                    del model[q][m]
        elif op < 0.85:
            q = rng.choice(queues)
            if model[q]:
                m = rng.choice(sorted(model[q]))
                store.mark_delivered(q, m)
                model[q][m] = True
        elif op < 0.87:
            q = rng.choice(queues)
            store.delete_queue(q)
            model[q] = {}
        elif op < 0.96:
            assert commit(store)
            durable = {q: dict(refs) for q, refs in model.items()}
        elif op < 0.97 and durable is not None:  # a crash now loses only the pending batch
            crash = tmp_path.parent / f"{tmp_path.name}-crash"
            shutil.rmtree(crash, ignore_errors=True)
            shutil.copytree(tmp_path, crash)
            copy, rec = reopen(crash, segment_size=8192)
            for q in queues:
                assert [(m.msg_id, m.delivered) for m in rec.queues.get(q, [])] == \
                    sorted(durable[q].items()), (step, q)
            copy.close()
        elif op >= 0.985:
            store.close()
            durable = {q: dict(refs) for q, refs in model.items()}
            store, rec = reopen(tmp_path, segment_size=8192)
            compactions.append(count_compactions(store))
            assert rec.next_msg_id == next_id
            for q in queues:
                assert [(m.msg_id, m.delivered) for m in rec.queues.get(q, [])] == \
                    sorted(model[q].items()), (step, q)
        live = set().union(*model.values())
        assert store._live_refs == sum(map(len, model.values()))
        for m in rng.sample(sorted(live), min(3, len(live))):
            assert store.read_body(m) == bodies[m]
    store.close()
    assert sum(c[0] for c in compactions) >= 2  # index snapshots taken while running
    live = set().union(*model.values())
    segs = list((tmp_path / "segments").iterdir())
    assert store.stored_messages == len(live)
    assert len(segs) <= len(live) + 2


def test_drained_current_segment_is_rolled_and_deleted(tmp_path: Path) -> None:
    store, _ = reopen(tmp_path)  # 64 MB segments: everything lands in the current one
    payload = os.urandom(4096)
    for i in range(1, 2049):
        store.publish(i, "", "", PROPS, payload, ["q"])
    assert commit(store)
    assert dir_size(tmp_path) > 8 * 1024 * 1024
    store.remove("q", range(1, 2049))
    assert commit(store)
    assert dir_size(tmp_path) < 256 * 1024
    store.publish(2049, "", "", PROPS, b"after", ["q"])
    store.close()
    store, rec = reopen(tmp_path)
    assert ids(rec, "q") == [2049] and store.read_body(2049) == b"after"
    store.close()


def test_segments_from_before_a_restart_are_deleted_once_drained(tmp_path: Path) -> None:
    write_messages(tmp_path, 100)
    store, rec = reopen(tmp_path)
    assert len(list((tmp_path / "segments").iterdir())) == 1
    store.remove("q", ids(rec, "q")[:-1])
    assert commit(store)
    assert len(list((tmp_path / "segments").iterdir())) == 1
    store.remove("q", [100])
    assert commit(store)
    assert list((tmp_path / "segments").iterdir()) == []
    store.close()


def test_a_store_refused_for_a_locked_directory_closes_cleanly(tmp_path: Path) -> None:
    first = DiskStore(tmp_path)
    first.open()
    second = DiskStore(tmp_path)
    with pytest.raises(StoreError, match="in use by another store"):
        second.open()
    second.close()  # once raised "Bad file descriptor" (the lock closed twice)
    first.close()
    third = DiskStore(tmp_path)  # the lock is free again
    third.open()
    third.close()
