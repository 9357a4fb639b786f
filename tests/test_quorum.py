"""x-queue-type quorum: a durable queue that counts deliveries (delivery_limit.py), with
RabbitMQ 3.10's refusals of what a quorum queue cannot be (texts recorded against
RabbitMQ 3.10.8; `AMQP_TEST_PORT=5673` runs the pika tests there), and its type shown by
the management API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from tests.helpers import BrokerProcess

QUORUM = {"x-queue-type": "quorum"}


@pytest.fixture
def ch(broker: BrokerProcess) -> Iterator[BlockingChannel]:
    conn = pika.BlockingConnection(pika.URLParameters(broker.url))
    yield conn.channel()
    if conn.is_open:
        conn.close()


def refusal(ch: BlockingChannel, name: str, **kwargs: Any) -> tuple[int, str]:
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
        ch.queue_declare(name, **kwargs)
    return caught.value.reply_code, caught.value.reply_text


@pytest.mark.parametrize(("kwargs", "text"), [
    ({"durable": False, "arguments": QUORUM}, "invalid property 'non-durable' for queue "
                                              "'{q}' in vhost '/'"),
    ({"durable": True, "exclusive": True, "arguments": QUORUM},
     "invalid property 'exclusive-owner' for queue '{q}' in vhost '/'"),
    ({"durable": True, "auto_delete": True, "arguments": QUORUM},
     "invalid property 'auto-delete' for queue '{q}' in vhost '/'"),
    ({"durable": True, "arguments": {**QUORUM, "x-max-priority": 5}},
     "invalid arg 'x-max-priority' for queue '{q}' in vhost '/' of queue type "
     "rabbit_quorum_queue"),
    ({"durable": True, "arguments": {**QUORUM, "x-queue-mode": "lazy"}},
     "invalid arg 'x-queue-mode' for queue '{q}' in vhost '/' of queue type "
     "rabbit_quorum_queue"),
    ({"durable": True, "arguments": {"x-queue-type": "foo"}},
     "invalid arg 'x-queue-type' for queue '{q}' in vhost '/': \"unsupported queue type "
     "'foo'\""),
    ({"durable": True, "arguments": {"x-queue-type": 5}},
     "invalid arg 'x-queue-type' for queue '{q}' in vhost '/': {{unacceptable_type,"
     "signedint}}"),
])
def test_refusals_as_rabbitmq(ch: BlockingChannel, uid: str, kwargs: dict[str, Any],
                              text: str) -> None:
    q = f"qq-refused-{uid}"
    assert refusal(ch, q, **kwargs) == (406, "PRECONDITION_FAILED - " + text.format(q=q))


def test_quorum_and_classic_are_declared(ch: BlockingChannel, uid: str) -> None:
    qq, cq = f"qq-{uid}", f"cq-{uid}"
    try:
        ch.queue_declare(qq, durable=True, arguments={**QUORUM, "x-delivery-limit": 2,
                                                      "x-quorum-initial-group-size": 3})
        ch.queue_declare(cq, arguments={"x-queue-type": "classic"})
        ch.queue_declare(qq, passive=True)
        ch.basic_publish("", qq, b"x")
        ch.basic_publish("", cq, b"y")
        method, props, _ = ch.basic_get(cq, auto_ack=True)
        assert method is not None and props.headers is None  # classic: no count
    finally:
        ch.queue_delete(qq)
        ch.queue_delete(cq)


# --- the management API, in process; a restart ------------------------------------------

def test_type_in_the_management_api() -> None:
    from amqp_broker.management import create_app
    from tests.inproc import make_broker
    from tests.mgmt_client import ApiClient
    broker = make_broker()
    vhost = broker.vhosts["/"]
    vhost.declare_queue("qq", False, True, False, False, {**QUORUM, "x-delivery-limit": 3},
                        object())
    vhost.declare_queue("cq", False, True, False, False, {}, object())
    api = ApiClient(create_app(broker))
    qq = api.get("/api/queues/%2F/qq").json()
    assert (qq["type"], qq["durable"], qq["arguments"]) == (
        "quorum", True, {"x-queue-type": "quorum", "x-delivery-limit": 3})
    assert api.get("/api/queues/%2F/cq").json()["type"] == "classic"


def test_quorum_queue_survives_a_restart_and_still_counts(
        broker_factory: Callable[..., BrokerProcess], tmp_path: Path) -> None:
    data = tmp_path / "data"
    broker = broker_factory(data_dir=data)
    conn = pika.BlockingConnection(pika.URLParameters(broker.url))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("qq", durable=True, arguments={**QUORUM, "x-delivery-limit": 1})
    ch.basic_publish("", "qq", b"p", pika.BasicProperties(delivery_mode=2))
    conn.close()
    broker.stop()
    broker = broker_factory(data_dir=data)
    conn = pika.BlockingConnection(pika.URLParameters(broker.url))
    ch = conn.channel()
    method, props, body = ch.basic_get("qq")
    assert (body, props.headers) == (b"p", {"x-delivery-count": 0})
    ch.basic_reject(method.delivery_tag, requeue=True)
    method, props, _ = ch.basic_get("qq")
    assert props.headers == {"x-delivery-count": 1}
    ch.basic_reject(method.delivery_tag, requeue=True)  # past the limit: dropped
    assert ch.queue_declare("qq", passive=True).method.message_count == 0
    conn.close()
