"""Dead-lettering without sockets: rejected, expired and length-limited messages are
republished to the queue's dead-letter exchange with RabbitMQ 3.10's x-death history.

Queues are driven directly (take, dead_letter_settled, expire(now)); the dead letters
are read back from the dead-letter queues and their properties decoded.
"""

from __future__ import annotations

import time
from typing import Any

from amqp_broker.broker import Broker
from amqp_broker.config import Config
from amqp_broker.protocol import fast
from amqp_broker.queue import Message, Queue
from amqp_broker.vhost import VHost
from tests.test_queue import publish  # the one publish path, as Channel.publish uses it

CLIENT = object()
TTL = 60  # seconds: the queues' own expiry checks (real clock) never fire in a test


def make_vhost() -> VHost:
    return Broker(Config(data_dir=None)).vhosts["/"]


def declare(vhost: VHost, name: str, **arguments: Any) -> Queue:
    return vhost.declare_queue(name, False, False, False, False, arguments, CLIENT)[0]


def dlx_setup(vhost: VHost, **arguments: Any) -> tuple[Queue, Queue]:
    """A queue "q" dead-lettering to a fanout exchange "dlx" bound to queue "dlq"."""
    ex = vhost.declare_exchange("dlx", "fanout", False, False, False, False, {})
    dlq = declare(vhost, "dlq")
    vhost.bind(ex, dlq, "", {})
    q = declare(vhost, "q", **{"x-dead-letter-exchange": "dlx", **arguments})
    return q, dlq


def reject(q: Queue) -> Message:
    """basic.get, then basic.reject requeue=false."""
    got = q.take()
    assert got is not None
    q.dead_letter_settled([got[0]])
    return got[0]


def letters(q: Queue) -> list[tuple[Message, fast.Properties]]:
    return [(m, fast.decode_properties(m.properties)) for m in q.ready]


def death_view(props: fast.Properties) -> list[dict[str, Any]]:
    assert props.headers is not None
    return [{k: v for k, v in d.items() if k != "time"} for d in props.headers["x-death"]]


def first_death(props: fast.Properties) -> tuple[Any, Any, Any]:
    h = props.headers
    assert h is not None
    return h["x-first-death-queue"], h["x-first-death-reason"], h["x-first-death-exchange"]


# --- reasons -----------------------------------------------------------------------------

def test_rejected_message_is_dead_lettered_with_x_death() -> None:
    vhost = make_vhost()
    q, dlq = dlx_setup(vhost)
    props = fast.encode_properties(fast.Properties(
        message_id="m1", headers={"keep": "me"}, timestamp=2**62))
    vhost.bind(vhost.exchanges["amq.direct"], q, "rk", {})
    publish(vhost, "rk", b"body", exchange="amq.direct", props=props)
    reject(q)
    assert q.message_count == 0
    [(msg, p)] = letters(dlq)
    assert msg.body == b"body"
    assert (msg.exchange, msg.routing_key) == ("dlx", "rk")
    assert p.message_id == "m1" and p.timestamp == 2**62
    assert p.headers is not None and p.headers["keep"] == "me"
    assert death_view(p) == [{"count": 1, "reason": "rejected", "queue": "q",
                              "exchange": "amq.direct", "routing-keys": ["rk"]}]
    assert isinstance(p.headers["x-death"][0]["time"], int)
    assert first_death(p) == ("q", "rejected", "amq.direct")


def test_no_dead_letter_exchange_drops_the_message() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q")
    other = declare(vhost, "other")
    publish(vhost, "q", b"x")
    reject(q)
    assert q.message_count == 0 and other.message_count == 0


def test_missing_dead_letter_exchange_drops_the_message() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q", **{"x-dead-letter-exchange": "nowhere"})
    publish(vhost, "q", b"x")
    reject(q)
    assert q.message_count == 0
    assert all(x.message_count == 0 for x in vhost.queues.values())


def test_dead_letter_routing_key_replaces_the_key() -> None:
    vhost = make_vhost()
    dlq = declare(vhost, "dlq")
    other = declare(vhost, "orig")
    q = declare(vhost, "q", **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlq"})
    publish(vhost, "q", b"x")
    reject(q)
    [(msg, p)] = letters(dlq)
    assert msg.routing_key == "dlq" and msg.exchange == ""
    assert death_view(p)[0]["routing-keys"] == ["q"]  # the key it was published with
    assert other.message_count == 0


def test_expired_messages_are_dead_lettered_in_order() -> None:
    vhost = make_vhost()
    q, dlq = dlx_setup(vhost, **{"x-message-ttl": TTL * 1000})
    for body in (b"a", b"b"):
        publish(vhost, "q", body)
    q.expire(now=time.monotonic() + TTL + 1)
    assert q.message_count == 0
    got = letters(dlq)
    assert [m.body for m, _ in got] == [b"a", b"b"]
    assert death_view(got[0][1]) == [{"count": 1, "reason": "expired", "queue": "q",
                                      "exchange": "", "routing-keys": ["q"]}]
    assert first_death(got[1][1]) == ("q", "expired", "")


def test_per_message_expiration_moves_to_original_expiration() -> None:
    vhost = make_vhost()
    q, dlq = dlx_setup(vhost)
    props = fast.encode_properties(fast.Properties(expiration=str(TTL * 1000)))
    publish(vhost, "q", b"x", props=props, expiration=TTL)
    q.expire(now=time.monotonic() + TTL + 1)
    [(_, p)] = letters(dlq)
    assert p.expiration is None
    assert death_view(p) == [{"count": 1, "reason": "expired", "queue": "q", "exchange": "",
                              "routing-keys": ["q"], "original-expiration": str(TTL * 1000)}]


def test_max_length_drop_head_dead_letters_as_maxlen() -> None:
    vhost = make_vhost()
    q, dlq = dlx_setup(vhost, **{"x-max-length": 1})
    for body in (b"a", b"b", b"c"):
        publish(vhost, "q", body)
    assert [m.body for m in q.ready] == [b"c"]
    got = letters(dlq)
    assert [m.body for m, _ in got] == [b"a", b"b"]
    assert [death_view(p)[0]["reason"] for _, p in got] == ["maxlen", "maxlen"]


def test_max_length_bytes_drop_head_dead_letters_as_maxlen() -> None:
    vhost = make_vhost()
    q, dlq = dlx_setup(vhost, **{"x-max-length-bytes": 5})
    for body in (b"aaa", b"bbb", b"c"):
        publish(vhost, "q", body)
    assert [m.body for m in q.ready] == [b"bbb", b"c"]
    assert [(m.body, death_view(p)[0]["reason"]) for m, p in letters(dlq)] == \
        [(b"aaa", "maxlen")]


def test_reject_publish_dlx_dead_letters_the_refused_message() -> None:
    vhost = make_vhost()
    q, dlq = dlx_setup(vhost, **{"x-max-length": 1, "x-overflow": "reject-publish-dlx"})
    assert publish(vhost, "q", b"first") == [q]
    assert publish(vhost, "q", b"second") == []
    assert [m.body for m in q.ready] == [b"first"]
    [(msg, p)] = letters(dlq)
    assert msg.body == b"second"
    assert death_view(p) == [{"count": 1, "reason": "maxlen", "queue": "q", "exchange": "",
                              "routing-keys": ["q"]}]


def test_reject_publish_without_dlx_suffix_does_not_dead_letter() -> None:
    vhost = make_vhost()
    q, dlq = dlx_setup(vhost, **{"x-max-length": 1, "x-overflow": "reject-publish"})
    publish(vhost, "q", b"first")
    assert publish(vhost, "q", b"second") == []
    assert dlq.message_count == 0


# --- history -----------------------------------------------------------------------------

def test_same_queue_and_reason_counts_up_in_one_entry() -> None:
    vhost = make_vhost()
    # q dead-letters to itself: a rejection is never a cycle
    q = declare(vhost, "q", **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "q"})
    publish(vhost, "q", b"x")
    reject(q)
    reject(q)
    reject(q)
    [(msg, p)] = letters(q)
    assert msg.body == b"x"
    assert death_view(p) == [{"count": 3, "reason": "rejected", "queue": "q", "exchange": "",
                              "routing-keys": ["q"]}]
    assert first_death(p) == ("q", "rejected", "")


def test_deaths_in_two_queues_are_listed_newest_first() -> None:
    # as RabbitMQ 3.10 (checked with pika): the second entry names the exchange and key
    # the first dead-lettering republished with
    vhost = make_vhost()
    final = declare(vhost, "final")
    hop = vhost.declare_exchange("dlx1", "direct", False, False, False, False, {})
    second = declare(vhost, "second", **{
        "x-message-ttl": TTL * 1000, "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "final"})
    vhost.bind(hop, second, "hop", {})
    first = declare(vhost, "first", **{
        "x-dead-letter-exchange": "dlx1", "x-dead-letter-routing-key": "hop"})
    publish(vhost, "first", b"x")
    reject(first)
    assert second.message_count == 1
    second.expire(now=time.monotonic() + TTL + 1)
    [(msg, p)] = letters(final)
    assert (msg.body, msg.exchange, msg.routing_key) == (b"x", "", "final")
    assert death_view(p) == [
        {"count": 1, "reason": "expired", "queue": "second", "exchange": "dlx1",
         "routing-keys": ["hop"]},
        {"count": 1, "reason": "rejected", "queue": "first", "exchange": "",
         "routing-keys": ["first"]}]
    assert first_death(p) == ("first", "rejected", "")


def test_expiry_cycle_back_to_the_same_queue_is_dropped() -> None:
    vhost = make_vhost()
    q = declare(vhost, "q", **{"x-message-ttl": TTL * 1000, "x-dead-letter-exchange": "",
                               "x-dead-letter-routing-key": "q"})
    publish(vhost, "q", b"x")
    q.expire(now=time.monotonic() + TTL + 1)
    assert q.message_count == 0


def test_dead_letters_follow_the_dead_letter_exchange_type() -> None:
    vhost = make_vhost()
    topic = vhost.declare_exchange("dlx", "topic", False, False, False, False, {})
    hits = declare(vhost, "hits")
    misses = declare(vhost, "misses")
    vhost.bind(topic, hits, "orders.#", {})
    vhost.bind(topic, misses, "other.*", {})
    q = declare(vhost, "q", **{"x-dead-letter-exchange": "dlx"})
    vhost.bind(vhost.exchanges["amq.direct"], q, "orders.eu.new", {})
    publish(vhost, "orders.eu.new", b"x", exchange="amq.direct")
    reject(q)
    assert [m.body for m in hits.ready] == [b"x"] and misses.message_count == 0


def test_headers_dead_letter_exchange_sees_the_x_death_headers() -> None:
    # as RabbitMQ 3.10: all-with-x bindings match on the x-first-death-* headers
    vhost = make_vhost()
    hx = vhost.declare_exchange("dlx", "headers", False, False, False, False, {})
    hit, miss = declare(vhost, "hit"), declare(vhost, "miss")
    vhost.bind(hx, hit, "", {"x-match": "all-with-x", "x-first-death-reason": "rejected",
                             "kind": "order"})
    vhost.bind(hx, miss, "", {"x-match": "all-with-x", "x-first-death-reason": "expired",
                              "kind": "order"})
    q = declare(vhost, "q", **{"x-dead-letter-exchange": "dlx"})
    props = fast.encode_properties(fast.Properties(headers={"kind": "order"}))
    publish(vhost, "q", b"x", props=props)
    reject(q)
    assert [m.body for m in hit.ready] == [b"x"] and miss.message_count == 0


def test_x_death_count_is_a_long_as_in_rabbitmq() -> None:
    vhost = make_vhost()
    q, dlq = dlx_setup(vhost)
    publish(vhost, "q", b"x")
    reject(q)
    [msg] = list(dlq.ready)
    assert b"\x05countl" + (1).to_bytes(8, "big") in msg.properties


def test_persistent_dead_letter_is_stored_for_a_durable_queue() -> None:
    vhost = make_vhost()
    store = vhost.broker.store
    durable, _ = vhost.declare_queue("durable-dlq", False, True, False, False, {}, CLIENT)
    q = declare(vhost, "q", **{"x-dead-letter-exchange": "",
                               "x-dead-letter-routing-key": "durable-dlq"})
    props = fast.encode_properties(fast.Properties(delivery_mode=2))
    publish(vhost, "q", b"keep", props=props)
    assert store.stored_messages == 0  # q is transient: nothing stored yet
    reject(q)
    [msg] = list(durable.ready)
    assert msg.stored and store.read_body(msg.msg_id) == b"keep"
    assert fast.delivery_mode(msg.properties) == 2
