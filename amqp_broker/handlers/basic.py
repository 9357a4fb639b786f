"""basic.* methods. basic.publish and the acknowledgements take the fast path in
Connection; they arrive here only through `settle`, which all three share."""

from __future__ import annotations

import secrets
from typing import Any

from pamqp import commands

from .. import reply_to, stream
from ..channel import ACK, DROP, REQUEUE, Channel, Handlers
from ..protocol.errors import (
    ACCESS_REFUSED,
    INTERNAL_ERROR,
    NOT_ALLOWED,
    NOT_IMPLEMENTED,
    AMQPError,
)
from ..protocol.fast import shortstr
from ..queue import Consumer
from ..storage import StoreError


def qos(ch: Channel, method: commands.Basic.Qos) -> None:
    if method.prefetch_size:
        raise AMQPError(NOT_IMPLEMENTED, f"prefetch_size!=0 ({method.prefetch_size})", 60, 10)
    if method.global_:
        ch.global_prefetch = method.prefetch_count
    else:
        ch.prefetch_count = method.prefetch_count
    ch.send(commands.Basic.QosOk)
    ch.kick()


def _priority(arguments: dict[str, Any]) -> int:
    value = arguments.get("x-priority", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def consume(ch: Channel, method: commands.Basic.Consume) -> None:
    conn = ch.connection
    name = method.queue or conn.last_queue_name or ""
    if name == reply_to.PSEUDO_QUEUE:
        reply_to.consume(ch, method)
        return
    ch.permit("queue", name, "read")
    q = ch.vhost.get_queue(name, conn)
    tag = method.consumer_tag or "amq.ctag-" + secrets.token_urlsafe(16)
    if tag in ch.consumers:
        raise AMQPError(NOT_ALLOWED, f"attempt to reuse consumer tag '{tag}'", 60, 20)
    consumer: Consumer
    if isinstance(q, stream.StreamQueue):  # its own rules (RabbitMQ ignores exclusive there)
        consumer = stream.consumer(ch, q, tag, shortstr(tag), method.no_ack, method.exclusive,
                                   method.arguments)
    else:
        if q.has_exclusive_consumer() or (method.exclusive and q.consumers):
            raise AMQPError(ACCESS_REFUSED,
                            f"queue '{q.name}' {ch.vhost.where()} in exclusive use", 60, 20)
        consumer = Consumer(ch, tag, shortstr(tag), q, method.no_ack, method.exclusive,
                            ch.prefetch_count, _priority(method.arguments), method.arguments)
    if not method.nowait:
        ch.send(commands.Basic.ConsumeOk, consumer_tag=tag)
    ch.add_consumer(consumer)


def cancel(ch: Channel, method: commands.Basic.Cancel) -> None:
    tag = method.consumer_tag or ""
    if not reply_to.cancel(ch, tag):
        ch.remove_consumer(tag)
    if not method.nowait:
        ch.send(commands.Basic.CancelOk, consumer_tag=tag)


def get(ch: Channel, method: commands.Basic.Get) -> None:
    conn = ch.connection
    name = method.queue or conn.last_queue_name or ""
    ch.permit("queue", name, "read")
    q = ch.vhost.get_queue(name, conn)
    try:
        taken = q.take()
    except StoreError as exc:
        ch.broker.log.error("basic.get: message kept in its queue: its body cannot be read "
                            "from the store", queue=q.name, vhost=ch.vhost.name, error=str(exc))
        raise AMQPError(INTERNAL_ERROR, f"cannot read the next message of queue '{q.name}' "
                        f"{ch.vhost.where()} from the message store", 60, 70) from None
    counters = ch.counters
    if taken is None:
        counters.get_empty += 1
        ch.send(commands.Basic.GetEmpty)
        return
    msg, redelivered, body = taken
    if method.no_ack:
        counters.get_auto += 1
    else:
        counters.get_manual += 1
    counters.redelivered += redelivered
    props = msg.properties
    if q.extras is not None:  # x-delivery-count
        props = q.extras.get_properties(msg, props)
    tag = ch.track(q, msg, None, method.no_ack)
    ch.write_delivery(tag, redelivered, msg.exchange_raw, msg.routing_key_raw, props,
                      body, message_count=q.message_count)


def ack(ch: Channel, method: commands.Basic.Ack) -> None:
    ch.settle(method.delivery_tag or 0, method.multiple, ACK)


def reject(ch: Channel, method: commands.Basic.Reject) -> None:
    if ch.vhost.streams:
        stream.refuse_settle(ch, method.delivery_tag or 0, False, 90)
    ch.settle(method.delivery_tag or 0, False, REQUEUE if method.requeue else DROP)


def nack(ch: Channel, method: commands.Basic.Nack) -> None:
    if ch.vhost.streams:
        stream.refuse_settle(ch, method.delivery_tag or 0, method.multiple, 120)
    ch.settle(method.delivery_tag or 0, method.multiple, REQUEUE if method.requeue else DROP)


def _recover(ch: Channel, method: commands.Basic.Recover | commands.Basic.RecoverAsync,
             method_id: int) -> None:
    if not method.requeue:
        raise AMQPError(NOT_IMPLEMENTED, "requeue=false", 60, method_id)
    if ch.vhost.streams:
        stream.refuse_recover(ch)
    ch.requeue_all()


def recover_async(ch: Channel, method: commands.Basic.RecoverAsync) -> None:
    _recover(ch, method, 100)


def recover(ch: Channel, method: commands.Basic.Recover) -> None:
    _recover(ch, method, 110)
    ch.send(commands.Basic.RecoverOk)


HANDLERS: Handlers = {
    commands.Basic.Qos: qos,
    commands.Basic.Consume: consume,
    commands.Basic.Cancel: cancel,
    commands.Basic.Get: get,
    commands.Basic.Ack: ack,
    commands.Basic.Reject: reject,
    commands.Basic.RecoverAsync: recover_async,
    commands.Basic.Recover: recover,
    commands.Basic.Nack: nack,
}
