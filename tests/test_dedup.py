"""Message deduplication (amqp_broker/dedup.py), driven by pika: the exchange type and
argument x-message-deduplication, queue-level deduplication, argument errors, and a disk
cache across a restart; the cache itself without sockets."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from amqp_broker import dedup
from tests.helpers import BrokerProcess, temporary_names


def connect(broker: BrokerProcess) -> BlockingChannel:
    conn = pika.BlockingConnection(pika.URLParameters(broker.url))
    channel = conn.channel()
    channel.confirm_delivery()
    return channel


@pytest.fixture
def ch(broker: BrokerProcess) -> Iterator[BlockingChannel]:
    channel = connect(broker)
    yield channel
    if channel.connection.is_open:
        channel.connection.close()


@pytest.fixture
def names(ch: BlockingChannel, uid: str) -> Iterator[Callable[[str], str]]:
    yield from temporary_names(ch, "dd", uid)


def send(ch: BlockingChannel, exchange: str, key: str, value: Any, body: bytes = b"m",
         mandatory: bool = False, **headers: Any) -> None:
    """Publish with x-deduplication-header = value (None: no header); confirmed."""
    if value is not None:
        headers["x-deduplication-header"] = value
    ch.basic_publish(exchange, key, body, pika.BasicProperties(headers=headers or None),
                     mandatory=mandatory)


def bodies(ch: BlockingChannel, queue: str) -> list[bytes]:
    out = []
    while True:
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return out
        out.append(body)


def exchange_and_queue(ch: BlockingChannel, names: Callable[[str], str], type_name: str,
                       arguments: dict[str, Any]) -> tuple[str, str]:
    ex, q = names("x"), names("q")
    ch.exchange_declare(ex, type_name, arguments=arguments)
    ch.queue_declare(q)
    ch.queue_bind(q, ex, "k")
    return ex, q


def test_exchange_type_routes_as_fanout_and_drops_duplicates(
        ch: BlockingChannel, names: Callable[[str], str]) -> None:
    ex, q = exchange_and_queue(ch, names, "x-message-deduplication", {"x-cache-size": 10})
    send(ch, ex, "any-key", "a", b"1")  # confirmed
    send(ch, ex, "other", "a", b"2")  # a duplicate: confirmed too, not routed
    send(ch, ex, "", "b", b"3")
    send(ch, ex, "", None, b"4")  # no header: never a duplicate
    send(ch, ex, "", None, b"5")
    assert bodies(ch, q) == [b"1", b"3", b"4", b"5"]


def test_duplicate_is_unroutable_for_a_mandatory_publisher(
        ch: BlockingChannel, names: Callable[[str], str]) -> None:
    ex, q = exchange_and_queue(ch, names, "x-message-deduplication", {"x-cache-size": 10})
    send(ch, ex, "", "a", b"1", mandatory=True)
    with pytest.raises(pika.exceptions.UnroutableError) as caught:  # acked and returned,
        send(ch, ex, "", "a", b"2", mandatory=True)  # as with the plugin
    assert [m.body for m in caught.value.messages] == [b"2"]
    assert bodies(ch, q) == [b"1"]


def test_argument_on_any_exchange_type(ch: BlockingChannel,
                                       names: Callable[[str], str]) -> None:
    ex, q = exchange_and_queue(ch, names, "direct", {"x-message-deduplication": True})
    other = names("q2")
    ch.queue_declare(other)
    ch.queue_bind(other, ex, "k2")
    send(ch, ex, "k", 1, b"1")
    send(ch, ex, "k", 1, b"2")
    send(ch, ex, "k2", 1, b"3")  # the exchange saw it: not routed anywhere
    send(ch, ex, "k", "1", b"4")  # a string is not the integer 1
    assert bodies(ch, q) == [b"1", b"4"]
    assert bodies(ch, other) == []


def test_custom_header_size_and_ttl(ch: BlockingChannel, names: Callable[[str], str]) -> None:
    ex, q = exchange_and_queue(ch, names, "fanout", {
        "x-message-deduplication": True, "x-deduplication-header": "id", "x-cache-size": 2,
        "x-cache-ttl": 60_000})
    for value, body in (("a", b"1"), ("b", b"2"), ("a", b"3"), ("c", b"4"), ("b", b"5"),
                        ("a", b"6")):
        ch.basic_publish(ex, "", body, pika.BasicProperties(headers={"id": value}))
    # size 2: a, b cached; a seen (kept as recently used); c evicts b; b back evicts a...
    assert bodies(ch, q) == [b"1", b"2", b"4", b"5", b"6"]


def test_message_ttl_header_expires_the_entry(ch: BlockingChannel,
                                              names: Callable[[str], str]) -> None:
    ex, q = exchange_and_queue(ch, names, "x-message-deduplication", {"x-cache-size": 5})
    send(ch, ex, "", "a", b"1", **{"x-cache-ttl": 100})
    send(ch, ex, "", "a", b"2")
    time.sleep(0.3)
    send(ch, ex, "", "a", b"3")
    assert bodies(ch, q) == [b"1", b"3"]


@pytest.mark.parametrize(("type_name", "arguments", "text"), [
    ("x-message-deduplication", {},
     "Missing or invalid argument, 'x-cache-size' must be an integer greater than 0"),
    ("x-message-deduplication", {"x-cache-size": 0},
     "Missing or invalid argument, 'x-cache-size' must be an integer greater than 0"),
    ("x-message-deduplication", {"x-cache-size": 5, "x-cache-ttl": "soon"},
     "Invalid argument, 'x-cache-ttl' must be an integer greater than 0"),
    ("x-message-deduplication", {"x-cache-size": 5, "x-cache-persistence": "tape"},
     "Invalid argument, 'x-cache-persistence' must be either 'disk' or 'memory'"),
    ("topic", {"x-message-deduplication": "yes"},
     "Invalid argument, 'x-message-deduplication' must be a boolean"),
    ("topic", {"x-message-deduplication": True, "x-cache-size": -3},
     "Invalid argument, 'x-cache-size' must be an integer greater than 0"),
])
def test_bad_exchange_arguments_are_406(ch: BlockingChannel, names: Callable[[str], str],
                                        type_name: str, arguments: dict[str, Any],
                                        text: str) -> None:
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
        ch.exchange_declare(names("x"), type_name, arguments=arguments)
    assert (caught.value.reply_code, caught.value.reply_text) == (
        406, "PRECONDITION_FAILED - " + text)


def test_queue_drops_a_duplicate_while_the_first_is_in_it(
        ch: BlockingChannel, names: Callable[[str], str]) -> None:
    q = names("q")
    ch.queue_declare(q, arguments={"x-message-deduplication": True})
    send(ch, "", q, "a", b"1")
    send(ch, "", q, "a", b"2", mandatory=True)  # dropped silently: no return, acked
    send(ch, "", q, "b", b"3")
    assert ch.queue_declare(q, passive=True).method.message_count == 2
    method, _props, body = ch.basic_get(q)
    assert body == b"1"
    send(ch, "", q, "a", b"4")  # "a" is delivered, not acked: still a duplicate
    ch.basic_nack(method.delivery_tag, requeue=True)
    send(ch, "", q, "a", b"5")  # requeued: still in the queue
    method, _props, body = ch.basic_get(q)
    assert body == b"1"
    ch.basic_ack(method.delivery_tag)  # gone: the value may come again
    send(ch, "", q, "a", b"6")
    assert bodies(ch, q) == [b"3", b"6"]
    send(ch, "", q, "a", b"7")  # taken with no-ack above: gone as well
    ch.queue_purge(q)
    send(ch, "", q, "a", b"8")  # purge empties the cache
    assert bodies(ch, q) == [b"8"]


def test_bad_queue_arguments_are_406(ch: BlockingChannel, names: Callable[[str], str]) -> None:
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
        ch.queue_declare(names("q"), arguments={"x-message-deduplication": True,
                                                "x-cache-ttl": 0})
    assert (caught.value.reply_code, caught.value.reply_text) == (
        406, "PRECONDITION_FAILED - Invalid argument, 'x-cache-ttl' must be an integer "
             "greater than 0")


def test_disk_cache_survives_a_restart(broker_factory: Callable[..., BrokerProcess],
                                       tmp_path: Path) -> None:
    data = tmp_path / "data"
    broker = broker_factory(data_dir=data)
    ch = connect(broker)
    for name, persistence in (("disk", "disk"), ("mem", "memory")):
        ch.exchange_declare(name, "x-message-deduplication", durable=True, arguments={
            "x-cache-size": 10, "x-cache-persistence": persistence})
        ch.queue_declare(f"{name}.q", durable=True)
        ch.queue_bind(f"{name}.q", name)
        send(ch, name, "", "a", b"1")
    ch.queue_declare("dq", durable=True, arguments={"x-message-deduplication": True})
    ch.basic_publish("", "dq", b"p", pika.BasicProperties(
        delivery_mode=2, headers={"x-deduplication-header": "p"}))
    ch.connection.close()
    broker.stop()
    broker = broker_factory(data_dir=data)
    ch = connect(broker)
    for name in ("disk", "mem"):
        send(ch, name, "", "a", b"2")
        send(ch, name, "", "b", b"3")
    # only the disk cache remembers "a" (the queues are not durable-message queues here:
    # their messages were transient and are gone)
    assert bodies(ch, "disk.q") == [b"3"]
    assert bodies(ch, "mem.q") == [b"2", b"3"]
    # a deduplicating queue's cache is rebuilt from its recovered messages
    ch.basic_publish("", "dq", b"q", pika.BasicProperties(
        delivery_mode=2, headers={"x-deduplication-header": "p"}))
    assert bodies(ch, "dq") == [b"p"]
    ch.exchange_delete("disk")
    ch.connection.close()
    assert not list((data / "dedup").glob("exchange-*"))  # deleted with its exchange


# --- the cache, without sockets ---------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cache_evicts_the_least_recently_seen_and_expires() -> None:
    clock = Clock()
    cache = dedup.Cache(2, 1000, clock=clock)
    a, b, c = ("s", "a"), ("s", "b"), ("s", "c")
    assert not cache.seen(a) and not cache.seen(b)
    assert cache.seen(a)  # a is now the most recently seen
    assert not cache.seen(c)  # evicts b
    assert b not in cache and a in cache and c in cache
    clock.now += 1.5
    assert not cache.seen(a)  # expired: new again
    assert not cache.seen(b, ttl_ms=10_000)
    clock.now += 5
    assert cache.seen(b) and a not in cache


def test_journal_replays_and_compacts(tmp_path: Path) -> None:
    clock = Clock()
    path = str(tmp_path / "dedup" / "x.log")
    cache = dedup.Cache(3, None, dedup.Journal(path), clock=clock)
    for i in range(500):
        cache.seen(("i", i))
    cache.seen(("b", b"\x00".hex()), ttl_ms=1000)
    cache.discard(("i", 499))
    lines = Path(path).read_text().splitlines()
    assert len(lines) <= dedup.COMPACT_FACTOR * (3 + 64) + 1  # rewritten along the way
    again = dedup.Cache(3, None, dedup.Journal(path), clock=clock)
    assert list(again.entries) == [("i", 498), ("b", "00")]
    clock.now += 2
    assert list(dedup.Cache(3, None, dedup.Journal(path), clock=clock).entries) == [
        ("i", 498)]
    Path(path).write_text(Path(path).read_text() + '["+", "s"')  # a torn last line
    assert list(dedup.Cache(3, None, dedup.Journal(path), clock=clock).entries) == [
        ("i", 498)]


def test_header_values_that_deduplicate() -> None:
    assert dedup.key_of("a") == ("s", "a")
    assert dedup.key_of(1) != dedup.key_of("1") and dedup.key_of(True) != dedup.key_of(1)
    assert dedup.key_of({"a": 1}) is None and dedup.key_of([1]) is None


def test_a_failing_journal_leaves_the_cache_in_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    errors: list[str] = []
    journal = dedup.Journal(str(blocker / "dedup" / "x.log"), errors.append)
    cache = dedup.Cache(3, None, journal)
    assert journal.failed and len(errors) == 1 and "x.log" in errors[0]
    assert not cache.seen(("s", "a")) and cache.seen(("s", "a"))
    assert len(errors) == 1  # logged once
    garbage = tmp_path / "garbage.log"
    garbage.write_bytes(b"\xff\xfe\x00 not json\n")
    assert dedup.Cache(3, None, dedup.Journal(str(garbage))).entries == {}
