"""Dead-lettering: a message rejected, expired or pushed out by a length limit is
republished to the queue's dead-letter exchange with an x-death history, as
RabbitMQ 3.10 does (x-death entries keyed by queue and reason, newest first;
x-first-death-* headers; the expiration property moved to original-expiration).
"""

from __future__ import annotations

import datetime
import time
from typing import TYPE_CHECKING, Any

from . import queue as queues  # circular: only attributes used at call time
from .protocol import fast
from .protocol.fast import shortstr

if TYPE_CHECKING:
    from .queue import Message, Queue

REJECTED, EXPIRED, MAXLEN = "rejected", "expired", "maxlen"


def with_death(msg: Message, queue: Queue, reason: str, body: bytes) -> bytes:
    """The message's raw properties with this death recorded in its headers."""
    props = fast.decode_properties(msg.properties)
    headers: dict[str, Any] = dict(props.headers or {})
    exchange, routing_key = msg.exchange, msg.routing_key
    deaths = [d for d in headers.get("x-death", []) if isinstance(d, dict)]
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    for i, death in enumerate(deaths):
        if death.get("queue") == queue.name and death.get("reason") == reason:
            entry = dict(death)
            entry["count"] = int(entry.get("count", 0)) + 1
            entry["time"] = now
            deaths.pop(i)
            break
    else:
        entry = {"count": 1, "reason": reason, "queue": queue.name, "time": now,
                 "exchange": exchange, "routing-keys": [routing_key]}
        if props.expiration:
            entry["original-expiration"] = props.expiration
    headers["x-death"] = [entry, *deaths]
    headers.setdefault("x-first-death-exchange", exchange)
    headers.setdefault("x-first-death-queue", queue.name)
    headers.setdefault("x-first-death-reason", reason)
    props.headers = headers
    props.expiration = None
    return fast.encode_properties(props)


def dead_letter(queue: Queue, msgs: list[Message], reason: str) -> None:
    """Republish msgs from queue to its dead-letter exchange (or drop them)."""
    args = queue.args
    if args.dead_letter_exchange is None or not msgs:
        return
    vhost = queue.vhost
    ex = vhost.exchanges.get(args.dead_letter_exchange)
    if ex is None:
        return  # RabbitMQ drops dead letters to a missing exchange
    broker = vhost.broker
    for msg in msgs:
        body = broker.body_of(msg)
        props = with_death(msg, queue, reason, body)
        routing_key = args.dead_letter_routing_key or msg.routing_key
        targets = [q for q in vhost.route(ex, routing_key, lambda p=props: fast.message_headers(p))
                   if not (q is queue and reason != REJECTED)]  # no expiry/maxlen cycles
        if not targets:
            continue
        new = queues.Message(broker.next_msg_id(), shortstr(ex.name), shortstr(routing_key), props,
                      body, len(body))
        if broker.expiring_queues:
            new.ttl = (time.monotonic(), None)
        if fast.delivery_mode(props) == 2:
            broker.persist(new, body, targets, ex.name, routing_key)
        for q in targets:
            q.enqueue(new)
