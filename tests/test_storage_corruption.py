"""DiskStore: damage to headers, definition records and index.log costs at most what was
damaged. A flipped bit in a header is logged and the file's records are still read; a real
newer format is refused; definitions live in index.log and again in defs.log; a truncated
or corrupt index.log keeps every durable queue and every unacknowledged message, and
deleted queues stay deleted."""

from __future__ import annotations

import logging
import shutil
import struct
import zlib
from pathlib import Path

import anyio
import pytest
from pamqp import commands

from amqp_broker.broker import Broker
from amqp_broker.storage import DiskStore, Recovery, StoreError
from amqp_broker.storage import segment as fmt

from inproc import Client, make_broker

PROPS = b"\x10\x00\x02"
VERSION_FIELD = 8  # byte offset of the u16 version in every file header
RECORD = struct.Struct("<III")  # record magic, payload length, crc32(payload)


def reopen(path: Path) -> tuple[DiskStore, Recovery]:
    store = DiskStore(path, fsync=False)
    return store, store.open()


def ids(recovery: Recovery, queue: str) -> list[int]:
    return [m.msg_id for m in recovery.queues.get(queue, [])]


def body(i: int) -> bytes:
    return b"body-%d" % i * 20


def records(path: Path) -> list[tuple[int, int, bytes]]:
    """(offset, end, payload) of every record of a store file, read without the store."""
    data = path.read_bytes()
    out, pos = [], 16
    while pos + RECORD.size <= len(data):
        magic, length, crc = RECORD.unpack_from(data, pos)
        end = pos + RECORD.size + length
        assert magic == 0x5245438E and end <= len(data) and zlib.crc32(data[pos + 12:end]) == crc
        out.append((pos, end, data[pos + 12:end]))
        pos = end
    return out


def flip(path: Path, offset: int, mask: int = 0x01) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


def errors_naming(caplog: pytest.LogCaptureFixture, path: Path) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.ERROR and str(path) in r.getMessage()]


# --- a store with some history -------------------------------------------------------

QUEUE = {"durable": True, "arguments": {}}
EXPECTED_DEFS = {
    "exchange/x": {"type": "direct"},  # redefined after a restart: the later DEF wins
    "queue/a": QUEUE, "queue/b": QUEUE, "queue/c": QUEUE, "queue/re": QUEUE,
}
PUBLISHED: dict[str, set[int]] = {}  # every msg_id ever routed to each queue
UNACKED: dict[str, list[int]] = {}  # what must come back
DELIVERED: dict[str, set[int]] = {}


def populate(path: Path) -> None:
    """Two sessions: the second starts with the compaction on open, so index.log holds a
    snapshot (BASE, definitions, LIVE lists, END) followed by appended records."""
    published: dict[str, set[int]] = {q: set() for q in ("a", "b", "c", "re", "gone", "gone2")}

    def publish(store: DiskStore, msg_id: int, *queues: str) -> None:
        store.publish(msg_id, "x", "rk", PROPS, body(msg_id), list(queues))
        for q in queues:
            published[q].add(msg_id)

    store, _ = reopen(path)
    store.save_definition("exchange/x", {"type": "topic"})
    store.save_definition("exchange/x2", {"type": "fanout"})
    for key in ("queue/a", "queue/b", "queue/gone", "queue/re"):
        store.save_definition(key, QUEUE)
    for i in range(1, 31):  # gone's messages share segment 1 with a's live ones
        publish(store, i, *(["a", "b"] if i % 2 == 0 else ["a"]), *(["gone"] if i % 3 == 0 else []))
    publish(store, 31, "re")
    publish(store, 32, "re")
    store.mark_delivered("a", 7)
    store.remove("a", range(1, 6))  # acked
    store.delete_queue("gone")
    store.save_definition("queue/gone", None)
    store.save_definition("exchange/x2", None)
    store.delete_queue("re")  # deleted and declared again: only later messages are its own
    store.close()

    store, _ = reopen(path)
    store.save_definition("queue/c", QUEUE)
    store.save_definition("queue/gone2", QUEUE)
    store.save_definition("exchange/x", {"type": "direct"})
    for i in range(33, 41):
        publish(store, i, "c", *(["gone2"] if i % 2 else []))
    publish(store, 41, "re")
    store.delete_queue("gone2")
    store.save_definition("queue/gone2", None)
    store.remove("b", [2, 4])
    store.mark_delivered("b", 6)
    store.close()

    PUBLISHED.clear()
    PUBLISHED.update(published)
    UNACKED.clear()
    UNACKED.update({"a": list(range(6, 31)), "b": list(range(6, 31, 2)), "c": list(range(33, 41)),
                    "re": [41]})
    DELIVERED.clear()
    DELIVERED.update({"a": {7}, "b": {6}})


def check(store: DiskStore, rec: Recovery, exact: bool = False, flags: bool = True) -> None:
    """Every durable queue and unacked message is back, nothing deleted is; with exact,
    nothing acked is back either and (with flags) delivered flags are kept."""
    for q, must in UNACKED.items():
        got = ids(rec, q)
        assert got == sorted(set(got)), q
        if exact:
            assert got == must, q
            delivered = {m.msg_id for m in rec.queues[q] if m.delivered}
            assert not flags or delivered == DELIVERED.get(q, set()), q
        else:
            assert set(must) <= set(got) <= PUBLISHED[q], q
        assert all(store.read_body(i) == body(i) for i in got)
    assert ids(rec, "re") == [41]  # its messages from before the deletion stay deleted
    assert ids(rec, "gone") == [] and ids(rec, "gone2") == []
    assert set(rec.queues) <= {"a", "b", "c", "re"}
    assert rec.next_msg_id == 42
    assert rec.definitions == EXPECTED_DEFS


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("history")
    populate(path)
    return path


def damaged_copy(history: Path, tmp_path: Path) -> Path:
    path = tmp_path / "data"
    shutil.copytree(history, path)
    return path


def test_undamaged_history_is_recovered_exactly(history: Path, tmp_path: Path) -> None:
    path = damaged_copy(history, tmp_path)
    store, rec = reopen(path)
    check(store, rec, exact=True)
    store.close()
    store, rec = reopen(path)  # and again from the files that open compacted
    check(store, rec, exact=True)
    store.close()


# --- headers ---------------------------------------------------------------------------

@pytest.mark.parametrize("bit", range(16))
def test_flipped_version_bit_in_a_segment_header_is_logged_and_records_read(
        history: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, bit: int) -> None:
    path = damaged_copy(history, tmp_path)
    seg = path / "segments" / "00000001.seg"
    flip(seg, VERSION_FIELD + bit // 8, 1 << bit % 8)
    with caplog.at_level(logging.WARNING):
        store, rec = reopen(path)
    check(store, rec, exact=True)
    assert errors_naming(caplog, seg)
    store.close()


@pytest.mark.parametrize("bit", range(16))
def test_flipped_version_bit_in_the_index_header_is_logged_and_records_read(
        history: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, bit: int) -> None:
    path = damaged_copy(history, tmp_path)
    flip(path / "index.log", VERSION_FIELD + bit // 8, 1 << bit % 8)
    with caplog.at_level(logging.WARNING):
        store, rec = reopen(path)
    check(store, rec, exact=True)
    assert errors_naming(caplog, path / "index.log")
    store.close()
    caplog.clear()
    store, rec = reopen(path)  # the open rewrote index.log: no error any more
    check(store, rec, exact=True)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    store.close()


@pytest.mark.parametrize("offset", [0, 7, 9, 10, 11, 12, 15])
def test_any_damaged_header_byte_is_logged_not_fatal(history: Path, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture,
                                                     offset: int) -> None:
    path = damaged_copy(history, tmp_path)
    for name in ("segments/00000001.seg", "segments/00000002.seg", "index.log", "defs.log"):
        flip(path / name, offset, 0x40)
    with caplog.at_level(logging.WARNING):
        store, rec = reopen(path)
    check(store, rec, exact=True)
    assert errors_naming(caplog, path / "index.log")
    store.close()


def header(magic: bytes, version: int) -> bytes:
    """A version 2 style header (checksummed) claiming `version`."""
    head = magic + struct.pack("<HH", version, 0)
    return head + struct.pack("<I", zlib.crc32(head))


@pytest.mark.parametrize("name,magic", [("segments/00000001.seg", b"AMQPSEG\x00"),
                                        ("index.log", b"AMQPIDX\x00"),
                                        ("defs.log", b"AMQPDEF\x00")])
@pytest.mark.parametrize("version", [3, 4, 0x100, 0xFFFF])
def test_a_newer_format_is_refused_naming_file_and_version(history: Path, tmp_path: Path,
                                                           name: str, magic: bytes,
                                                           version: int) -> None:
    path = damaged_copy(history, tmp_path)
    file = path / name
    file.write_bytes(header(magic, version) + file.read_bytes()[16:])
    with pytest.raises(StoreError, match=rf"{file}.*format version {version}\b"):
        reopen(path)


def test_headers_are_checksummed_version_2() -> None:
    for magic in (fmt.SEGMENT_MAGIC, fmt.INDEX_MAGIC, fmt.DEFS_MAGIC):
        assert fmt.file_header(magic) == header(magic, 2)
        # no single flipped bit of the header gives another valid header
        for bit in range(128):
            damaged = bytearray(fmt.file_header(magic))
            damaged[bit // 8] ^= 1 << bit % 8
            assert fmt.check_header(bytes(damaged), magic, Path("f")) == 0, bit


# --- version 1 files -------------------------------------------------------------------

def v1_record(payload: bytes) -> bytes:
    return RECORD.pack(0x5245438E, len(payload), zlib.crc32(payload)) + payload


def v1_name(kind: int, name: str) -> bytes:
    return struct.pack("<BH", kind, len(name)) + name.encode()


def write_version_1(path: Path) -> None:
    """A data directory as version 1 wrote it: 16-byte headers with the file number, DEF
    and UNDEF records without sequence numbers, a snapshot without END."""
    (path / "segments").mkdir(parents=True)
    seg = [b"AMQPSEG\x00" + struct.pack("<HHI", 1, 0, 1)]
    for i in range(1, 11):
        q = b"v1q"
        head = struct.pack("<BQIIHHH", 1, i, len(body(i)), len(PROPS), 1, 1, 2)
        seg.append(v1_record(head + struct.pack("<H", len(q)) + q + b"x" + b"rk" + PROPS
                             + body(i)))
    (path / "segments" / "00000001.seg").write_bytes(b"".join(seg))
    index = [b"AMQPIDX\x00" + struct.pack("<HHI", 1, 0, 0),
             v1_record(struct.pack("<BQQ", 7, 8, 9)),  # BASE: watermark 8, next id 9
             v1_record(v1_name(2, "queue/v1q") + b'{"durable":true}'),
             v1_record(v1_name(2, "exchange/old") + b'{"type":"topic"}'),
             v1_record(v1_name(8, "v1q") + struct.pack("<4q", 3, 4, 6, 8)),  # LIVE
             v1_record(v1_name(5, "v1q") + struct.pack("<q", 4)),  # DELIVERED
             v1_record(v1_name(3, "exchange/old")),  # UNDEF, appended
             v1_record(v1_name(4, "v1q") + struct.pack("<q", 9))]  # REMOVE, appended
    (path / "index.log").write_bytes(b"".join(index))


def check_version_1(store: DiskStore, rec: Recovery) -> None:
    assert rec.definitions == {"queue/v1q": {"durable": True}}
    assert [(m.msg_id, m.delivered) for m in rec.queues["v1q"]] == \
        [(3, False), (4, True), (6, False), (8, False), (10, False)]
    assert store.read_body(10) == body(10)
    assert rec.next_msg_id == 11


def test_version_1_files_are_read_and_rewritten_as_version_2(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture
                                                             ) -> None:
    write_version_1(tmp_path)
    with caplog.at_level(logging.WARNING):
        store, rec = reopen(tmp_path)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    check_version_1(store, rec)
    store.publish(11, "x", "rk", PROPS, body(11), ["v1q"])
    store.close()
    assert (tmp_path / "index.log").read_bytes()[:16] == fmt.file_header(fmt.INDEX_MAGIC)
    store, rec = reopen(tmp_path)
    assert ids(rec, "v1q") == [3, 4, 6, 8, 10, 11]
    assert rec.definitions == {"queue/v1q": {"durable": True}}
    store.close()


@pytest.mark.parametrize("name", ["segments/00000001.seg", "index.log"])
@pytest.mark.parametrize("bit", range(16))
def test_flipped_version_bit_in_a_version_1_header(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture,
                                                   name: str, bit: int) -> None:
    write_version_1(tmp_path)
    flip(tmp_path / name, VERSION_FIELD + bit // 8, 1 << bit % 8)
    with caplog.at_level(logging.WARNING):
        store, rec = reopen(tmp_path)
    assert errors_naming(caplog, tmp_path / name)
    if name == "index.log":  # a damaged header: the snapshot may be incomplete, keep all
        assert rec.definitions == {"queue/v1q": {"durable": True}}
        assert {3, 4, 6, 8, 10} <= set(ids(rec, "v1q")) <= set(range(1, 11)) - {9}
    else:
        check_version_1(store, rec)
    store.close()


# --- definitions: two copies -----------------------------------------------------------

def def_record_offsets(path: Path, key: bytes) -> list[tuple[int, int]]:
    """(offset, end) of the definition records (DEF, version 1 or 2) of key."""
    return [(pos, end) for pos, end, payload in records(path)
            if payload[0] in (2, 10) and payload[3:3 + len(key)] == key
            and struct.unpack_from("<H", payload, 1)[0] == len(key)]


@pytest.mark.parametrize("file", ["index.log", "defs.log"])
@pytest.mark.parametrize("key", ["queue/a", "queue/b", "queue/c", "exchange/x"])
def test_a_corrupt_definition_record_is_recovered_from_the_other_copy(
        history: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, file: str,
        key: str) -> None:
    path = damaged_copy(history, tmp_path)
    found = def_record_offsets(path / file, key.encode())
    assert found, key
    pos, end = found[-1]  # the latest: in the snapshot (a, b) or appended after it (c, x)
    flip(path / file, (pos + end) // 2 + 3, 0xFF)
    with caplog.at_level(logging.ERROR):
        store, rec = reopen(path)
    check(store, rec, exact=True)
    assert rec.skipped_records == 1
    assert errors_naming(caplog, path / file)
    store.close()


def test_definitions_are_written_to_both_files(tmp_path: Path) -> None:
    store, _ = reopen(tmp_path)
    store.save_definition("queue/new", QUEUE)
    assert anyio.run(store.commit)
    for file in ("index.log", "defs.log"):
        assert def_record_offsets(tmp_path / file, b"queue/new"), file
    store.close()


def test_a_corrupt_definition_in_the_index_keeps_the_queue_in_the_broker(tmp_path: Path
                                                                         ) -> None:
    broker, store = _broker(tmp_path)
    c = Client(broker)
    c.open_channel(1)
    _declare(c, "orders")
    anyio.run(store.commit)
    for i in range(3):
        c.publish(1, "", "orders", f"order-{i}".encode(), delivery_mode=2)
    store.close()
    damaged = [(pos, end) for pos, end, payload in records(tmp_path / "index.log")
               if payload[0] in (2, 10) and b"orders" in payload]
    assert len(damaged) == 1
    pos, end = damaged[0]
    flip(tmp_path / "index.log", end - 2, 0xFF)

    again, store = _broker(tmp_path)
    q = again.vhosts["/"].queues["orders"]
    assert q.durable and not again.orphans
    assert [again.body_of(m) for m in q.ready] == [b"order-0", b"order-1", b"order-2"]
    store.close()


# --- a truncated or corrupt index.log ---------------------------------------------------

def _declare(c: Client, queue: str) -> None:
    c.send(commands.Queue.Declare(queue=queue, durable=True), 1)


def _broker(path: Path) -> tuple[Broker, DiskStore]:
    store = DiskStore(path)
    broker = make_broker(store, vhosts=("/",))  # type: ignore[arg-type]
    broker.recover()
    return broker, store


def cut_points(path: Path) -> list[int]:
    """Inside the header, every record boundary, and inside every record."""
    points = {0, 1, 8, 10, 12, 15, 16}
    for pos, end, _ in records(path):
        points.update((pos + 5, (pos + end) // 2, end - 1, end))
    return sorted(points)


def test_a_truncated_index_loses_no_queue_and_no_unacked_message(history: Path,
                                                                  tmp_path: Path) -> None:
    index = history / "index.log"
    points = cut_points(index)
    assert len(points) > 50
    for size in points:
        path = tmp_path / f"cut{size}"
        shutil.copytree(history, path)
        truncate(path / "index.log", size)
        store, rec = reopen(path)
        try:
            check(store, rec, exact=size == index.stat().st_size)
        except AssertionError as exc:
            raise AssertionError(f"index.log truncated to {size} bytes: {exc}") from exc
        store.close()
        shutil.rmtree(path)


def test_a_missing_index_loses_no_queue_and_no_unacked_message(history: Path,
                                                               tmp_path: Path) -> None:
    path = damaged_copy(history, tmp_path)
    (path / "index.log").unlink()
    store, rec = reopen(path)
    check(store, rec)
    store.close()


def test_a_truncated_defs_log_costs_nothing(history: Path, tmp_path: Path) -> None:
    for size in [*cut_points(history / "defs.log"), -1]:
        path = tmp_path / f"cut{size}"
        shutil.copytree(history, path)
        if size < 0:
            (path / "defs.log").unlink()
        else:
            truncate(path / "defs.log", size)
        store, rec = reopen(path)
        try:
            check(store, rec, exact=True)
        except AssertionError as exc:
            raise AssertionError(f"defs.log truncated to {size} bytes: {exc}") from exc
        store.close()
        shutil.rmtree(path)


@pytest.mark.parametrize("file", ["index.log", "defs.log"])
def test_each_corrupt_record_costs_at_most_that_record(history: Path, tmp_path: Path,
                                                       file: str) -> None:
    recs = records(history / file)
    assert len(recs) > 8
    for n, (pos, _, payload) in enumerate(recs):
        path = tmp_path / f"rec{n}"
        shutil.copytree(history, path)
        flip(path / file, pos + 12 + len(payload) // 2, 0x10)
        store, rec = reopen(path)
        try:
            # a lost REMOVE (acks) or LIVE list (or BASE/END) may bring acked messages
            # back, a lost DELIVERED record loses delivered flags; nothing else is lost or
            # comes back
            check(store, rec, exact=file == "defs.log" or payload[0] not in (4, 7, 8, 9),
                  flags=payload[0] != 5)
            assert rec.skipped_records == 1
        except AssertionError as exc:
            raise AssertionError(f"{file} record {n} (kind {payload[0]}) at {pos}: {exc}") \
                from exc
        store.close()
        shutil.rmtree(path)


@pytest.mark.parametrize("size", [0, 10, 16, 40, -1])
def test_broker_after_index_truncation_keeps_queues_and_deleted_ones_stay_deleted(
        tmp_path: Path, size: int) -> None:
    broker, store = _broker(tmp_path)
    c = Client(broker)
    c.open_channel(1)
    for q in ("keep", "gone"):
        _declare(c, q)
    anyio.run(store.commit)
    for i in range(3):
        c.publish(1, "", "keep", b"keep-%d" % i, delivery_mode=2)
        c.publish(1, "", "gone", b"gone-%d" % i, delivery_mode=2)
    anyio.run(store.commit)
    c.send(commands.Queue.Delete(queue="gone"), 1)
    store.close()
    _broker(tmp_path)[1].close()  # a restart: the deletion is compacted into snapshots
    if size < 0:  # just before the snapshot's END: LIVE lists may be missing
        size = max(pos for pos, _, payload in records(tmp_path / "index.log") if payload[0] == 9)
    truncate(tmp_path / "index.log", size)

    again, store = _broker(tmp_path)
    queues = again.vhosts["/"].queues
    assert [again.body_of(m) for m in queues["keep"].ready] == [b"keep-0", b"keep-1", b"keep-2"]
    assert "gone" not in queues and not again.orphans
    c = Client(again)
    c.open_channel(1)
    _declare(c, "gone")  # declared anew: empty
    assert not queues["gone"].ready
    store.close()


# --- queue deletions are not kept forever -----------------------------------------------

def test_a_deletion_is_forgotten_once_no_segment_holds_the_queue(tmp_path: Path) -> None:
    store, _ = reopen(tmp_path)
    store.save_definition("queue/gone", QUEUE)
    for i in range(1, 6):
        store.publish(i, "", "", PROPS, body(i), ["gone", "other"])
    store.delete_queue("gone")
    store.save_definition("queue/gone", None)
    store.close()
    store, _ = reopen(tmp_path)
    assert b"gone" in (tmp_path / "defs.log").read_bytes()  # segment 1 still holds its refs
    store.remove("other", range(1, 6))
    assert anyio.run(store.commit)
    assert list((tmp_path / "segments").iterdir()) == []
    store.close()
    store, rec = reopen(tmp_path)
    assert rec.queues == {} and rec.definitions == {}
    for file in ("index.log", "defs.log"):
        assert b"gone" not in (tmp_path / file).read_bytes(), file
    store.close()


def test_a_later_deletion_wins_over_the_other_files_earlier_definition(tmp_path: Path
                                                                       ) -> None:
    store, _ = reopen(tmp_path)
    store.save_definition("queue/q", QUEUE)
    store.close()
    store, _ = reopen(tmp_path)  # both snapshots list queue/q
    store.save_definition("queue/q", None)
    store.save_definition("queue/r", {"v": 1})
    store.close()
    end_of_snapshot = [end for _, end, payload in records(tmp_path / "index.log")
                       if payload[0] == 9]
    assert len(end_of_snapshot) == 1
    truncate(tmp_path / "index.log", end_of_snapshot[0])  # the deletion's record is lost
    store, rec = reopen(tmp_path)
    assert rec.definitions == {"queue/r": {"v": 1}}
    store.close()


def test_a_complete_snapshot_says_which_definitions_were_deleted(tmp_path: Path) -> None:
    """index.log compacted after a deletion does not list the key; an older defs.log whose
    record of the deletion is lost still has the definition: it stays deleted."""
    store, _ = reopen(tmp_path)
    store.save_definition("queue/q", QUEUE)
    store.save_definition("queue/r", {"v": 1})
    store.save_definition("queue/q", None)
    store.close()
    old_defs = (tmp_path / "defs.log").read_bytes()
    undef = [pos for pos, _, payload in records(tmp_path / "defs.log") if payload[0] == 11]
    assert len(undef) == 1
    store, _ = reopen(tmp_path)
    store.close()
    (tmp_path / "defs.log").write_bytes(old_defs[:undef[0]])
    store, rec = reopen(tmp_path)
    assert rec.definitions == {"queue/r": {"v": 1}}
    store.close()
