"""A queue's backlog past its in-memory head goes to the spool (storage/spool.py):
publish order, redelivery, TTL, length limits, purge and delete still hold, and no
message object stays in RAM for a spooled message. Units without sockets, with the
head bound made small."""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path
from typing import Any

import pytest

from amqp_broker import queue as queue_module
from amqp_broker.broker import Broker
from amqp_broker.config import Config
from amqp_broker.message import Message
from amqp_broker.protocol import fast
from amqp_broker.vhost import VHost
from tests.test_queue import CLIENT as CLIENT_DURABLE
from tests.test_queue import FakeChannel, declare, get_all, publish


@pytest.fixture(autouse=True)
def small_head(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queue_module, "HEAD_COUNT", 10)
    monkeypatch.setattr(queue_module, "HEAD_BYTES", 1000)


def make_vhost(tmp_path: Path) -> VHost:
    return Broker(Config(data_dir=str(tmp_path / "data"))).vhosts["/"]


def spool_files(tmp_path: Path) -> list[str]:
    root = tmp_path / "data" / "spool"
    return [str(p) for p in root.rglob("*.spl")] if root.exists() else []


def live_messages() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, Message))


def test_backlog_past_the_head_is_spooled_and_comes_back_in_order(tmp_path: Path) -> None:
    vhost = make_vhost(tmp_path)
    q = declare(vhost, "q")
    before = live_messages()
    for i in range(10000):
        publish(vhost, "q", b"m%d" % i)
    assert len(q.ready) == 10  # the head
    assert q.spooled == 9990
    assert q.message_count == 10000
    assert q.ready_bytes == sum(len(b"m%d" % i) for i in range(10000))
    assert live_messages() - before <= 10  # no object per spooled message
    assert spool_files(tmp_path)  # past the write buffer: on disk
    got = get_all(q)
    assert got == [(b"m%d" % i, False) for i in range(10000)]
    assert q.spool is None and q.message_count == 0 and q.ready_bytes == 0
    assert not spool_files(tmp_path)  # read segments are deleted


def test_a_consumer_drains_head_and_spool_in_order(tmp_path: Path) -> None:
    vhost = make_vhost(tmp_path)
    q = declare(vhost, "q")
    for i in range(300):
        publish(vhost, "q", b"%d" % i)
    ch = FakeChannel()
    ch.consumer(q, "c", prefetch=7)
    while ch.unacked:
        ch.settle()
    assert ch.bodies() == [b"%d" % i for i in range(300)]
    assert q.message_count == 0


def test_requeue_goes_back_in_front_of_the_spool(tmp_path: Path) -> None:
    vhost = make_vhost(tmp_path)
    q = declare(vhost, "q")
    for i in range(50):
        publish(vhost, "q", b"%d" % i)
    ch = FakeChannel()
    c = ch.consumer(q, "c", prefetch=3)
    assert ch.bodies() == [b"0", b"1", b"2"]
    q.remove_consumer(c)
    ch.settle(requeue=True)
    assert q.spooled > 0
    got = get_all(q)
    assert got[:3] == [(b"0", True), (b"1", True), (b"2", True)]
    assert got[3:] == [(b"%d" % i, False) for i in range(3, 50)]


def test_ttl_and_expiration_survive_the_spool(tmp_path: Path) -> None:
    vhost = make_vhost(tmp_path)
    q = declare(vhost, "q", **{"x-message-ttl": 1000})
    base = time.monotonic() + 10_000  # in the future: take() expires at the real now
    for i in range(40):
        publish(vhost, "q", b"%d" % i, at=base + i)
    assert q.spooled > 0
    q.expire(now=base + 1.0 + 25.5)  # messages published before base+25.5 are expired
    assert [b for b, _ in get_all(q)] == [b"%d" % i for i in range(26, 40)]


def test_max_length_drops_from_the_head_with_a_spool(tmp_path: Path) -> None:
    vhost = make_vhost(tmp_path)
    q = declare(vhost, "q", **{"x-max-length": 25})
    for i in range(100):
        publish(vhost, "q", b"%d" % i)
    assert q.message_count == 25
    assert [b for b, _ in get_all(q)] == [b"%d" % i for i in range(75, 100)]


def test_reject_publish_overflow_counts_the_spool(tmp_path: Path) -> None:
    vhost = make_vhost(tmp_path)
    q = declare(vhost, "q", **{"x-max-length": 30, "x-overflow": "reject-publish"})
    taken = [bool(publish(vhost, "q", b"%d" % i)) for i in range(50)]
    assert taken == [True] * 30 + [False] * 20
    assert q.message_count == 30


def test_purge_and_delete_drop_the_spool(tmp_path: Path) -> None:
    vhost = make_vhost(tmp_path)
    q = declare(vhost, "q")
    for _ in range(3000):
        publish(vhost, "q", bytes(100))
    assert spool_files(tmp_path)
    assert q.purge() == 3000
    assert q.message_count == 0 and q.spool is None and not spool_files(tmp_path)
    for _ in range(3000):
        publish(vhost, "q", bytes(100))
    assert vhost.delete_queue(q) == 3000
    assert not spool_files(tmp_path)


def test_big_bodies_spool_past_the_byte_bound(tmp_path: Path) -> None:
    vhost = make_vhost(tmp_path)
    q = declare(vhost, "q")
    bodies = [os.urandom(600) for _ in range(20)]
    for body in bodies:
        publish(vhost, "q", body)
    assert len(q.ready) == 2  # 1200 bytes passed the 1000-byte head bound
    assert q.ram_bytes == 1200
    assert [b for b, _ in get_all(q)] == bodies


def test_properties_exchange_and_routing_key_survive_the_spool(tmp_path: Path) -> None:
    vhost = make_vhost(tmp_path)
    ex = "ëx"
    vhost.declare_exchange(ex, "direct", False, False, False, False, {})
    q = declare(vhost, "q")
    vhost.bind(vhost.exchanges[ex], q, "rk\udcff", {})
    props = fast.encode_properties(fast.Properties(content_type="text/plain",
                                                   headers={"a": 1}))
    for i in range(30):
        publish(vhost, "rk\udcff", b"%d" % i, exchange=ex, props=props)
    assert q.spooled > 0
    while (got := q.take()) is not None:
        msg = got[0]
        assert (msg.exchange, msg.routing_key, msg.properties) == (ex, "rk\udcff", props)


def test_a_disk_that_refuses_writes_keeps_the_backlog_in_ram(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from amqp_broker.storage import spool

    monkeypatch.setattr(spool, "FLUSH_BYTES", 64)

    def full(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spool.os, "write", full)
    vhost = make_vhost(tmp_path)
    q = declare(vhost, "q")
    for i in range(100):
        publish(vhost, "q", b"%d" % i)
    assert q.spool is not None and q.spool.error is not None
    monkeypatch.undo()
    assert [b for b, _ in get_all(q)] == [b"%d" % i for i in range(100)]


# --- end to end: a backlog far past the memory watermark ------------------------------------

def test_a_backlog_ten_times_the_watermark_is_confirmed_unblocked_and_drained_in_order(
        broker_factory: Any, uid: str) -> None:
    from tests.helpers import pika_connect

    watermark = 8 * 1024 * 1024
    b = broker_factory("--memory-high-watermark", str(watermark), data_dir="tmp")
    queue = f"backlog-{uid}"
    blocked: list[int] = []
    conn = pika_connect(b.port, blocked_connection_timeout=30)
    conn.add_on_connection_blocked_callback(lambda *_: blocked.append(1))
    ch = conn.channel()
    ch.queue_declare(queue)
    ch.confirm_delivery()
    body = bytes(1024)
    count = 10 * watermark // len(body)  # 80 MB of bodies
    for i in range(count):
        # a blocked connection would stall here until blocked_connection_timeout
        ch.basic_publish("", queue, i.to_bytes(4, "big") + body[4:],
                         mandatory=False)
    assert not blocked
    assert ch.queue_declare(queue, passive=True).method.message_count == count
    ch.basic_qos(prefetch_count=1000)
    seen = 0
    for method, _props, got in ch.consume(queue, inactivity_timeout=10):
        assert method is not None, f"stalled after {seen} of {count}"
        assert int.from_bytes(got[:4], "big") == seen
        seen += 1
        if seen % 1000 == 0 or seen == count:
            ch.basic_ack(method.delivery_tag, multiple=True)
        if seen == count:
            break
    ch.cancel()
    assert ch.queue_declare(queue, passive=True).method.message_count == 0
    conn.close()


# --- persistent messages: the store holds them, the spool only their place ------------------

def _durable_broker(data: Path) -> tuple[Any, Any]:
    from amqp_broker.storage.disk import DiskStore

    store = DiskStore(data)
    broker = Broker(Config(data_dir=str(data)), store)
    broker.recover()
    return broker, store


def test_persistent_backlog_spools_without_bodies_and_recovers_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import anyio

    monkeypatch.setattr(queue_module, "HEAD_BYTES", 100_000)  # the head bound is 10 messages
    data = tmp_path / "data"
    broker, store = _durable_broker(data)
    vhost = broker.vhosts["/"]
    q, _ = vhost.declare_queue("dq", False, True, False, False, {}, CLIENT_DURABLE)
    persistent = fast.encode_properties(fast.Properties(delivery_mode=2))
    bodies = [os.urandom(200) for _ in range(100)]
    for body in bodies:
        publish(vhost, "dq", body, props=persistent)
    anyio.run(store.commit)
    assert q.spooled == 90
    # the spool holds their place, not their bodies: far less than 90 x 200 bytes
    assert q.spool is not None and len(q.spool._buf) < 90 * 200
    first = q.take()
    assert first is not None and first[2] == bodies[0]
    broker.vhosts["/"].broker.store.remove(q.store_key, [first[0].msg_id])
    anyio.run(store.commit)
    store.close()
    (data / "spool" / "stale").mkdir(parents=True, exist_ok=True)  # a crash's leftovers

    broker, store = _durable_broker(data)
    try:
        assert not (data / "spool" / "stale").exists()
        q = broker.vhosts["/"].queues["dq"]
        assert q.message_count == 99
        assert q.spooled == 89  # recovery fills the head, then the spool
        got = []
        while (taken := q.take()) is not None:
            got.append(taken[2])  # read back from the store
        assert got == bodies[1:]
    finally:
        store.close()


def test_a_message_routed_to_a_spooling_and_a_consumed_queue_reaches_both(
        tmp_path: Path) -> None:
    vhost = make_vhost(tmp_path)
    vhost.declare_exchange("fan", "fanout", False, False, False, False, {})
    fast_q, slow_q = declare(vhost, "fast"), declare(vhost, "slow")
    for q in (fast_q, slow_q):
        vhost.bind(vhost.exchanges["fan"], q, "", {})
    ch = FakeChannel()
    ch.consumer(fast_q, "c", no_ack=True)
    for i in range(100):
        publish(vhost, "", b"%d" % i, exchange="fan")
    assert ch.bodies() == [b"%d" % i for i in range(100)]  # never spooled
    assert fast_q.spool is None
    assert slow_q.spooled == 90 and slow_q.paged_out_count() == 90
    assert [b for b, _ in get_all(slow_q)] == [b"%d" % i for i in range(100)]


def test_spool_all_spools_every_new_backlog_and_is_lifted(tmp_path: Path) -> None:
    vhost = make_vhost(tmp_path)
    q = declare(vhost, "q")
    vhost.broker.set_spool_all(True)  # the broker holds more than half its watermark
    publish(vhost, "q", b"first")  # into an empty head: spooled and read back at once
    assert len(q.ready) == 1 and q.spool is None
    publish(vhost, "q", b"second")
    assert len(q.ready) == 1 and q.spooled == 1
    vhost.broker.set_spool_all(False)
    late = declare(vhost, "late")
    publish(vhost, "late", b"x")
    assert late.spool is None and len(late.ready) == 1
    publish(vhost, "q", b"third")  # behind a spooled one: spooled too (order)
    assert q.spooled == 2
    ch = FakeChannel()
    ch.consumer(q, "c", no_ack=True)
    publish(vhost, "q", b"fourth")  # a consumer waits, but older messages go first
    assert ch.bodies() == [b"first", b"second", b"third", b"fourth"]


def test_a_spooled_message_is_never_overtaken_by_direct_delivery(tmp_path: Path) -> None:
    vhost = make_vhost(tmp_path)
    q = declare(vhost, "q")
    vhost.broker.set_spool_all(True)
    ch = FakeChannel()
    c = ch.consumer(q, "c", prefetch=1)
    for i in range(5):
        publish(vhost, "q", b"%d" % i)  # 0 goes straight out, the rest wait (prefetch 1)
    assert ch.bodies() == [b"0"] and q.message_count == 4
    while ch.unacked:
        ch.settle()
    assert ch.bodies() == [b"%d" % i for i in range(5)]
    assert c.unacked == 0 and q.message_count == 0


def test_a_failed_spool_read_is_logged_and_retried(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from amqp_broker.storage import spool

    vhost = make_vhost(tmp_path)
    q = declare(vhost, "q")
    for i in range(40_000):  # past the write buffer: the spool is read from its files
        publish(vhost, "q", b"%d" % i)
    real = spool.os.pread
    failures = [0]

    def failing(fd: int, n: int, offset: int) -> bytes:
        failures[0] += 1
        raise OSError(5, "Input/output error")

    got = []
    while len(q.ready) > 1:
        got.append(q.take())
    monkeypatch.setattr(spool.os, "pread", failing)
    got.append(q.take())  # the head's last message; the refill after it fails
    assert failures[0] == 1
    assert q.take() is None and q.message_count == 40_000 - len(got)  # retried, failed
    monkeypatch.setattr(spool.os, "pread", real)
    rest = get_all(q)  # retried: nothing lost, nothing out of order
    assert [m[0].body for m in got if m] + [b for b, _ in rest] == [
        b"%d" % i for i in range(40_000)]
