"""x-delivery-limit and x-delivery-count (amqp_broker/delivery_limit.py, queue_extras.py),
driven by pika: what RabbitMQ 3.10's quorum queues do, and the same on classic queues.

`AMQP_TEST_PORT=5673 python -m pytest tests/test_delivery_limit.py` runs the quorum
tests against the reference RabbitMQ (the classic-queue ones are skipped there: RabbitMQ
refuses x-delivery-limit on classic queues).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from tests.helpers import BrokerProcess, temporary_names

ON_RABBITMQ = bool(os.environ.get("AMQP_TEST_PORT"))
QUORUM = {"x-queue-type": "quorum"}
TYPES = [pytest.param(QUORUM, id="quorum"),
         pytest.param({}, id="classic",
                      marks=pytest.mark.skipif(ON_RABBITMQ, reason="RabbitMQ: quorum only"))]


@pytest.fixture
def ch(broker: BrokerProcess) -> Iterator[BlockingChannel]:
    conn = pika.BlockingConnection(pika.URLParameters(broker.url))
    channel = conn.channel()
    channel.confirm_delivery()
    yield channel
    if conn.is_open:
        conn.close()


@pytest.fixture
def names(ch: BlockingChannel, uid: str) -> Iterator[Callable[[str], str]]:
    yield from temporary_names(ch, "dl", uid)


def get(ch: BlockingChannel, queue: str, tries: int = 100) -> tuple[Any, Any, bytes]:
    """basic.get, waiting a little for a message that is on its way (RabbitMQ's quorum
    queues apply a return asynchronously)."""
    for _ in range(tries):
        method, props, body = ch.basic_get(queue)
        if method is not None:
            return method, props, body
        time.sleep(0.02)
    return None, None, b""


def count(ch: BlockingChannel, queue: str) -> int:
    return int(ch.queue_declare(queue, passive=True).method.message_count)


def with_dlx(ch: BlockingChannel, names: Callable[[str], str], arguments: dict[str, Any],
             limit: int) -> tuple[str, str]:
    dlx, dlq, q = names("dlx"), names("dlq"), names("q")
    ch.exchange_declare(dlx, "fanout")
    ch.queue_declare(dlq)
    ch.queue_bind(dlq, dlx)
    ch.queue_declare(q, durable=True, arguments={**arguments, "x-delivery-limit": limit,
                                                 "x-dead-letter-exchange": dlx})
    return q, dlq


@pytest.mark.parametrize("arguments", TYPES)
def test_get_counts_returns_then_dead_letters(ch: BlockingChannel,
                                              names: Callable[[str], str],
                                              arguments: dict[str, Any]) -> None:
    q, dlq = with_dlx(ch, names, arguments, 2)
    ch.basic_publish("", q, b"m1", pika.BasicProperties(headers={"h": 1}))
    seen = []
    for _ in range(3):
        method, props, _body = get(ch, q)
        assert method is not None
        seen.append((method.redelivered, props.headers))
        ch.basic_reject(method.delivery_tag, requeue=True)
    # basic.get always carries the count (0 the first time), as quorum queues do
    assert seen == [(False, {"h": 1, "x-delivery-count": 0}),
                    (True, {"h": 1, "x-delivery-count": 1}),
                    (True, {"h": 1, "x-delivery-count": 2})]
    method, props, body = get(ch, dlq)
    assert body == b"m1" and not method.redelivered
    headers = props.headers
    assert "x-delivery-count" not in headers and headers["h"] == 1
    death = headers["x-death"][0]
    assert (death["reason"], death["queue"], death["count"], death["exchange"],
            death["routing-keys"]) == ("delivery_limit", q, 1, "", [q])
    assert headers["x-first-death-reason"] == "delivery_limit"
    assert headers["x-first-death-queue"] == q
    assert count(ch, q) == 0


@pytest.mark.parametrize("arguments", TYPES)
def test_consumer_sees_the_count_on_redeliveries(ch: BlockingChannel,
                                                 names: Callable[[str], str],
                                                 arguments: dict[str, Any]) -> None:
    q, dlq = with_dlx(ch, names, arguments, 2)
    ch.basic_publish("", q, b"m2")
    seen: list[tuple[bool, Any]] = []

    def on_message(channel: BlockingChannel, method: Any, props: Any, _body: bytes) -> None:
        seen.append((method.redelivered, props.headers))
        channel.basic_nack(method.delivery_tag, requeue=True)

    tag = ch.basic_consume(q, on_message)
    deadline = time.monotonic() + 10
    while len(seen) < 3 and time.monotonic() < deadline:
        ch.connection.process_data_events(0.05)
    ch.basic_cancel(tag)
    assert seen == [(False, None), (True, {"x-delivery-count": 1}),
                    (True, {"x-delivery-count": 2})]
    _method, _props, body = get(ch, dlq)
    assert body == b"m2"


@pytest.mark.parametrize("arguments", TYPES)
def test_channel_close_and_recover_count_as_returns(broker: BrokerProcess, ch: BlockingChannel,
                                                   names: Callable[[str], str],
                                                   arguments: dict[str, Any]) -> None:
    q, dlq = with_dlx(ch, names, arguments, 2)
    ch.basic_publish("", q, b"m3")
    counts = []
    for _ in range(3):  # taken on a channel that closes unacked: returned each time
        other = ch.connection.channel()
        method, props, _body = get(other, q)
        counts.append(props.headers["x-delivery-count"])
        other.close()
    assert counts == [0, 1, 2]
    assert get(ch, dlq)[2] == b"m3"
    assert count(ch, q) == 0
    ch.basic_publish("", q, b"m4")
    get(ch, q)
    ch.basic_recover(requeue=True)
    method, props, _body = get(ch, q)
    assert method.redelivered and props.headers == {"x-delivery-count": 1}
    ch.basic_ack(method.delivery_tag)


@pytest.mark.parametrize("arguments", TYPES)
def test_past_the_limit_without_dlx_the_message_is_dropped(ch: BlockingChannel,
                                                           names: Callable[[str], str],
                                                           arguments: dict[str, Any]) -> None:
    q = names("q")
    ch.queue_declare(q, durable=True, arguments={**arguments, "x-delivery-limit": 0})
    ch.basic_publish("", q, b"x", pika.BasicProperties(headers={"x-delivery-count": 7}))
    method, props, _body = get(ch, q)
    assert props.headers == {"x-delivery-count": 0}  # the publisher's value is replaced
    ch.basic_reject(method.delivery_tag, requeue=True)
    ch.basic_publish("", q, b"y")  # after the return: the queue has applied it
    method, _props, body = get(ch, q)
    assert body == b"y"
    ch.basic_ack(method.delivery_tag)
    assert count(ch, q) == 0


def test_acked_messages_are_forgotten(ch: BlockingChannel,
                                      names: Callable[[str], str]) -> None:
    """A quorum queue without a limit counts too; an acked message starts nothing."""
    q = names("q")
    ch.queue_declare(q, durable=True, arguments=QUORUM)
    for body in (b"a", b"b"):
        ch.basic_publish("", q, body)
    method, _props, _body = get(ch, q)
    ch.basic_nack(method.delivery_tag, requeue=True)
    seen = {}
    for _ in range(2):  # RabbitMQ may apply the return after the next get: any order
        method, props, body = get(ch, q)
        seen[body] = props.headers
        ch.basic_ack(method.delivery_tag)
    assert seen == {b"a": {"x-delivery-count": 1}, b"b": {"x-delivery-count": 0}}
    ch.basic_publish("", q, b"a")
    method, props, _body = get(ch, q)
    assert props.headers == {"x-delivery-count": 0}
    ch.basic_ack(method.delivery_tag)


@pytest.mark.skipif(ON_RABBITMQ, reason="this broker's own validation")
@pytest.mark.parametrize("value", ["abc", -1, True])
def test_bad_limits_are_406(ch: BlockingChannel, names: Callable[[str], str],
                            value: Any) -> None:
    q = names("q")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
        ch.queue_declare(q, arguments={"x-delivery-limit": value})
    assert caught.value.reply_code == 406
    assert f"invalid arg 'x-delivery-limit' for queue '{q}'" in caught.value.reply_text


# --- without sockets ------------------------------------------------------------------

def test_counts_are_kept_only_for_returned_messages() -> None:
    from amqp_broker.broker import Broker
    from amqp_broker.config import Config
    vhost = Broker(Config(data_dir=None)).vhosts["/"]
    plain = vhost.declare_queue("plain", False, False, False, False, {}, object())[0]
    assert plain.extras is None  # nothing on the path of ordinary queues
    q = vhost.declare_queue("q", False, False, False, False, {"x-delivery-limit": 1},
                            object())[0]
    assert q.extras is not None and q.extras.counts is not None
    from tests.test_queue import publish
    publish(vhost, "q", b"one")
    got = q.take()
    assert got is not None
    q.requeue([got[0]])
    assert q.extras.counts.counts == {got[0].msg_id: 1}
    got = q.take()
    assert got is not None
    q.requeue([got[0]])  # the second return is past the limit: gone, forgotten
    assert q.extras.counts.counts == {} and q.message_count == 0


def test_a_policy_delivery_limit_applies_to_a_live_queue() -> None:
    from amqp_broker.broker import Broker
    from amqp_broker.config import Config
    from tests.test_queue import publish
    broker = Broker(Config(data_dir=None))
    vhost = broker.vhosts["/"]
    q = vhost.declare_queue("pq", False, False, False, False, {}, object())[0]
    assert q.extras is None
    broker.runtime.set_policy({"vhost": "/", "name": "dl", "pattern": "^pq$",
                               "apply-to": "queues", "definition": {"delivery-limit": 0},
                               "priority": 0})
    assert q.args.delivery_limit == 0 and q.extras is not None
    publish(vhost, "pq", b"one")
    got = q.take()
    assert got is not None
    q.requeue([got[0]])  # the first return is past a limit of 0
    assert q.message_count == 0


def test_dead_lettered_delivery_limit_metric() -> None:
    from pamqp import commands

    from tests.inproc import Client, make_broker
    from tests.test_metrics import of_type, scrape, value
    broker = make_broker()
    c = Client(broker)
    c.open_channel(1)
    c.send(commands.Queue.Declare(queue="dlq"), 1)
    c.send(commands.Queue.Declare(queue="q", arguments={
        "x-delivery-limit": 0, "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "dlq"}), 1)
    c.send(commands.Queue.Declare(queue="plain", arguments={"x-delivery-limit": 0}), 1)
    for q in ("q", "plain"):
        c.publish(1, "", q, b"m")
    c.frames()
    for q in ("q", "plain"):
        c.send(commands.Basic.Get(queue=q), 1)
    for _, got in of_type(c.frames(), commands.Basic.GetOk):
        c.send(commands.Basic.Reject(delivery_tag=got.delivery_tag, requeue=True), 1)
    s, _ = scrape(broker)
    name = "rabbitmq_global_messages_dead_lettered_delivery_limit_total"
    assert value(s, name, dead_letter_strategy="at_most_once") == 1
    assert value(s, name, dead_letter_strategy="disabled") == 1
    assert value(s, "rabbitmq_queue_messages_ready") == 1  # the dead letter in dlq
