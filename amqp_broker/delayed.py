"""Delayed messages: the scheduler behind x-delayed-message exchanges.

A delayed-message exchange (exchanges/delayed.py) answers a publish whose x-delay asks
for a delay with Delayed; the publish pipeline hands such a message to hold() here.
At its due time the message is routed from the exchange as its x-delayed-type would
route it and goes through the publish pipeline again (overflow, TTL, persistence), with
x-delay set to minus the delay, as the rabbitmq-delayed-message-exchange plugin does.
If nothing is bound then, the message is dropped, as there (nobody is there to return
it to).

Design. A message is due at a wall-clock time in ms (so it keeps its due time across a
restart; one due during downtime is routed as soon as the broker is up). Time is cut
into buckets of BUCKET_MS. Messages due in a far bucket are only appended to that
bucket's file; RAM holds a few numbers per bucket (its files, a record count) and a
count per exchange. Once a bucket comes within LOOKAHEAD_MS, its files are read into
one heap of (due, seq, message), and messages for buckets already that near go to the
heap at once (and to the file too when persistent). One timer task routes what is due
and sleeps until the next due time or the next bucket to load, woken early only by a
message due sooner: no task or timer per message. Once a bucket's messages have all
been routed and the store has synced what that produced, its files are unlinked.

Files, under <data dir>/delayed/ (nothing is written without a data directory):
  meta.json   {"generation": N, "exchanges": {"<uid>": [vhost, name]}}: the run counter
              and the durable delayed exchanges holding messages. An exchange's uid
              is (generation << 32 | n), so no uid of a past run is ever given again;
              records of an exchange not found again at start-up are dropped.
  <bucket>-<generation>-<serial>.dly   the messages due in one bucket that one run
              wrote (a run never appends to a past run's file):
      MAGIC (8 bytes), then records framed as the message store's (storage/records.py:
      u32 record magic, u32 payload length, u32 CRC-32 of the payload; little-endian
      like every integer here), payload = u64 due ms, u64 exchange uid, u8 flags
      (1: persistent), u8 length + exchange name published to, u8 length + routing key,
      u32 length + raw properties (x-delay already rewritten), body (the rest).
A message is persistent when delivery-mode is 2 and the exchange durable; transient
ones are written only when their bucket is not in RAM yet (so RAM stays bounded) and
are skipped when a later run reads the file. A torn or corrupt record ends its file's
reading (logged). Files are written with one write per message (no user-space buffer)
and fsync'd at most SYNC_INTERVAL later; publisher confirms do not wait for that (as
the plugin's, they are sent at publish time). A crash between routing a bucket and
unlinking it routes that bucket's messages again after the restart (at least once).
"""

from __future__ import annotations

import heapq
import json
import math
import os
import struct
import time
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from . import pipeline
from .exchanges.delayed import TYPE_NAME, Delayed, DelayedExchange
from .protocol import fast
from .protocol.fieldtable import LongInt, LongLongInt
from .storage.records import FRAME, FRAME_SIZE, RECORD_MAGIC, U32

if TYPE_CHECKING:
    from .broker import Broker
    from .queue import Queue
    from .vhost import Exchange, VHost

BUCKET_MS = 2000
LOOKAHEAD_MS = 2000
FIRE_BATCH = 2000  # messages routed per turn before other tasks run
SYNC_INTERVAL = 0.5  # seconds between fsyncs of written files
MAX_OPEN = 32  # bucket files kept open for appending
MAGIC = b"AMQDLY\x00\x02"  # 2: the store's record frame (1 had its own)
PERSISTENT = 1
_FIXED = struct.Struct("<QQB")
_META = "meta.json"
_OVERHEAD = 200  # RAM per held message besides properties and body (estimate)

# heap item: (due ms, seq, exchange uid, exchange name, routing key, props, body, bucket)
Item = tuple[int, int, int, str, str, bytes, bytes, int]


def now_ms() -> int:
    return int(time.time() * 1000)


class _Bucket:
    __slots__ = ("current", "files", "loaded", "number", "remaining")

    def __init__(self, number: int, loaded: bool) -> None:
        self.number = number
        self.loaded = loaded  # its messages are in the heap
        self.files: list[Path] = []  # every file holding its messages
        self.current: Path | None = None  # the file this run appends to
        self.remaining = 0  # loaded: messages in the heap; else records on disk


class Scheduler:
    """The held messages of every delayed-message exchange of one broker."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.dir: Path | None = None  # None: everything in RAM (no data directory)
        self.generation = 0
        self.live: dict[int, Exchange] = {}  # uid -> exchange
        self.durable: dict[int, tuple[str, str]] = {}  # uid -> (vhost, name), in meta.json
        self.counts: dict[int, int] = {}  # uid -> messages held (messages_delayed)
        self.ram_bytes = 0  # properties and bodies in the heap
        self._uids = 0
        self._serial = 0
        self._seq = 0
        self._heap: list[Item] = []
        self._buckets: dict[int, _Bucket] = {}
        self._unloaded: list[int] = []  # heap of the numbers of buckets not loaded
        self._horizon = -1  # buckets up to this one are loaded
        self._files: OrderedDict[Path, Any] = OrderedDict()  # open for appending
        self._dirty: set[Path] = set()  # written since the last fsync
        self._dir_dirty = False
        self._unlinks: list[tuple[int, list[Path]]] = []  # (store token, files)
        self._token = 0  # the store token of the latest message routed
        self._wake: anyio.Event | None = None
        self._wake_at = math.inf

    # --- the exchange side ------------------------------------------------------
    def hold(self, vhost: VHost, routed: Delayed, exchange: str, routing_key: str,
             props: bytes, body: bytes) -> tuple[Queue, ...]:
        """Hold a published message for each delayed exchange that delays it; returns
        the queues it goes to at once (an alternate exchange's, say)."""
        due_from = math.ceil(time.time() * 1000)  # never early, even by a fraction
        swapped: bytes | None = None
        for table, ms in routed.holds:
            ex = self._exchange_of(vhost, table, exchange)
            if ex is None:
                continue
            if swapped is None:
                swapped = swap_delay_header(props, ms)
            persistent = ex.durable and fast.delivery_mode(props) == 2
            self._add(due_from + ms, table.uid, exchange, routing_key, swapped, body,
                      persistent)
        return tuple(routed)  # type: ignore[arg-type]

    def count_of(self, ex: Exchange) -> int:
        """Messages ex holds (the management API's messages_delayed)."""
        uid = getattr(ex.table, "uid", 0)
        return self.counts.get(uid, 0) if uid else 0

    def forget(self, ex: Exchange) -> None:
        """ex is deleted: its held messages are dropped (those in RAM as they come
        due, those on disk when their bucket is read)."""
        uid = getattr(ex.table, "uid", 0)
        if not uid:
            return
        self.live.pop(uid, None)
        self.counts.pop(uid, None)
        if self.durable.pop(uid, None) is not None:
            self._save_meta()

    def _exchange_of(self, vhost: VHost, table: DelayedExchange, name: str) -> Exchange | None:
        if table.uid:
            return self.live.get(table.uid)
        ex = vhost.exchanges.get(name)
        if ex is None or ex.table is not table:  # reached through another exchange
            ex = next((e for e in vhost.exchanges.values() if e.table is table), None)
            if ex is None:
                return None
        self._uids += 1
        table.uid = uid = (self.generation << 32) | self._uids
        self.live[uid] = ex
        if ex.durable and self.dir is not None:
            self.durable[uid] = (vhost.name, ex.name)
            self._save_meta()
        return ex

    # --- holding ---------------------------------------------------------------
    def _add(self, due: int, uid: int, exchange: str, routing_key: str, props: bytes,
             body: bytes, persistent: bool) -> None:
        number = due // BUCKET_MS
        bucket = self._buckets.get(number)
        if bucket is None:
            bucket = _Bucket(number, number <= self._horizon or self.dir is None)
            self._buckets[number] = bucket
            if not bucket.loaded:
                heapq.heappush(self._unloaded, number)
        self.counts[uid] = self.counts.get(uid, 0) + 1
        written = False
        if self.dir is not None and (persistent or not bucket.loaded):
            written = self._append(bucket, due, uid, persistent, exchange, routing_key,
                                   props, body)
        if bucket.loaded or not written:
            self._push(bucket, (due, 0, uid, exchange, routing_key, props, body, number))
            if due < self._wake_at and self._wake is not None:
                self._wake.set()
        else:
            bucket.remaining += 1

    def _push(self, bucket: _Bucket, item: Item) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (item[0], self._seq, *item[2:]))
        bucket.remaining += 1
        self.ram_bytes += len(item[5]) + len(item[6]) + _OVERHEAD

    def _append(self, bucket: _Bucket, due: int, uid: int, persistent: bool, exchange: str,
                routing_key: str, props: bytes, body: bytes) -> bool:
        """Write one record to the bucket's file of this run; False (logged) when the
        disk refuses it (the message is then held in RAM only)."""
        assert self.dir is not None
        ex_raw = exchange.encode("utf-8", "surrogateescape")
        rk_raw = routing_key.encode("utf-8", "surrogateescape")
        prefix = b"".join((_FIXED.pack(due, uid, PERSISTENT if persistent else 0),
                           bytes((len(ex_raw),)), ex_raw, bytes((len(rk_raw),)), rk_raw,
                           U32.pack(len(props)), props))
        crc = zlib.crc32(body, zlib.crc32(prefix))
        head = FRAME.pack(RECORD_MAGIC, len(prefix) + len(body), crc)
        try:
            path = bucket.current
            if path is None:
                self._serial += 1
                path = self.dir / f"{bucket.number:012d}-{self.generation}-{self._serial}.dly"
                f = open(path, "xb", buffering=0)  # noqa: SIM115 (kept open, LRU)
                f.write(MAGIC)
                bucket.current = path
                bucket.files.append(path)
                self._dir_dirty = True
            else:
                found = self._files.get(path)
                f = found if found is not None else open(path, "ab", buffering=0)  # noqa: SIM115
            self._files[path] = f
            self._files.move_to_end(path)
            if len(self._files) > MAX_OPEN:
                self._files.popitem(last=False)[1].close()
            data = [head, prefix, body]
            if os.writev(f.fileno(), data) != len(head) + len(prefix) + len(body):
                raise OSError("short write")
        except OSError as exc:
            self.broker.log.error("delayed message kept in memory only: cannot write it",
                                  path=str(self.dir), error=str(exc))
            return False
        self._dirty.add(path)
        return True

    # --- the timer ---------------------------------------------------------------
    def tick(self, now: int | None = None) -> float:
        """Load the buckets that come near and route the messages due by now (ms);
        returns the seconds until the next call is needed (0: more is due now)."""
        if now is None:
            now = now_ms()
        horizon = (now + LOOKAHEAD_MS) // BUCKET_MS
        while self._unloaded and self._unloaded[0] <= horizon:
            number = heapq.heappop(self._unloaded)
            bucket = self._buckets.get(number)
            if bucket is not None and not bucket.loaded:
                self.broker.contained("loading delayed messages", self._load, bucket)
        self._horizon = max(self._horizon, horizon)
        heap = self._heap
        budget = FIRE_BATCH
        while heap and heap[0][0] <= now:
            if not budget:
                return 0.0
            budget -= 1
            item = heapq.heappop(heap)
            self.ram_bytes -= len(item[5]) + len(item[6]) + _OVERHEAD
            self.broker.contained("delayed message", self._route, item)
            self._settle(item)
        if self._unlinks:
            self._unlink_synced()
        at = (horizon + 1) * BUCKET_MS - LOOKAHEAD_MS
        if heap:
            at = min(at, heap[0][0])
        self._wake_at = at
        return max(0.0, (at - now) / 1000)

    def _settle(self, item: Item) -> None:
        uid = item[2]
        count = self.counts.get(uid)
        if count is not None:
            if count > 1:
                self.counts[uid] = count - 1
            else:
                del self.counts[uid]
        bucket = self._buckets.get(item[7])
        if bucket is not None:
            bucket.remaining -= 1
            if bucket.remaining <= 0:
                self._retire(bucket)

    def _route(self, item: Item) -> None:
        """Route a due message from its exchange and publish it (dropped when the
        exchange is gone or nothing is bound, as the plugin)."""
        _, _, uid, exchange, routing_key, props, body, _ = item
        ex = self.live.get(uid)
        if ex is None or ex.deleted:
            return
        vhost = ex.vhost
        queues = vhost.route(ex, routing_key, lambda: fast.message_headers(props))
        if queues.__class__ is Delayed:  # another delayed exchange behind this one
            queues = self.hold(vhost, queues, exchange, routing_key, props, body)
        if not queues:
            return
        token, _, _ = pipeline.publish(vhost, exchange, fast.shortstr(exchange), routing_key,
                                       fast.shortstr(routing_key), props, body, queues,
                                       _expires_of(props))
        if token > self._token:
            self._token = token

    def _retire(self, bucket: _Bucket) -> None:
        """All of bucket's messages were routed: unlink its files once the store has
        synced what routing them wrote."""
        del self._buckets[bucket.number]
        for path in bucket.files:
            f = self._files.pop(path, None)
            if f is not None:
                f.close()
            self._dirty.discard(path)
        if bucket.files:
            self._unlinks.append((self._token, bucket.files))
            self._unlink_synced()

    def _unlink_synced(self) -> None:
        synced = self.broker.store.synced_token
        keep = []
        for token, paths in self._unlinks:
            if token > synced:
                keep.append((token, paths))
                continue
            for path in paths:
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    self.broker.log.warning("cannot remove a delayed-message file",
                                            path=str(path), error=str(exc))
        self._unlinks = keep

    async def run(self) -> None:
        """The timer: one task for every held message, plus one that fsyncs files."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._sync_loop)
            while True:
                self._wake = anyio.Event()
                try:
                    delay = self.tick()
                except Exception:  # a bug must not take the broker down: logged, retried
                    self.broker.log.exception("delayed-message timer failed")
                    delay = 1.0
                if delay <= 0:
                    await anyio.sleep(0)
                    continue
                with anyio.move_on_after(delay):
                    await self._wake.wait()

    async def _sync_loop(self) -> None:
        while True:
            await anyio.sleep(SYNC_INTERVAL)
            if self._dirty or self._dir_dirty or self._unlinks:
                paths, self._dirty = list(self._dirty), set()
                sync_dir, self._dir_dirty = self._dir_dirty, False
                await anyio.to_thread.run_sync(self._fsync, paths, sync_dir)
                if self._unlinks:
                    self._unlink_synced()

    def _fsync(self, paths: list[Path], sync_dir: bool) -> None:
        """Runs in a worker thread: fsync each file (through a descriptor of its own;
        the appending one may be closed meanwhile) and the directory."""
        targets: list[Path] = [*paths]
        if sync_dir and self.dir is not None:
            targets.append(self.dir)
        for path in targets:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue  # routed and unlinked meanwhile
            except OSError as exc:
                self.broker.log.error("cannot sync a delayed-message file", path=str(path),
                                      error=str(exc))
                continue
            try:
                os.fsync(fd)
            except OSError as exc:
                self.broker.log.error("cannot sync a delayed-message file", path=str(path),
                                      error=str(exc))
            finally:
                os.close(fd)

    def close(self) -> None:
        """Shutting down: close and sync the files."""
        for f in self._files.values():
            f.close()
        self._files.clear()
        paths, self._dirty = list(self._dirty), set()
        self._fsync(paths, self._dir_dirty)
        self._dir_dirty = False

    # --- disk --------------------------------------------------------------------
    def open(self, root: Path | None) -> int:
        """Start-up, after durable exchanges were recovered: with a data directory,
        find the held messages of past runs (reading only record headers); returns
        how many are held."""
        if root is None:
            return 0
        folder = root / "delayed"
        folder.mkdir(parents=True, exist_ok=True)
        meta = self._read_meta(folder / _META)
        self.generation = int(meta.get("generation", 0)) + 1
        self.dir = folder
        for uid_text, where in dict(meta.get("exchanges", {})).items():
            try:
                uid, (vhost_name, name) = int(uid_text), where
            except (TypeError, ValueError):
                continue
            vhost = self.broker.vhosts.get(vhost_name)
            ex = vhost.exchanges.get(name) if vhost is not None else None
            if (ex is not None and ex.type_name == TYPE_NAME and ex.durable
                    and isinstance(ex.table, DelayedExchange)):
                ex.table.uid = uid
                self.live[uid] = ex
                self.durable[uid] = (vhost_name, name)
        self._save_meta()
        held = 0
        for path in sorted(folder.glob("*.dly")):
            try:
                number, generation, _ = (int(part) for part in path.stem.split("-"))
            except ValueError:
                self.broker.log.warning("unexpected file in the delayed-message folder "
                                        "ignored", path=str(path))
                continue
            valid = self._scan(path) if generation < self.generation else 0
            if not valid:
                path.unlink(missing_ok=True)
                continue
            bucket = self._buckets.get(number)
            if bucket is None:
                bucket = self._buckets[number] = _Bucket(number, False)
                heapq.heappush(self._unloaded, number)
            bucket.files.append(path)
            bucket.remaining += valid
            held += valid
        if held:
            self.broker.log.info("delayed messages recovered", messages=held,
                                 buckets=len(self._buckets))
        return held

    def _scan(self, path: Path) -> int:
        """Count the persistent records of live exchanges in a past run's file (their
        headers only) into counts; returns how many."""
        valid = 0
        try:
            size = path.stat().st_size
            with open(path, "rb") as f:
                if f.read(len(MAGIC)) != MAGIC:
                    self.broker.log.warning("delayed-message file with a bad header "
                                            "skipped", path=str(path))
                    return 0
                pos = len(MAGIC)
                while pos + FRAME_SIZE + _FIXED.size <= size:
                    f.seek(pos)
                    raw = f.read(FRAME_SIZE + _FIXED.size)
                    magic, length, _crc = FRAME.unpack_from(raw)
                    _, uid, flags = _FIXED.unpack_from(raw, FRAME_SIZE)
                    if magic != RECORD_MAGIC or pos + FRAME_SIZE + length > size:
                        break  # a torn or corrupt record (_records logs it)
                    if flags & PERSISTENT and uid in self.live:
                        valid += 1
                        self.counts[uid] = self.counts.get(uid, 0) + 1
                    pos += FRAME_SIZE + length
        except OSError as exc:
            self.broker.log.error("cannot read a delayed-message file", path=str(path),
                                  error=str(exc))
        return valid

    def _load(self, bucket: _Bucket) -> None:
        """Read a bucket's files into the heap."""
        bucket.loaded = True
        expected, bucket.remaining = bucket.remaining, 0
        for path in bucket.files:
            past_run = int(path.stem.split("-")[1]) < self.generation
            try:
                data = path.read_bytes()
            except OSError as exc:
                self.broker.log.error("delayed messages lost: cannot read their file",
                                      path=str(path), error=str(exc))
                continue
            for item, persistent in self._records(data, path):
                if item[2] in self.live and (persistent or not past_run):
                    self._push(bucket, item)
        if bucket.remaining < expected:  # counted but not loaded (corrupt, or dropped)
            self.broker.log.debug("delayed messages dropped on load", bucket=bucket.number,
                                  dropped=expected - bucket.remaining)
        if bucket.remaining <= 0:
            self._retire(bucket)

    def _records(self, data: bytes, path: Path) -> list[tuple[Item, bool]]:
        """The records of one file; a corrupt one ends it (logged)."""
        if data[:len(MAGIC)] != MAGIC:
            self.broker.log.warning("delayed-message file with a bad header skipped",
                                    path=str(path))
            return []
        found: list[tuple[Item, bool]] = []
        pos, end = len(MAGIC), len(data)
        while pos + FRAME_SIZE <= end:
            magic, length, crc = FRAME.unpack_from(data, pos)
            start, stop = pos + FRAME_SIZE, pos + FRAME_SIZE + length
            if stop > end and magic == RECORD_MAGIC:
                break  # a torn last record: never acknowledged as written
            payload = data[start:stop]
            try:
                if magic != RECORD_MAGIC:
                    raise ValueError("record magic missing")
                if zlib.crc32(payload) != crc:
                    raise ValueError("checksum mismatch")
                due, uid, flags = _FIXED.unpack_from(payload)
                p = _FIXED.size
                exchange = payload[p + 1:p + 1 + payload[p]].decode("utf-8", "surrogateescape")
                p += 1 + payload[p]
                routing_key = payload[p + 1:p + 1 + payload[p]].decode("utf-8",
                                                                        "surrogateescape")
                p += 1 + payload[p]
                (props_len,) = U32.unpack_from(payload, p)
                p += 4
                props = payload[p:p + props_len]
                if len(props) != props_len:
                    raise ValueError("properties run past the record")
                body = payload[p + props_len:]
            except (ValueError, IndexError, struct.error) as exc:
                self.broker.log.error("corrupt delayed-message record: the rest of its file "
                                      "is skipped", path=str(path), offset=pos, error=str(exc))
                break
            found.append(((due, 0, uid, exchange, routing_key, props, body, due // BUCKET_MS),
                          bool(flags & PERSISTENT)))
            pos = stop
        return found

    def _read_meta(self, path: Path) -> dict[str, Any]:
        try:
            with open(path, encoding="utf-8") as f:
                meta = json.load(f)
            if isinstance(meta, dict):
                return meta
            raise ValueError("not an object")
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            self.broker.log.error("delayed-message state unreadable: held messages of "
                                  "durable exchanges are dropped", path=str(path),
                                  error=str(exc))
            return {}

    def _save_meta(self) -> None:
        if self.dir is None:
            return
        meta = {"generation": self.generation,
                "exchanges": {str(uid): list(where) for uid, where in self.durable.items()}}
        tmp = self.dir / (_META + ".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(meta, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.dir / _META)
        except OSError as exc:
            self.broker.log.error("cannot write the delayed-message state", path=str(tmp),
                                  error=str(exc))


def swap_delay_header(props: bytes, ms: int) -> bytes:
    """props with x-delay set to -ms, what the plugin delivers (a signed 32-bit integer;
    64-bit when it does not fit), so that the message is not delayed again."""
    decoded = fast.decode_properties(props)
    headers = dict(decoded.headers or {})
    headers["x-delay"] = LongInt(-ms) if ms <= 2**31 else LongLongInt(-ms)
    decoded.headers = headers
    return fast.encode_properties(decoded)


def _expires_of(props: bytes) -> float | None:
    """The per-message TTL of the expiration property, in seconds (counted from now,
    when the message is routed); None without one."""
    if not fast.flags_of(props) & fast.FLAG_EXPIRATION:
        return None
    try:
        return int(str(fast.decode_properties(props).expiration)) / 1000
    except (TypeError, ValueError):
        return None
