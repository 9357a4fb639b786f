"""Direct reply-to (amq.rabbitmq.reply-to), as pika RPC clients use it."""

from __future__ import annotations

from typing import Any

import pika
import pytest

from tests.helpers import pika_connect

PSEUDO = "amq.rabbitmq.reply-to"


def test_rpc_round_trip_through_direct_reply_to(broker: Any, uid: str) -> None:
    server_conn = pika_connect(broker.port)
    server = server_conn.channel()
    requests = f"rpc-{uid}"
    server.queue_declare(requests, auto_delete=True)

    client_conn = pika_connect(broker.port)
    client = client_conn.channel()
    replies: list[tuple[str, bytes]] = []
    client.basic_consume(PSEUDO, lambda _c, m, p, b: replies.append((m.routing_key, b)),
                         auto_ack=True)
    client.basic_publish("", requests, b"ping", pika.BasicProperties(reply_to=PSEUDO,
                                                                      correlation_id="c1"))
    method, props, body = None, None, None
    for _ in range(50):
        method, props, body = server.basic_get(requests, auto_ack=True)
        if method:
            break
        server_conn.process_data_events(time_limit=0.05)
    assert body == b"ping"
    assert props.reply_to.startswith(PSEUDO + ".") and props.reply_to != PSEUDO + "."
    server.basic_publish("", props.reply_to, b"pong",
                         pika.BasicProperties(correlation_id=props.correlation_id))
    for _ in range(50):
        if replies:
            break
        client_conn.process_data_events(time_limit=0.05)
    assert replies == [(props.reply_to, b"pong")]
    client_conn.close()
    # the reply consumer is gone with its connection: a late reply is unroutable
    server.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError):
        server.basic_publish("", props.reply_to, b"late", mandatory=True)
    server_conn.close()


def test_reply_to_without_consumer_is_refused(broker: Any) -> None:
    conn = pika_connect(broker.port)
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.basic_publish("", "anything", b"x", pika.BasicProperties(reply_to=PSEUDO))
        ch.queue_declare("", exclusive=True)  # the close arrives before declare-ok
    assert info.value.reply_code == 406
    conn.close()


def test_reply_consumer_must_be_no_ack(broker: Any) -> None:
    conn = pika_connect(broker.port)
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.basic_consume(PSEUDO, lambda *a: None, auto_ack=False)
    assert info.value.reply_code == 406
    conn.close()
