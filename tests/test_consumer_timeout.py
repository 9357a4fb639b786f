"""consumer_timeout: a delivery left unacknowledged too long closes its channel with 406
(as RabbitMQ does) and the message goes back to the queue."""

from __future__ import annotations

import time
from typing import Any

import pika
import pytest
from pamqp import commands

from amqp_broker.broker import Broker
from amqp_broker.config import Config
from tests.helpers import pika_connect
from tests.test_connection import Peer


def test_oldest_unacked_estimate_is_never_too_early() -> None:
    broker = Broker(Config(data_dir=None, consumer_timeout=10))
    peer = Peer(broker)
    peer.handshake()
    peer.method(1, commands.Channel.Open())
    ch = peer.conn.channels[1]
    ch.opened_at = 0.0
    assert ch.oldest_unacked_since(100.0) is None  # nothing unacked: mark taken at 100
    peer.method(1, commands.Queue.Declare(queue="t"))
    peer.publish(1, "", "t", b"m")
    peer.method(1, commands.Basic.Get(queue="t"))
    # delivered after the mark at 100, not at channel open (0)
    assert ch.oldest_unacked_since(105.0) == 100.0


@pytest.mark.time_limit(30)
def test_unacked_delivery_times_out(broker_factory: Any, uid: str) -> None:
    b = broker_factory("--consumer-timeout", "1")
    q = f"slow-{uid}"
    conn = pika_connect(b.port)
    ch = conn.channel()
    ch.queue_declare(q)
    ch.basic_publish("", q, b"work")
    method, _props, _body = ch.basic_get(q, auto_ack=False)
    assert method is not None
    reasons: list[Any] = []
    ch._impl.add_on_close_callback(lambda _ch, reason: reasons.append(reason))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and ch.is_open:
        conn.process_data_events(time_limit=0.2)
    assert ch.is_closed, "channel still open after the consumer timeout"
    assert isinstance(reasons[0], pika.exceptions.ChannelClosedByBroker)
    assert reasons[0].reply_code == 406
    assert "timed out" in reasons[0].reply_text
    ch2 = conn.channel()
    again = ch2.basic_get(q, auto_ack=True)
    assert again[0] is not None and again[0].redelivered and again[2] == b"work"
    conn.close()
