"""basic.* methods. basic.publish and the acknowledgements take the fast path in
Connection; they arrive here only through `settle`, which all three share."""

from __future__ import annotations

import secrets
from typing import Any

from .. import reply_to
from ..channel import ACK, DROP, REQUEUE, Channel, Handler
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


def qos(ch: Channel, args: dict[str, Any]) -> None:
    if args["prefetch_size"]:
        raise AMQPError(NOT_IMPLEMENTED, f"prefetch_size!=0 ({args['prefetch_size']})", 60, 10)
    if args["global"]:
        ch.global_prefetch = args["prefetch_count"]
    else:
        ch.prefetch_count = args["prefetch_count"]
    ch.send((60, 11))
    ch.kick()


def _priority(arguments: dict[str, Any]) -> int:
    value = arguments.get("x-priority", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def consume(ch: Channel, args: dict[str, Any]) -> None:
    conn = ch.connection
    name = args["queue"] or conn.last_queue_name or ""
    if name == reply_to.PSEUDO_QUEUE:
        reply_to.consume(ch, args)
        return
    q = ch.vhost.get_queue(name, conn)
    tag = args["consumer_tag"] or "amq.ctag-" + secrets.token_urlsafe(16)
    if tag in ch.consumers:
        raise AMQPError(NOT_ALLOWED, f"attempt to reuse consumer tag '{tag}'", 60, 20)
    if q.has_exclusive_consumer() or (args["exclusive"] and q.consumers):
        raise AMQPError(ACCESS_REFUSED,
                        f"queue '{q.name}' {ch.vhost.where()} in exclusive use", 60, 20)
    consumer = Consumer(ch, tag, shortstr(tag), q, args["no_ack"], args["exclusive"],
                        ch.prefetch_count, _priority(args["arguments"]), args["arguments"])
    if not args["nowait"]:
        ch.send((60, 21), consumer_tag=tag)
    ch.add_consumer(consumer)


def cancel(ch: Channel, args: dict[str, Any]) -> None:
    if not reply_to.cancel(ch, args["consumer_tag"]):
        ch.remove_consumer(args["consumer_tag"])
    if not args["nowait"]:
        ch.send((60, 31), consumer_tag=args["consumer_tag"])


def get(ch: Channel, args: dict[str, Any]) -> None:
    conn = ch.connection
    q = ch.vhost.get_queue(args["queue"] or conn.last_queue_name or "", conn)
    try:
        taken = q.take()
    except StoreError as exc:
        ch.broker.log.error("basic.get: message kept in its queue: its body cannot be read "
                            "from the store", queue=q.name, vhost=ch.vhost.name, error=str(exc))
        raise AMQPError(INTERNAL_ERROR, f"cannot read the next message of queue '{q.name}' "
                        f"{ch.vhost.where()} from the message store", 60, 70) from None
    if taken is None:
        ch.send((60, 72))
        return
    msg, redelivered, body = taken
    tag = ch.track(q, msg, None, args["no_ack"])
    ch.write_delivery(tag, redelivered, msg.exchange_raw, msg.routing_key_raw, msg.properties,
                      body, message_count=q.message_count)


def ack(ch: Channel, args: dict[str, Any]) -> None:
    ch.settle(args["delivery_tag"], args["multiple"], ACK)


def reject(ch: Channel, args: dict[str, Any]) -> None:
    ch.settle(args["delivery_tag"], False, REQUEUE if args["requeue"] else DROP)


def nack(ch: Channel, args: dict[str, Any]) -> None:
    ch.settle(args["delivery_tag"], args["multiple"], REQUEUE if args["requeue"] else DROP)


def _recover(ch: Channel, args: dict[str, Any], method_id: int) -> None:
    if not args["requeue"]:
        raise AMQPError(NOT_IMPLEMENTED, "requeue=false", 60, method_id)
    ch.requeue_all()


def recover_async(ch: Channel, args: dict[str, Any]) -> None:
    _recover(ch, args, 100)


def recover(ch: Channel, args: dict[str, Any]) -> None:
    _recover(ch, args, 110)
    ch.send((60, 111))


HANDLERS: dict[tuple[int, int], Handler] = {
    (60, 10): qos,
    (60, 20): consume,
    (60, 30): cancel,
    (60, 70): get,
    (60, 80): ack,
    (60, 90): reject,
    (60, 100): recover_async,
    (60, 110): recover,
    (60, 120): nack,
}
