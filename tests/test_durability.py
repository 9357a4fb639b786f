"""Durable storage, end to end: a real broker subprocess on a data dir, pika clients.

What the "Durable storage" issue asks for:
1. durable exchanges, queues and bindings (also exchange-to-exchange) survive a
   restart, transient ones do not; deleting a durable queue deletes its data;
2. persistent messages in durable queues survive SIGTERM and SIGKILL once
   confirmed, transient ones do not; order is kept; redelivered flags are right;
   a message routed to several durable queues is stored once;
3. many kill -9 cycles in the middle of confirmed publishing lose nothing confirmed;
4. a torn tail and a corrupt record in the middle of a segment are survived;
5. the data dir shrinks once everything is consumed;
6. a full disk nacks publishes instead of crashing the broker.

Brokers come from conftest's `broker_factory` (stopped by PID when the test
ends). A crash is os.kill(pid, SIGKILL) on the broker's own PID.

The kill -9 tests draw their timings and message sizes from one random seed, printed at the
start of the test and named in their assertion messages (pytest shows both on failure);
AMQP_TEST_SEED=<seed> replays it, e.g.
    AMQP_TEST_SEED=123456 python -m pytest -q tests/test_durability.py -k kill9
"""

from __future__ import annotations

import os
import random
import re
import signal
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pika
import pytest
from pika.exceptions import AMQPError, ChannelClosedByBroker, ConnectionBlockedTimeout, NackError

from helpers import BrokerProcess, pika_connect

PERSISTENT = pika.BasicProperties(delivery_mode=2)
TRANSIENT = pika.BasicProperties(delivery_mode=1)

# segment format (storage/disk.py): 16-byte file header, then framed records
FILE_HEADER = 16
FRAME = struct.Struct("<III")  # record magic, payload length, crc32(payload)
RECORD_MAGIC = 0x5245438E
MSG_HEAD = struct.Struct("<BQIIHHH")  # kind, msg_id, body_len, props_len, n_queues, ex, rk

Factory = Callable[..., BrokerProcess]
SEED_ENV = "AMQP_TEST_SEED"


# --- helpers ---------------------------------------------------------------------

def replay_seed() -> int:
    """The random seed of a kill -9 test: $AMQP_TEST_SEED, else a fresh one. Printed, so that
    pytest shows it with a failure; use it in assertion messages too (see seed_note)."""
    env = os.environ.get(SEED_ENV, "").strip()
    seed = int(env) if env else random.SystemRandom().randrange(1 << 32)
    print(f"random seed {seed} (replay: {SEED_ENV}={seed})")
    return seed


def seed_note(seed: int) -> str:
    return f" [replay: {SEED_ENV}={seed}]"


def kill9(proc: BrokerProcess) -> None:
    """SIGKILL the broker by its PID and reap it."""
    assert proc.proc is not None
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.proc.wait(10)


def restart(proc: BrokerProcess, how: str) -> None:
    """Stop the broker (SIGTERM or SIGKILL) and start it again on the same data dir."""
    if how == "kill":
        kill9(proc)
    proc.restart()


def dir_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def wait_for(cond: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def confirmed_channel(port: int) -> tuple[pika.BlockingConnection, Any]:
    conn = pika_connect(port, heartbeat=0)
    ch = conn.channel()
    ch.confirm_delivery()
    return conn, ch


def publish_confirmed(ch: Any, exchange: str, routing_key: str, bodies: list[bytes],
                      props: pika.BasicProperties = PERSISTENT) -> None:
    for body in bodies:
        ch.basic_publish(exchange, routing_key, body, props, mandatory=True)


def queue_count(port: int, queue: str) -> int | None:
    """Messages ready in queue, or None when it does not exist (passive declare)."""
    conn = pika_connect(port)
    try:
        ch = conn.channel()
        try:
            return int(ch.queue_declare(queue, passive=True).method.message_count)
        except ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return None
            raise
    finally:
        if conn.is_open:
            conn.close()


def exchange_exists(port: int, exchange: str) -> bool:
    conn = pika_connect(port)
    try:
        ch = conn.channel()
        try:
            ch.exchange_declare(exchange, passive=True)
            return True
        except ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return False
            raise
    finally:
        if conn.is_open:
            conn.close()


def drain(port: int, queue: str, timeout: float = 10.0,
          ack: bool = True) -> list[tuple[bool, bytes]]:
    """Consume every message ready in queue: [(redelivered, body)], acked at the end."""
    conn = pika_connect(port, heartbeat=0)
    try:
        ch = conn.channel()
        n = int(ch.queue_declare(queue, passive=True).method.message_count)
        got: list[tuple[bool, bytes]] = []
        if n:
            if ack:  # without acks a prefetch limit would stall the consumer
                ch.basic_qos(prefetch_count=500)
            last = 0
            deadline = time.monotonic() + timeout
            for method, _props, body in ch.consume(queue, inactivity_timeout=min(5.0, timeout)):
                if method is None:
                    break
                got.append((bool(method.redelivered), body))
                last = method.delivery_tag
                if len(got) % 250 == 0 and ack:
                    ch.basic_ack(last, multiple=True)
                if len(got) >= n or time.monotonic() > deadline:
                    break
            if ack and last and len(got) % 250:
                ch.basic_ack(last, multiple=True)
            ch.cancel()
        return got
    finally:
        if conn.is_open:
            conn.close()


def sync_barrier(port: int, queue: str) -> None:
    """A confirmed persistent publish to a scratch queue, then purge it.

    Group commits are written in order, so once this confirm arrives every
    ack sent before it (on any connection the broker has already read) is on disk."""
    conn, ch = confirmed_channel(port)
    try:
        ch.queue_declare(queue, durable=True)
        ch.basic_publish("", queue, b"barrier", PERSISTENT, mandatory=True)
        ch.queue_purge(queue)
    finally:
        conn.close()


def segments(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "segments").glob("*.seg"), key=lambda p: int(p.stem))


def message_records(path: Path) -> list[tuple[int, int, int, int]]:
    """(record offset, record length, msg_id, body offset) of each MESSAGE record."""
    data = path.read_bytes()
    out = []
    pos = FILE_HEADER
    while pos + FRAME.size <= len(data):
        magic, length, crc = FRAME.unpack_from(data, pos)
        end = pos + FRAME.size + length
        assert magic == RECORD_MAGIC and end <= len(data), f"bad record at {pos} in {path}"
        assert zlib.crc32(data[pos + FRAME.size:end]) == crc
        kind, msg_id, body_len = MSG_HEAD.unpack_from(data, pos + FRAME.size)[:3]
        assert kind == 1
        out.append((pos, end - pos, msg_id, end - body_len))
        pos = end
    return out


def bodies(msgs: list[tuple[bool, bytes]]) -> list[bytes]:
    return [b for _, b in msgs]


# --- 1. definitions --------------------------------------------------------------

def test_durable_definitions_survive_restart_transient_ones_do_not(
        broker_factory: Factory, uid: str) -> None:
    b = broker_factory()
    dx, dx2, dtopic, dhead = f"dx-{uid}", f"dx2-{uid}", f"dtopic-{uid}", f"dhead-{uid}"
    tx, dq, dq2, tq = f"tx-{uid}", f"dq-{uid}", f"dq2-{uid}", f"tq-{uid}"
    conn = pika_connect(b.port)
    ch = conn.channel()
    ch.exchange_declare(dx, "direct", durable=True)
    ch.exchange_declare(dx2, "fanout", durable=True)
    ch.exchange_declare(dtopic, "topic", durable=True)
    ch.exchange_declare(dhead, "headers", durable=True)
    ch.exchange_declare(tx, "direct", durable=False)
    ch.queue_declare(dq, durable=True, arguments={"x-max-length": 1000})
    ch.queue_declare(dq2, durable=True)
    ch.queue_declare(tq, durable=False)
    ch.queue_bind(dq, dx, "k1")                   # durable queue binding
    ch.exchange_bind(dx2, dx, "k2")               # durable exchange-to-exchange binding
    ch.queue_bind(dq2, dx2, "")
    ch.queue_bind(dq, dtopic, "a.*.c")
    ch.queue_bind(dq2, dhead, "", arguments={"x-match": "all", "h": "v"})
    ch.queue_bind(tq, dx, "k1")                   # binding to a transient queue
    ch.queue_bind(dq, tx, "kt")                   # binding from a transient exchange
    conn.close()

    b.restart()

    assert all(exchange_exists(b.port, x) for x in (dx, dx2, dtopic, dhead))
    assert not exchange_exists(b.port, tx)
    assert queue_count(b.port, dq) == 0 and queue_count(b.port, dq2) == 0
    assert queue_count(b.port, tq) is None
    # bindings work after the restart: each route reaches exactly its queue
    conn, ch = confirmed_channel(b.port)
    ch.basic_publish(dx, "k1", b"direct", PERSISTENT, mandatory=True)
    ch.basic_publish(dx, "k2", b"e2e", PERSISTENT, mandatory=True)
    ch.basic_publish(dtopic, "a.b.c", b"topic", PERSISTENT, mandatory=True)
    ch.basic_publish(dhead, "", b"headers", pika.BasicProperties(delivery_mode=2,
                                                                 headers={"h": "v"}),
                     mandatory=True)
    conn.close()
    assert bodies(drain(b.port, dq)) == [b"direct", b"topic"]
    assert bodies(drain(b.port, dq2)) == [b"e2e", b"headers"]
    # the queue's arguments came back: redeclaring with different ones is refused
    conn = pika_connect(b.port)
    with pytest.raises(ChannelClosedByBroker) as err:
        conn.channel().queue_declare(dq, durable=True)
    assert err.value.reply_code == 406
    conn.close()
    # the transient queue's binding is gone with it; recreated, it is not bound
    conn, ch = confirmed_channel(b.port)
    ch.queue_declare(tq)
    ch.basic_publish(dx, "k1", b"again", PERSISTENT, mandatory=True)
    conn.close()
    assert queue_count(b.port, tq) == 0
    assert bodies(drain(b.port, dq)) == [b"again"]


def test_deleted_durable_exchange_and_binding_stay_deleted(broker_factory: Factory,
                                                           uid: str) -> None:
    b = broker_factory()
    x, q = f"dx-{uid}", f"dq-{uid}"
    conn = pika_connect(b.port)
    ch = conn.channel()
    ch.exchange_declare(x, "direct", durable=True)
    ch.exchange_declare(f"gone-{uid}", "direct", durable=True)
    ch.queue_declare(q, durable=True)
    ch.queue_bind(q, x, "keep")
    ch.queue_bind(q, x, "unbound")
    ch.queue_unbind(q, x, "unbound")
    ch.exchange_delete(f"gone-{uid}")
    conn.close()
    b.restart()
    assert not exchange_exists(b.port, f"gone-{uid}")
    conn, ch = confirmed_channel(b.port)
    ch.basic_publish(x, "keep", b"1", PERSISTENT, mandatory=True)
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish(x, "unbound", b"2", PERSISTENT, mandatory=True)
    conn.close()
    assert bodies(drain(b.port, q)) == [b"1"]


@pytest.mark.parametrize("restart_before_delete", [False, True])
def test_deleting_a_durable_queue_deletes_its_data(broker_factory: Factory, uid: str,
                                                   restart_before_delete: bool) -> None:
    b = broker_factory()
    assert b.data_dir is not None
    q = f"dq-{uid}"
    conn, ch = confirmed_channel(b.port)
    ch.queue_declare(q, durable=True)
    publish_confirmed(ch, "", q, [bytes([i]) * 200_000 for i in range(20)])  # 4 MB
    conn.close()
    assert dir_size(b.data_dir) > 4_000_000
    if restart_before_delete:
        b.restart()
        assert queue_count(b.port, q) == 20
    conn = pika_connect(b.port)
    assert conn.channel().queue_delete(q).method.message_count == 20
    conn.close()
    assert wait_for(lambda: dir_size(b.data_dir) < 1_000_000, 10), dir_size(b.data_dir)
    b.restart()
    assert queue_count(b.port, q) is None
    conn = pika_connect(b.port)
    conn.channel().queue_declare(q, durable=True)
    conn.close()
    assert queue_count(b.port, q) == 0
    b.restart()
    assert queue_count(b.port, q) == 0


# --- 2. messages -------------------------------------------------------------------

@pytest.mark.parametrize("how", ["term", "kill"])
def test_persistent_messages_survive_transient_ones_do_not(broker_factory: Factory, uid: str,
                                                           how: str) -> None:
    b = broker_factory()
    dq, tq, fx = f"dq-{uid}", f"tq-{uid}", f"fx-{uid}"
    conn, ch = confirmed_channel(b.port)
    ch.queue_declare(dq, durable=True)
    ch.queue_declare(tq, durable=False)
    ch.exchange_declare(fx, "fanout", durable=True)
    ch.queue_bind(dq, fx)
    ch.queue_bind(tq, fx)
    expected = []
    for i in range(200):
        persistent = i % 3 != 1
        body = f"{i:05d}:{'p' if persistent else 't'}".encode() + b"x" * (i * 37 % 3000)
        ch.basic_publish("", dq, body, PERSISTENT if persistent else TRANSIENT,
                         mandatory=True)
        if persistent:
            expected.append(body)
    # persistent, routed to a durable and a transient queue: survives in the durable one
    ch.basic_publish(fx, "", b"fanout-persistent", PERSISTENT, mandatory=True)
    expected.append(b"fanout-persistent")
    ch.basic_publish(fx, "", b"fanout-transient", TRANSIENT, mandatory=True)
    ch.basic_publish("", tq, b"persistent-in-transient-queue", PERSISTENT, mandatory=True)
    if how == "kill":
        kill9(b)  # the connection is dead too
    else:
        conn.close()
    restart(b, how)

    assert queue_count(b.port, tq) is None
    got = drain(b.port, dq)
    assert bodies(got) == expected
    assert not any(r for r, _ in got)
    # consumed and acked: gone after another restart
    sync_barrier(b.port, f"barrier-{uid}")
    restart(b, how)
    assert queue_count(b.port, dq) == 0
    conn = pika_connect(b.port)
    conn.channel().queue_declare(tq)
    conn.close()
    assert queue_count(b.port, tq) == 0


def test_redelivered_flag_after_crash(broker_factory: Factory, uid: str) -> None:
    """Delivered-but-unacked messages come back redelivered=true, the rest false, in order."""
    b = broker_factory()
    q = f"dq-{uid}"
    conn, ch = confirmed_channel(b.port)
    ch.queue_declare(q, durable=True)
    publish_confirmed(ch, "", q, [f"m{i:03d}".encode() for i in range(30)])
    conn.close()
    conn = pika_connect(b.port, heartbeat=0)
    ch = conn.channel()
    tags = []
    for i in range(10):  # basic.get: exactly these ten are delivered
        method, _props, body = ch.basic_get(q, auto_ack=False)
        assert body == f"m{i:03d}".encode()
        tags.append(method.delivery_tag)
    ch.basic_ack(tags[1], multiple=True)  # m000 and m001 are acked, m002..m009 are not
    # the acks and delivered marks go to disk with the next group commit
    sync_barrier(b.port, f"barrier-{uid}")
    kill9(b)
    b.restart()

    got = drain(b.port, q)
    assert bodies(got) == [f"m{i:03d}".encode() for i in range(2, 30)]
    flags = [r for r, _ in got]
    assert flags == [True] * 8 + [False] * 20, flags


def test_order_kept_across_restarts_with_requeue(broker_factory: Factory, uid: str) -> None:
    b = broker_factory()
    q = f"dq-{uid}"
    conn, ch = confirmed_channel(b.port)
    ch.queue_declare(q, durable=True)
    publish_confirmed(ch, "", q, [f"a{i:04d}".encode() for i in range(500)])
    conn.close()
    b.restart()
    conn, ch = confirmed_channel(b.port)
    publish_confirmed(ch, "", q, [f"b{i:04d}".encode() for i in range(500)])
    conn.close()
    kill9(b)
    b.restart()
    want = [f"a{i:04d}".encode() for i in range(500)] + [f"b{i:04d}".encode() for i in range(500)]
    assert bodies(drain(b.port, q, ack=False)) == want  # not acked: requeued
    b.restart()
    got = drain(b.port, q)
    assert bodies(got) == want


def test_fanout_to_durable_queues_stores_the_body_once(broker_factory: Factory,
                                                       uid: str) -> None:
    b = broker_factory()
    assert b.data_dir is not None
    fx = f"fx-{uid}"
    queues = [f"dq{i}-{uid}" for i in range(3)]
    conn, ch = confirmed_channel(b.port)
    ch.exchange_declare(fx, "fanout", durable=True)
    for q in queues:
        ch.queue_declare(q, durable=True)
        ch.queue_bind(q, fx)
    before = dir_size(b.data_dir)
    msgs = [os.urandom(2_000_000) for _ in range(5)]  # 10 MB of bodies
    publish_confirmed(ch, fx, "", msgs)
    conn.close()
    grown = dir_size(b.data_dir) - before
    assert 10_000_000 <= grown < 13_000_000, f"data dir grew by {grown} bytes for 10 MB of bodies"
    kill9(b)
    b.restart()
    for q in queues:
        assert bodies(drain(b.port, q)) == msgs
    assert wait_for(lambda: dir_size(b.data_dir) < 1_000_000, 10), dir_size(b.data_dir)


# --- 3. kill -9 in the middle of confirmed publishing ------------------------------

class Publisher(threading.Thread):
    """Publishes persistent messages with confirms until the broker dies or stop is set.

    `confirmed` holds every sequence number whose basic.ack arrived."""

    def __init__(self, port: int, queue: str, tag: str, stop: threading.Event,
                 seed: int = 0) -> None:
        super().__init__(daemon=True)
        self.port, self.queue, self.tag, self.stop_event = port, queue, tag, stop
        self.seed = seed
        self.confirmed: list[int] = []
        self.nacked: list[int] = []
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        rnd = random.Random(f"{self.seed}:{self.tag}")
        try:
            conn, ch = confirmed_channel(self.port)
        except BaseException as exc:  # the broker may already be gone
            self.error = exc
            return
        seq = 0
        try:
            while not self.stop_event.is_set():
                body = f"{self.tag}:{seq:07d}:".encode() + b"." * rnd.randrange(0, 4000)
                self.sent = seq + 1
                try:
                    ch.basic_publish("", self.queue, body, PERSISTENT, mandatory=True)
                except NackError:
                    self.nacked.append(seq)
                else:
                    self.confirmed.append(seq)
                seq += 1
        except (AMQPError, OSError) as exc:
            self.error = exc  # the broker was killed: expected
        finally:
            try:
                if conn.is_open:
                    conn.close()
            except Exception:
                pass


def test_kill9_during_confirmed_publishing_loses_nothing_confirmed(
        broker_factory: Factory, uid: str) -> None:
    b = broker_factory()
    q = f"crash-{uid}"
    conn = pika_connect(b.port)
    conn.channel().queue_declare(q, durable=True)
    conn.close()
    seed = replay_seed()
    note = seed_note(seed)
    rnd = random.Random(seed)
    started = time.monotonic()
    acked_before: set[bytes] = set()  # (tag, seq) keys consumed and acked in earlier cycles
    totals = {"confirmed": 0, "unconfirmed_present": 0, "unconfirmed_sent": 0}
    for cycle in range(8):
        stop = threading.Event()
        pubs = [Publisher(b.port, q, f"c{cycle}p{k}", stop, seed) for k in range(3)]
        for p in pubs:
            p.start()
        time.sleep(rnd.uniform(0.2, 1.0))
        kill9(b)
        stop.set()
        for p in pubs:
            p.join(15)
            assert not p.is_alive(), "publisher hung after the broker was killed" + note
        assert all(not p.nacked for p in pubs), "nacks without a disk problem" + note
        b.restart()
        got = drain(b.port, q, timeout=20)
        keys: list[tuple[str, int]] = []
        for _redelivered, body in got:
            tag, seq, _ = body.split(b":", 2)
            keys.append((tag.decode(), int(seq)))
        resurrected = [k for k in keys if f"{k[0]}:{k[1]}".encode() in acked_before]
        assert not resurrected, \
            f"cycle {cycle}: acked messages came back: {resurrected[:5]}{note}"
        assert len(set(keys)) == len(keys), f"cycle {cycle}: a message is there twice{note}"
        for p in pubs:
            mine = [s for t, s in keys if t == p.tag]
            assert mine == sorted(mine), f"cycle {cycle}: {p.tag} out of order{note}"
            missing = set(p.confirmed) - set(mine)
            assert not missing, (f"cycle {cycle}: {len(missing)} confirmed messages of {p.tag} "
                                 f"lost, e.g. {sorted(missing)[:5]} "
                                 f"(confirmed {len(p.confirmed)}, recovered {len(mine)}){note}")
            assert set(mine) <= set(range(p.sent)), "a message nobody sent" + note
            totals["confirmed"] += len(p.confirmed)
            totals["unconfirmed_present"] += len(set(mine) - set(p.confirmed))
            totals["unconfirmed_sent"] += p.sent - len(p.confirmed)
        acked_before.update(f"{t}:{s}".encode() for t, s in keys)
        sync_barrier(b.port, f"barrier-{uid}")  # the acks above are on disk
    assert totals["confirmed"] > 100, f"{totals}{note}"
    print(f"crash cycles: {totals} in {time.monotonic() - started:.1f}s")


# --- 4. torn tail, corrupt record -----------------------------------------------------

def test_torn_tail_is_dropped_and_the_rest_recovered(broker_factory: Factory, uid: str) -> None:
    b = broker_factory()
    assert b.data_dir is not None
    q = f"dq-{uid}"
    conn, ch = confirmed_channel(b.port)
    ch.queue_declare(q, durable=True)
    msgs = [f"t{i:03d}".encode() * 50 for i in range(60)]
    publish_confirmed(ch, "", q, msgs)
    conn.close()
    b.stop()
    seg = segments(b.data_dir)[-1]
    recs = message_records(seg)
    assert len(recs) == 60
    off, length, _, _ = recs[-1]
    with open(seg, "r+b") as f:
        f.truncate(off + length // 2)
    b.proc = None
    b.start()
    assert bodies(drain(b.port, q, ack=False)) == msgs[:-1]
    # the store goes on working: new messages after the torn one, another restart
    conn, ch = confirmed_channel(b.port)
    publish_confirmed(ch, "", q, [b"after-1", b"after-2"])
    conn.close()
    kill9(b)
    b.restart()
    assert bodies(drain(b.port, q)) == msgs[:-1] + [b"after-1", b"after-2"]


def test_corrupt_record_in_the_middle_is_logged_and_skipped(broker_factory: Factory,
                                                            uid: str) -> None:
    b = broker_factory()
    assert b.data_dir is not None
    q = f"dq-{uid}"
    conn, ch = confirmed_channel(b.port)
    ch.queue_declare(q, durable=True)
    msgs = [f"c{i:03d}-".encode() + bytes(range(256)) * 4 for i in range(40)]
    publish_confirmed(ch, "", q, msgs)
    conn.close()
    b.stop()
    seg = segments(b.data_dir)[-1]
    recs = message_records(seg)
    assert len(recs) == 40
    off, length, _, body_at = recs[17]
    with open(seg, "r+b") as f:
        f.seek(body_at + 100)
        data = f.read(8)
        f.seek(body_at + 100)
        f.write(bytes(x ^ 0xFF for x in data))
    log_before = len(b.log())
    b.proc = None
    b.start()
    assert bodies(drain(b.port, q, ack=False)) == msgs[:17] + msgs[18:]
    log = b.log()[log_before:]
    lines = [ln for ln in log.splitlines() if seg.name in ln and re.search(rf"\b{off}\b", ln)]
    assert lines, f"no log line names {seg} and offset {off}:\n{log}"
    # a later restart still has the 39 (the skipped record is not resurrected)
    b.restart()
    assert bodies(drain(b.port, q)) == msgs[:17] + msgs[18:]


# --- 5. disk space reclaimed ------------------------------------------------------------

def test_disk_space_reclaimed_after_consuming(broker_factory: Factory, uid: str) -> None:
    b = broker_factory()
    assert b.data_dir is not None
    q = f"dq-{uid}"
    conn, ch = confirmed_channel(b.port)
    ch.queue_declare(q, durable=True)
    chunk = os.urandom(100_000)
    for i in range(1000):  # 100 MB
        ch.basic_publish("", q, i.to_bytes(4, "big") + chunk, PERSISTENT, mandatory=True)
    conn.close()
    assert dir_size(b.data_dir) > 100_000_000
    got = drain(b.port, q, timeout=60)
    assert [int.from_bytes(body[:4], "big") for _, body in got] == list(range(1000))
    assert wait_for(lambda: dir_size(b.data_dir) < 10_000_000, 10), \
        f"data dir still {dir_size(b.data_dir)} bytes after everything was acked"
    b.restart()
    assert queue_count(b.port, q) == 0
    assert dir_size(b.data_dir) < 10_000_000


# --- 6. disk full -------------------------------------------------------------------------

@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Any:
    """A 20 MB tmpfs; unmounted at the end."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    try:
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mnt)],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs: {exc}")
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=10)


def test_disk_full_nacks_and_keeps_confirmed_messages(broker_factory: Factory, uid: str,
                                                      small_tmpfs: Path) -> None:
    data_dir = small_tmpfs / "data"
    # no free-space watermark: this test is about writes failing with ENOSPC
    b = broker_factory("--disk-free-limit", "0", data_dir=data_dir)
    q = f"dq-{uid}"
    conn, ch = confirmed_channel(b.port)
    ch.queue_declare(q, durable=True)
    confirmed: list[int] = []
    nacked: list[int] = []
    error: BaseException | None = None
    body = os.urandom(256_000)
    try:
        for i in range(200):  # 51 MB into 20 MB
            try:
                ch.basic_publish("", q, i.to_bytes(4, "big") + body, PERSISTENT, mandatory=True)
                confirmed.append(i)
            except NackError:
                nacked.append(i)
                if len(nacked) >= 3:
                    break
    except (AMQPError, OSError) as exc:
        error = exc  # e.g. blocked by the disk alarm until blocked_connection_timeout
    assert b.alive(), f"the broker died when the disk filled up; log:\n{b.log()[-3000:]}"
    print(f"disk full: {len(confirmed)} confirmed, nacked {nacked}, then {error!r}")
    assert nacked, (f"no basic.nack with the disk full: {len(confirmed)} confirmed, "
                    f"error {error!r}")
    assert confirmed, "nothing fitted in 20 MB?"
    try:
        if conn.is_open:
            conn.close()
    except Exception:
        pass
    # the broker still answers while the disk is full
    assert queue_count(b.port, q) is not None
    # free space (grow the tmpfs) and restart
    subprocess.run(["mount", "-o", "remount,size=200m", str(small_tmpfs)], check=True,
                   timeout=10)
    b.restart()
    got = drain(b.port, q, timeout=30)
    ids = [int.from_bytes(m[:4], "big") for _, m in got]
    assert set(confirmed) <= set(ids), f"confirmed but lost: {sorted(set(confirmed) - set(ids))}"
    assert ids == sorted(ids)
    assert all(m[4:] == body for _, m in got)
    # and it takes persistent messages again
    conn, ch = confirmed_channel(b.port)
    ch.basic_publish("", q, b"after", PERSISTENT, mandatory=True)
    conn.close()
    assert bodies(drain(b.port, q)) == [b"after"]


def test_disk_full_then_space_freed_without_restart(broker_factory: Factory, uid: str,
                                                    small_tmpfs: Path) -> None:
    """Once space is back the store retries and publishers are served again."""
    data_dir = small_tmpfs / "data"
    b = broker_factory("--disk-free-limit", "0", data_dir=data_dir)
    q = f"dq-{uid}"
    conn, ch = confirmed_channel(b.port)
    ch.queue_declare(q, durable=True)
    body = os.urandom(256_000)
    nacked = False
    try:
        for _i in range(200):
            try:
                ch.basic_publish("", q, body, PERSISTENT, mandatory=True)
            except NackError:
                nacked = True
                break
    except (AMQPError, OSError):
        pass
    try:
        if conn.is_open:
            conn.close()
    except Exception:
        pass
    assert nacked
    assert b.alive()
    subprocess.run(["mount", "-o", "remount,size=200m", str(small_tmpfs)], check=True,
                   timeout=10)
    # the disk alarm clears within a few retry intervals; then confirms flow again
    deadline = time.monotonic() + 15
    ok = False
    while time.monotonic() < deadline and not ok:
        try:
            conn, ch = confirmed_channel(b.port)
            ch.basic_publish("", q, b"after", PERSISTENT, mandatory=True)
            conn.close()
            ok = True
        except (AMQPError, OSError, NackError):
            time.sleep(0.5)
    assert ok, f"no confirmed publish within 15 s of freeing space; log:\n{b.log()[-3000:]}"
    assert b.alive()


# --- clean stop -----------------------------------------------------------------------------

def test_sigterm_is_a_clean_stop(broker_factory: Factory, uid: str) -> None:
    """SIGTERM: exit status 0, "stopped" logged, and the last acks are kept."""
    b = broker_factory("--log-level", "info")
    q = f"dq-{uid}"
    conn, ch = confirmed_channel(b.port)
    ch.queue_declare(q, durable=True)
    publish_confirmed(ch, "", q, [b"1", b"2", b"3"])
    got = ch.basic_get(q, auto_ack=False)
    assert got[2] == b"1"
    ch.basic_ack(got[0].delivery_tag)
    conn.close()
    code = b.stop()
    log = b.log()
    assert code == 0, f"exit status {code}; log tail:\n{log[-2500:]}"
    assert "stopped" in log
    b.proc = None
    b.start()
    assert bodies(drain(b.port, q)) == [b"2", b"3"]


def test_recovered_log_line(broker_factory: Factory, uid: str) -> None:
    b = broker_factory("--log-level", "info")
    q = f"dq-{uid}"
    conn, ch = confirmed_channel(b.port)
    ch.queue_declare(q, durable=True)
    publish_confirmed(ch, "", q, [b"x"] * 25)
    conn.close()
    kill9(b)
    b.restart()
    lines = [ln for ln in b.log().splitlines() if re.search(r"\brecovered\b", ln)]
    assert len(lines) == 2
    assert re.search(r"messages=25\b", lines[-1]) and re.search(r"queues=1\b", lines[-1]), lines
    assert re.search(r"seconds=[0-9.]+", lines[-1])


def test_definitions_survive_kill9_right_after_declare_ok(broker_factory: Factory,
                                                          uid: str) -> None:
    """declare-ok / bind-ok for durable objects: on disk before the reply (as RabbitMQ)."""
    b = broker_factory()
    conn = pika_connect(b.port)
    ch = conn.channel()
    ch.exchange_declare(f"kx-{uid}", "topic", durable=True)
    for i in range(20):
        ch.queue_declare(f"kq{i}-{uid}", durable=True)
    ch.queue_bind(f"kq19-{uid}", f"kx-{uid}", "#")
    kill9(b)  # right after the last bind-ok
    b.restart()
    assert exchange_exists(b.port, f"kx-{uid}")
    missing = [i for i in range(20) if queue_count(b.port, f"kq{i}-{uid}") is None]
    assert not missing, f"durable queues lost after kill -9: {missing}"
    conn, ch = confirmed_channel(b.port)
    ch.basic_publish(f"kx-{uid}", "any.key", b"routed", PERSISTENT, mandatory=True)
    conn.close()
    assert bodies(drain(b.port, f"kq19-{uid}")) == [b"routed"]


class Consumer(threading.Thread):
    """Consumes with manual acks (every few messages) until the broker dies or stop is set.

    `acked` holds the bodies whose ack was sent (an ack is not confirmed, so after a
    crash they may come back: allowed)."""

    def __init__(self, port: int, queue: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.queue, self.stop_event = port, queue, stop
        self.acked: list[bytes] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            conn = pika_connect(self.port, heartbeat=0)
        except BaseException as exc:
            self.error = exc
            return
        try:
            ch = conn.channel()
            ch.basic_qos(prefetch_count=50)
            pending: list[bytes] = []
            for method, _props, body in ch.consume(self.queue, inactivity_timeout=0.05):
                if self.stop_event.is_set():
                    break
                if method is None:
                    continue
                pending.append(body)
                if len(pending) >= 7:
                    ch.basic_ack(method.delivery_tag, multiple=True)
                    self.acked.extend(pending)
                    pending = []
        except (AMQPError, OSError) as exc:
            self.error = exc
        finally:
            try:
                if conn.is_open:
                    conn.close()
            except Exception:
                pass


def test_kill9_while_publishing_and_consuming(broker_factory: Factory, uid: str) -> None:
    """Publishers, a consumer acking, kill -9, restart; 6 cycles. Every confirmed message
    was either acked by the consumer before the crash or is in the queue afterwards."""
    b = broker_factory()
    q = f"mixed-{uid}"
    conn = pika_connect(b.port)
    conn.channel().queue_declare(q, durable=True)
    conn.close()
    seed = replay_seed()
    note = seed_note(seed)
    rnd = random.Random(seed)
    for cycle in range(6):
        stop = threading.Event()
        pubs = [Publisher(b.port, q, f"c{cycle}p{k}", stop, seed) for k in range(2)]
        cons = Consumer(b.port, q, stop)
        for t in (*pubs, cons):
            t.start()
        time.sleep(rnd.uniform(0.3, 1.0))
        kill9(b)
        stop.set()
        for t in (*pubs, cons):
            t.join(15)
            assert not t.is_alive(), "a client hung after the broker was killed" + note
        b.restart()
        got = drain(b.port, q, timeout=20)
        present = set(bodies(got))
        acked_keys = {tuple(m.split(b":", 2)[:2]) for m in cons.acked}
        present_keys = {tuple(m.split(b":", 2)[:2]) for m in present}
        assert len(present) == len(got), f"cycle {cycle}: a message is there twice{note}"
        for p in pubs:
            for seq in p.confirmed:
                key = (p.tag.encode(), f"{seq:07d}".encode())
                assert key in acked_keys or key in present_keys, \
                    f"cycle {cycle}: confirmed {p.tag}:{seq} neither consumed nor recovered{note}"
        sync_barrier(b.port, f"barrier-{uid}")
        assert cons.acked or cycle, "the consumer got nothing" + note


def test_paged_out_backlog_survives_kill9_with_intact_bodies(broker_factory: Factory,
                                                             uid: str) -> None:
    """A backlog past the 32 MiB paging threshold: bodies are read back from the segments."""
    b = broker_factory()
    q = f"dq-{uid}"
    conn, ch = confirmed_channel(b.port)
    ch.queue_declare(q, durable=True)
    digests = []
    for i in range(240):  # 60 MB
        body = i.to_bytes(4, "big") + random.Random(i).randbytes(250_000)
        digests.append(zlib.crc32(body))
        ch.basic_publish("", q, body, PERSISTENT, mandatory=True)
    conn.close()
    got = drain(b.port, q, ack=False, timeout=60)  # read (paged out) before the crash
    assert [zlib.crc32(m) for _, m in got] == digests
    kill9(b)
    b.restart()
    got = drain(b.port, q, timeout=60)
    assert [zlib.crc32(m) for _, m in got] == digests
    assert all(r for r, _ in got)  # all were delivered before the crash


AMQPLOAD = Path(__file__).resolve().parent.parent / "bench" / "out" / "amqpload"


@pytest.mark.skipif(not AMQPLOAD.exists(), reason="bench/out/amqpload is not built")
def test_kill9_while_draining_a_big_backlog_index_compaction(broker_factory: Factory,
                                                             uid: str) -> None:
    """300k small messages drained with acks (the index log passes its 2 MB compaction
    threshold), kill -9 in the middle: nothing unacked is lost, nothing reappears twice."""
    b = broker_factory()
    assert b.data_dir is not None
    name = f"idx{uid}"
    q = name + "-d"  # amqpload --durable publishes to "<queue>-d"
    conn = pika_connect(b.port)
    conn.channel().queue_declare(q, durable=True)
    conn.close()
    n = 300_000
    res = subprocess.run([str(AMQPLOAD), "--port", str(b.port), "--count", str(n), "--size", "16",
                          "--persistent", "--durable", "--queue", name, "--consumers", "0",
                          "--confirm", "1000"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert queue_count(b.port, q) == n
    # consume 200k with acks, then wait for the acks to reach disk, consume more, crash
    conn = pika_connect(b.port, heartbeat=0)
    ch = conn.channel()
    ch.basic_qos(prefetch_count=1000)
    got = 0
    for method, _props, _body in ch.consume(q, inactivity_timeout=10):
        assert method is not None
        got += 1
        if got % 100 == 0:
            ch.basic_ack(method.delivery_tag, multiple=True)
        if got == 200_000:
            break
    sync_barrier(b.port, f"barrier-{uid}")  # the first 200k acks are on disk
    synced_acks = got
    for method, _props, _body in ch.consume(q, inactivity_timeout=10):
        assert method is not None
        got += 1
        if got % 100 == 0:
            ch.basic_ack(method.delivery_tag, multiple=True)
        if got == 250_000:
            break
    index = b.data_dir / "index.log"
    kill9(b)
    index_size = index.stat().st_size
    b.restart()
    left = queue_count(b.port, q)
    assert left is not None and n - got <= left <= n - synced_acks, (left, index_size)
    remaining = drain(b.port, q, timeout=60)
    assert len(remaining) == left
    assert wait_for(lambda: dir_size(b.data_dir) < 10_000_000, 10), dir_size(b.data_dir)


def test_low_free_disk_space_blocks_publishers_before_writes_fail(
        broker_factory: Factory, uid: str, small_tmpfs: Path) -> None:
    """Like RabbitMQ's disk_free_limit: below the watermark publishers get
    connection.blocked and are no longer read, before any write can fail."""
    data_dir = small_tmpfs / "data"
    b = broker_factory("--disk-free-limit", "12000000", data_dir=data_dir)
    q = f"dq-{uid}"
    conn, ch = confirmed_channel(b.port)
    blocked: list[Any] = []
    conn.add_on_connection_blocked_callback(lambda _c, f: blocked.append(f))
    ch.queue_declare(q, durable=True)
    body = os.urandom(256_000)
    nacked = 0
    error: BaseException | None = None
    try:
        for _ in range(200):
            try:
                ch.basic_publish("", q, body, PERSISTENT, mandatory=True)
            except NackError:
                nacked += 1
            if blocked:
                break
            conn.process_data_events(time_limit=0.01)
    except (AMQPError, OSError) as exc:
        error = exc
    deadline = time.monotonic() + 5
    while not blocked and time.monotonic() < deadline and conn.is_open:
        conn.process_data_events(time_limit=0.2)
    # pika runs the blocked callback only between its own blocking calls; when the alarm
    # lands mid-publish, its ConnectionBlockedTimeout (raised only after it received
    # connection.blocked) is the evidence instead
    assert blocked or isinstance(error, ConnectionBlockedTimeout), (
        f"no connection.blocked below the free disk space limit ({error!r}); "
        f"log:\n{b.log()[-2000:]}")
    assert nacked == 0, "writes failed before the disk alarm"
    try:
        conn.close()
    except Exception:
        pass
    assert b.alive()


def test_binding_arguments_of_every_table_type_survive_restart(broker_factory: Factory,
                                                                 uid: str) -> None:
    """Field-table values JSON lacks (timestamps, decimals, byte strings) are stored and
    restored, so a durable headers binding still matches after a restart."""
    import datetime
    import decimal

    b = broker_factory()
    ex, q = f"hx-{uid}", f"hq-{uid}"
    match = {"when": datetime.datetime(2020, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
             "price": decimal.Decimal("1.25"), "n": 7}
    conn = pika_connect(b.port)
    ch = conn.channel()
    ch.exchange_declare(ex, "headers", durable=True)
    ch.queue_declare(q, durable=True, arguments={"x-note": b"\x00\xffraw"})
    ch.queue_bind(q, ex, arguments={"x-match": "all", **match})
    conn.close()
    b.restart()
    conn = pika_connect(b.port)
    ch = conn.channel()
    ch.queue_declare(q, durable=True, arguments={"x-note": b"\x00\xffraw"})  # equivalent
    ch.basic_publish(ex, "", b"hit", pika.BasicProperties(headers=dict(match), delivery_mode=2))
    ch.basic_publish(ex, "", b"miss", pika.BasicProperties(headers={"n": 8}, delivery_mode=2))
    conn.close()
    assert bodies(drain(b.port, q)) == [b"hit"]
