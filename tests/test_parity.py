"""RabbitMQ parity: replies, codes and texts checked against the reference RabbitMQ 3.10.

`AMQP_TEST_PORT=5673 python -m pytest tests/test_parity.py` runs the tests that need
no private broker against the reference, to check what they expect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pika
import pika.exceptions as pex
import pytest
from helpers import BrokerProcess, pika_connect

LOCKED = ("RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{}' in vhost '/'. "
          "It could be originally declared on another connection or the exclusive property "
          "value does not match that of the original declaration.")
DEFAULT_EXCHANGE = "ACCESS_REFUSED - operation not permitted on the default exchange"


@pytest.fixture
def conn(broker: BrokerProcess) -> Iterator[pika.BlockingConnection]:
    c = pika_connect(broker.port)
    try:
        yield c
    finally:
        if c.is_open:
            c.close()


def channel_error(conn: pika.BlockingConnection, call: Callable[[Any], Any]) -> tuple[int, str]:
    """Run call(channel) on a new channel; the (code, text) of the channel.close it causes."""
    ch = conn.channel()
    with pytest.raises(pex.ChannelClosedByBroker) as info:
        call(ch)
    return info.value.reply_code, info.value.reply_text


def ok(conn: pika.BlockingConnection, call: Callable[[Any], Any]) -> Any:
    ch = conn.channel()
    result = call(ch)
    ch.close()
    return result


# --- 9. exchange.declare of the default exchange ---------------------------------------

@pytest.mark.parametrize("passive", [True, False])
def test_declare_default_exchange_is_403(conn: pika.BlockingConnection, passive: bool) -> None:
    assert channel_error(conn, lambda ch: ch.exchange_declare("", "direct", passive=passive)) \
        == (403, DEFAULT_EXCHANGE)


def test_declare_default_exchange_unknown_type_is_503_first(
        conn: pika.BlockingConnection) -> None:
    with pytest.raises(pex.ConnectionClosedByBroker) as info:
        conn.channel().exchange_declare("", "no-such-type")
    assert (info.value.reply_code, info.value.reply_text) == (
        503, "COMMAND_INVALID - unknown exchange type 'no-such-type'")


def test_redeclare_amq_exchange_is_checked_for_equivalence(
        conn: pika.BlockingConnection) -> None:
    ok(conn, lambda ch: ch.exchange_declare("amq.direct", "direct", durable=True))
    assert channel_error(conn, lambda ch: ch.exchange_declare("amq.direct", "fanout",
                                                              durable=True)) == (
        406, "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'amq.direct' in "
             "vhost '/': received 'fanout' but current is 'direct'")
