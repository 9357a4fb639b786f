"""Queue units without sockets: a Broker (in-memory store), its vhost, and a fake
delivery target standing in for Channel.

What a Queue hands out is observed on the fake channel; time is passed in explicitly
(`expire(now)`), never slept. Expected behaviour is RabbitMQ 3.10's (the overflow
cases were checked against it).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from amqp_broker import pipeline
from amqp_broker.broker import Broker
from amqp_broker.config import Config
from amqp_broker.protocol import fast
from amqp_broker.queue import Consumer, Message, Queue
from amqp_broker.vhost import VHost

CLIENT = object()  # the connection a declare comes from


class FakeChannel:
    """The delivery target a queue talks to (what Channel implements), recording what it
    is handed and settling like Channel.apply_settle does."""

    def __init__(self, global_prefetch: int = 0) -> None:
        self.global_prefetch = global_prefetch
        self.blocked = False  # the connection's socket is full
        self.deliveries: list[tuple[str, bytes, bool]] = []  # (consumer tag, body, redelivered)
        self.unacked: list[tuple[Consumer, Queue, Message]] = []
        self.cancelled: list[str] = []

    # the protocol Queue and Consumer use
    def can_deliver(self) -> bool:
        return not self.blocked and (not self.global_prefetch
                                     or len(self.unacked) < self.global_prefetch)

    def can_deliver_noack(self) -> bool:
        return not self.blocked

    def deliver(self, consumer: Consumer, queue: Queue, msg: Message, redelivered: bool,
                body: bytes | None = None) -> None:
        self.deliveries.append((consumer.tag, msg.body if body is None else body, redelivered))
        if not consumer.no_ack:
            self.unacked.append((consumer, queue, msg))
            consumer.unacked += 1
            queue.unacked += 1

    def cancel_by_server(self, consumer: Consumer) -> None:
        self.cancelled.append(consumer.tag)

    # what the tests do as a client would
    def consumer(self, queue: Queue, tag: str, prefetch: int = 0, priority: int = 0,
                 no_ack: bool = False) -> Consumer:
        c = Consumer(self, tag, fast.shortstr(tag), queue, no_ack, False, prefetch, priority, {})
        queue.add_consumer(c)
        return c

    def settle(self, bodies: list[bytes] | None = None, requeue: bool = False,
               drop: bool = False) -> None:
        """Ack (or requeue, or reject without requeue) the unacked deliveries with these
        bodies (all when None), then let the queues dispatch again."""
        taken = [d for d in self.unacked if bodies is None or d[2].body in bodies]
        self.unacked = [d for d in self.unacked if d not in taken]
        back: dict[Queue, list[Message]] = {}
        for consumer, queue, msg in taken:
            consumer.unacked -= 1
            queue.unacked -= 1
            if requeue:
                back.setdefault(queue, []).append(msg)
            elif drop:
                queue.dead_letter_settled([msg])
        for queue, msgs in back.items():
            queue.requeue(msgs)
        for queue in {q for _, q, _ in taken}:
            if queue.ready and queue.consumers:
                queue.dispatch()

    def bodies(self, tag: str | None = None) -> list[bytes]:
        return [b for t, b, _ in self.deliveries if tag is None or t == tag]


def make_vhost() -> VHost:
    return Broker(Config(data_dir=None)).vhosts["/"]


def declare(vhost: VHost, name: str, **arguments: Any) -> Queue:
    q, created = vhost.declare_queue(name, False, False, False, False, arguments, CLIENT)
    assert created
    return q


def publish(vhost: VHost, routing_key: str, body: bytes, exchange: str = "",
            props: bytes = b"", at: float | None = None,
            expiration: float | None = None) -> list[Queue]:
    """What Channel.publish does after decoding: route, then the one publish pipeline
    (overflow, TTL stamp, enqueue). `at` is the publish time (monotonic seconds) a TTL
    counts from; `expiration` a per-message TTL in seconds. Returns the queues that
    take it (those whose overflow policy does not refuse it)."""
    ex = vhost.exchanges[exchange]
    queues = list(vhost.route(ex, routing_key, lambda: fast.message_headers(props)))
    accepting = [q for q in queues if not q.refuses(len(body))]
    pipeline.publish(vhost, exchange, fast.shortstr(exchange), routing_key,
                     fast.shortstr(routing_key), props, body, queues, expiration, now=at)
    return accepting


def ready_bodies(q: Queue) -> list[bytes | None]:
    return [m.body for m in q.ready]


def get_all(q: Queue) -> list[tuple[bytes, bool]]:
    """basic.get until empty: (body, redelivered)."""
    out = []
    while (got := q.take()) is not None:
        out.append((got[0].body, got[1]))
    return out


# --- contents ----------------------------------------------------------------------------

def test_enqueue_keeps_publish_order() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q")
    for i in range(5):
        publish(vhost, "q", b"m%d" % i)
    assert q.message_count == 5
    assert q.ready_bytes == 10
    assert get_all(q) == [(b"m%d" % i, False) for i in range(5)]
    assert q.message_count == 0 and q.ready_bytes == 0
    assert q.take() is None


def test_one_message_routed_to_two_queues_is_shared() -> None:
    vhost = make_vhost()
    a, b = declare(vhost, "a"), declare(vhost, "b")
    vhost.bind(vhost.exchanges["amq.fanout"], a, "", {})
    vhost.bind(vhost.exchanges["amq.fanout"], b, "", {})
    assert set(publish(vhost, "", b"x", exchange="amq.fanout")) == {a, b}
    assert a.ready[0] is b.ready[0]
    assert a.take()[0].exchange == "amq.fanout"  # type: ignore[index]
    assert b.message_count == 1


def test_purge_drops_ready_messages_only() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q")
    ch = FakeChannel()
    for body in (b"a", b"b", b"c"):
        publish(vhost, "q", body)
    ch.consumer(q, "c", prefetch=1)
    assert q.purge() == 2
    assert q.message_count == 0 and q.ready_bytes == 0
    assert q.unacked == 1


# --- dispatch ----------------------------------------------------------------------------

def test_dispatch_stops_at_consumer_prefetch_and_resumes_on_ack() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q")
    ch = FakeChannel()
    ch.consumer(q, "c", prefetch=2)
    for i in range(5):
        publish(vhost, "q", b"%d" % i)
    assert ch.bodies() == [b"0", b"1"]
    assert q.message_count == 3 and q.unacked == 2
    ch.settle([b"0"])
    assert ch.bodies() == [b"0", b"1", b"2"]
    ch.settle()
    ch.settle()
    assert ch.bodies() == [b"0", b"1", b"2", b"3", b"4"]
    assert q.message_count == 0


def test_dispatch_waits_for_channel_credit() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q")
    ch = FakeChannel(global_prefetch=1)
    ch.consumer(q, "c")
    ch.blocked = True
    publish(vhost, "q", b"a")
    publish(vhost, "q", b"b")
    assert ch.deliveries == [] and q.message_count == 2
    ch.blocked = False
    q.dispatch()
    assert ch.bodies() == [b"a"]  # the channel's prefetch of 1
    ch.settle()
    assert ch.bodies() == [b"a", b"b"]


def test_no_ack_consumer_ignores_prefetch() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q")
    ch = FakeChannel(global_prefetch=1)
    ch.consumer(q, "c", prefetch=1, no_ack=True)
    for i in range(3):
        publish(vhost, "q", b"%d" % i)
    assert ch.bodies() == [b"0", b"1", b"2"]
    assert ch.unacked == [] and q.unacked == 0


def test_consumers_are_served_round_robin() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q")
    ch = FakeChannel()
    for tag in ("a", "b", "c"):
        ch.consumer(q, tag)
    for i in range(7):
        publish(vhost, "q", b"%d" % i)
    assert [t for t, _, _ in ch.deliveries] == ["a", "b", "c", "a", "b", "c", "a"]


def test_round_robin_skips_a_consumer_without_credit() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q")
    ch = FakeChannel()
    ch.consumer(q, "a", prefetch=1)
    ch.consumer(q, "b")
    for i in range(4):
        publish(vhost, "q", b"%d" % i)
    assert [t for t, _, _ in ch.deliveries] == ["a", "b", "b", "b"]


def test_backlog_is_shared_round_robin_when_consumers_join() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q")
    for i in range(4):
        publish(vhost, "q", b"%d" % i)
    ch = FakeChannel()
    ch.consumer(q, "a", prefetch=1)  # takes the head at once
    ch.consumer(q, "b", prefetch=2)
    assert [(t, b) for t, b, _ in ch.deliveries] == [("a", b"0"), ("b", b"1"), ("b", b"2")]
    ch.settle([b"0"])
    assert ch.deliveries[-1][:2] == ("a", b"3")


def test_higher_priority_consumer_first_lower_when_it_is_full() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q")
    ch = FakeChannel()
    ch.consumer(q, "low", priority=0)
    ch.consumer(q, "high", prefetch=2, priority=10)
    for i in range(4):
        publish(vhost, "q", b"%d" % i)
    assert [t for t, _, _ in ch.deliveries] == ["high", "high", "low", "low"]
    ch.settle([b"0"])  # high has room again
    publish(vhost, "q", b"4")
    assert ch.deliveries[-1][:2] == ("high", b"4")


def test_equal_priorities_share_round_robin() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q")
    ch = FakeChannel()
    ch.consumer(q, "low", priority=-1)
    ch.consumer(q, "x", priority=5)
    ch.consumer(q, "y", priority=5)
    for i in range(4):
        publish(vhost, "q", b"%d" % i)
    assert [t for t, _, _ in ch.deliveries] == ["x", "y", "x", "y"]


def test_single_active_consumer_gets_everything() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q", **{"x-single-active-consumer": True})
    ch = FakeChannel()
    first = ch.consumer(q, "first", prefetch=2)
    ch.consumer(q, "second")
    for i in range(3):
        publish(vhost, "q", b"%d" % i)
    assert ch.bodies("first") == [b"0", b"1"] and ch.bodies("second") == []
    q.remove_consumer(first)
    q.dispatch()
    assert ch.bodies("second") == [b"2"]


def test_removed_consumer_gets_nothing_more() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q")
    ch = FakeChannel()
    a = ch.consumer(q, "a")
    ch.consumer(q, "b")
    q.remove_consumer(a)
    for i in range(2):
        publish(vhost, "q", b"%d" % i)
    assert [t for t, _, _ in ch.deliveries] == ["b", "b"]


def test_deleting_the_queue_cancels_its_consumers() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q")
    ch = FakeChannel()
    ch.consumer(q, "a")
    publish(vhost, "q", b"x")
    assert vhost.delete_queue(q) == 0
    assert ch.cancelled == ["a"] and "q" not in vhost.queues
    assert publish(vhost, "q", b"y") == []


# --- requeue -----------------------------------------------------------------------------

def test_requeue_restores_original_order_marked_redelivered() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q")
    ch = FakeChannel()
    c = ch.consumer(q, "c", prefetch=3)
    for i in range(5):
        publish(vhost, "q", b"%d" % i)
    assert ch.bodies() == [b"0", b"1", b"2"]
    q.remove_consumer(c)  # so the requeued messages stay ready
    ch.settle([b"2", b"0"], requeue=True)
    ch.settle([b"1"], requeue=True)
    assert ready_bodies(q) == [b"0", b"1", b"2", b"3", b"4"]
    assert q.unacked == 0 and q.ready_bytes == 5
    assert get_all(q) == [(b"0", True), (b"1", True), (b"2", True), (b"3", False),
                          (b"4", False)]


def test_requeued_message_is_redelivered_to_a_consumer_first() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q")
    ch = FakeChannel()
    ch.consumer(q, "c", prefetch=1)
    for i in range(3):
        publish(vhost, "q", b"%d" % i)
    ch.settle(requeue=True)
    assert ch.deliveries == [("c", b"0", False), ("c", b"0", True)]
    ch.settle()
    assert ch.deliveries[-1] == ("c", b"1", False)


def test_requeue_into_a_priority_queue_keeps_each_level_in_order() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q", **{"x-max-priority": 5})

    def prio(p: int) -> bytes:
        return fast.encode_properties(fast.Properties(priority=p))

    for body, p in ((b"a0", 0), (b"b3", 3), (b"c3", 3), (b"d9", 9), (b"e1", 1)):
        publish(vhost, "q", body, props=prio(p))
    assert ready_bodies(q) == [b"d9", b"b3", b"c3", b"e1", b"a0"]
    taken = [q.take(), q.take(), q.take()]
    q.requeue([t[0] for t in reversed(taken) if t is not None])
    assert get_all(q) == [(b"d9", True), (b"b3", True), (b"c3", True), (b"e1", False),
                          (b"a0", False)]


# --- TTL -------------------------------------------------------------------------------
# Publish times are real monotonic seconds and TTLs a minute long, so the queue's own
# expiry checks (at dispatch and get, with the real clock) never fire during a test;
# expiry is driven by expire(now) with explicit times.

def test_queue_ttl_expires_messages_at_the_head_when_due() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q", **{"x-message-ttl": 60_000})
    t = time.monotonic()
    publish(vhost, "q", b"a", at=t)
    publish(vhost, "q", b"b", at=t + 1)
    q.expire(now=t + 59.999)
    assert q.message_count == 2
    q.expire(now=t + 60)
    assert ready_bodies(q) == [b"b"]
    q.expire(now=t + 61)
    assert ready_bodies(q) == [] and q.ready_bytes == 0


def test_per_message_expiration_waits_for_the_head() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q")
    t = time.monotonic()
    publish(vhost, "q", b"long", at=t, expiration=120)
    publish(vhost, "q", b"short", at=t, expiration=60)
    q.expire(now=t + 90)
    assert ready_bodies(q) == [b"long", b"short"]  # only the head is looked at
    q.expire(now=t + 120)
    assert ready_bodies(q) == []


def test_the_shorter_of_queue_ttl_and_expiration_wins() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q", **{"x-message-ttl": 100_000})
    t = time.monotonic()
    publish(vhost, "q", b"own", at=t, expiration=60)
    publish(vhost, "q", b"queue", at=t, expiration=200)
    q.expire(now=t + 60)
    assert ready_bodies(q) == [b"queue"]
    q.expire(now=t + 99)
    assert ready_bodies(q) == [b"queue"]
    q.expire(now=t + 100)
    assert ready_bodies(q) == []


def test_expired_requeued_message_is_dropped_at_the_head() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q", **{"x-message-ttl": 60_000})
    t = time.monotonic()
    publish(vhost, "q", b"a", at=t)
    got = q.take()
    assert got is not None
    q.requeue([got[0]])
    q.expire(now=t + 60)
    assert q.message_count == 0


def test_priority_queue_expires_only_at_its_overall_head() -> None:
    # as RabbitMQ 3.10 (checked with pika): an expired low-priority message behind an
    # unexpired high-priority one stays counted until the high one is gone
    vhost = make_vhost()
    q = declare(vhost, "q", **{"x-max-priority": 5})
    t = time.monotonic()
    publish(vhost, "q", b"low", props=fast.encode_properties(fast.Properties(priority=1)),
            at=t, expiration=60)
    publish(vhost, "q", b"high", props=fast.encode_properties(fast.Properties(priority=5)),
            at=t)
    q.expire(now=t + 61)
    assert ready_bodies(q) == [b"high", b"low"]
    got = q.take()
    assert got is not None and got[0].body == b"high"
    q.expire(now=t + 61)
    assert q.message_count == 0


@pytest.mark.parametrize("queue_ttl", [None, 0])
def test_ttl_zero_message_goes_to_a_waiting_consumer(queue_ttl: int | None) -> None:
    vhost = make_vhost()
    args = {} if queue_ttl is None else {"x-message-ttl": queue_ttl}
    q = declare(vhost, "q", **args)
    ch = FakeChannel()
    ch.consumer(q, "c")
    publish(vhost, "q", b"now", at=time.monotonic(), expiration=0 if queue_ttl is None else None)
    assert ch.bodies() == [b"now"]


def test_ttl_zero_message_without_consumer_expires() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q")
    publish(vhost, "q", b"now", at=time.monotonic(), expiration=0)
    assert q.message_count == 0


# --- length limits -----------------------------------------------------------------------

def test_max_length_drops_the_head() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q", **{"x-max-length": 2})
    for i in range(4):
        assert publish(vhost, "q", b"%d" % i) == [q]
    assert ready_bodies(q) == [b"2", b"3"]
    assert q.ready_bytes == 2


def test_max_length_counts_ready_messages_only() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q", **{"x-max-length": 1})
    ch = FakeChannel()
    ch.consumer(q, "c", prefetch=2)
    for i in range(4):
        publish(vhost, "q", b"%d" % i)
    assert ch.bodies() == [b"0", b"1"]
    assert ready_bodies(q) == [b"3"]


def test_max_length_bytes_drops_the_head() -> None:
    # RabbitMQ 3.10: 4+4+4+4+2 bytes into 10 keeps [cccc, dddd, ee]
    vhost = make_vhost()
    q = declare(vhost, "q", **{"x-max-length-bytes": 10})
    for body in (b"aaaa", b"bbbb", b"cccc", b"dddd", b"ee"):
        publish(vhost, "q", body)
    assert ready_bodies(q) == [b"cccc", b"dddd", b"ee"]
    assert q.ready_bytes == 10
    small = declare(vhost, "small", **{"x-max-length-bytes": 3})
    for body in (b"aaaa", b"ee"):
        publish(vhost, "small", body)
    assert ready_bodies(small) == [b"ee"]


def test_reject_publish_refuses_when_full() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q", **{"x-max-length": 2, "x-overflow": "reject-publish"})
    taken = [publish(vhost, "q", b"%d" % i) for i in range(4)]
    assert taken == [[q], [q], [], []]
    assert ready_bodies(q) == [b"0", b"1"]
    q.take()
    assert publish(vhost, "q", b"4") == [q]
    assert ready_bodies(q) == [b"1", b"4"]


def test_reject_publish_by_bytes_counts_the_incoming_message() -> None:
    # RabbitMQ 3.10: aaaa, bbbb accepted; cccc, dddd refused (8 + 4 > 10); ee accepted (= 10)
    vhost = make_vhost()
    q = declare(vhost, "q", **{"x-max-length-bytes": 10, "x-overflow": "reject-publish"})
    taken = [bool(publish(vhost, "q", b)) for b in (b"aaaa", b"bbbb", b"cccc", b"dddd", b"ee")]
    assert taken == [True, True, False, False, True]
    assert ready_bodies(q) == [b"aaaa", b"bbbb", b"ee"]


def test_drop_head_queue_never_refuses() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q", **{"x-max-length": 0})
    assert not q.refuses(10)
    assert publish(vhost, "q", b"x") == [q]
    assert q.message_count == 0
