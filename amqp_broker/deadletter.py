"""Dead-lettering: a message rejected, expired or pushed out by a length limit is
republished to the queue's dead-letter exchange with an x-death history, as
RabbitMQ 3.10 does (x-death entries keyed by queue and reason, newest first;
x-first-death-* headers; the expiration property moved to original-expiration).
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from . import pipeline
from .exchanges.topic import RouteDeferred
from .protocol import fast
from .protocol.fast import shortstr
from .protocol.fieldtable import LongLongInt  # RabbitMQ sends the count as a long ('l')
from .storage import StoreError

if TYPE_CHECKING:
    from .queue import Message, Queue
    from .vhost import VHost

REJECTED, EXPIRED, MAXLEN = "rejected", "expired", "maxlen"
DELIVERY_LIMIT = "delivery_limit"  # returned more than x-delivery-limit times


def with_death(msg: Message, queue: Queue, reason: str) -> tuple[bytes, list[dict[str, Any]]]:
    """The message's raw properties with this death recorded in its headers, and
    the x-death list (newest first) they now carry."""
    props = fast.decode_properties(msg.properties)
    headers: dict[str, Any] = dict(props.headers or {})
    exchange, routing_key = msg.exchange, msg.routing_key
    deaths = [d for d in headers.get("x-death", []) if isinstance(d, dict)]
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    for i, death in enumerate(deaths):
        if death.get("queue") == queue.name and death.get("reason") == reason:
            entry = dict(death)
            entry["count"] = LongLongInt(int(entry.get("count", 0)) + 1)
            entry["time"] = now
            deaths.pop(i)
            break
    else:
        entry = {"count": LongLongInt(1), "reason": reason, "queue": queue.name, "time": now,
                 "exchange": exchange, "routing-keys": [routing_key]}
        if props.expiration:
            entry["original-expiration"] = props.expiration
    deaths = [entry, *deaths]
    headers["x-death"] = deaths
    headers.setdefault("x-first-death-exchange", exchange)
    headers.setdefault("x-first-death-queue", queue.name)
    headers.setdefault("x-first-death-reason", reason)
    props.headers = headers
    props.expiration = None
    return fast.encode_properties(props), deaths


def is_cycle(queue_name: str, deaths: list[dict[str, Any]]) -> bool:
    """RabbitMQ's rule: dead-lettering into a queue the message already died in is a
    cycle unless some death since then (that one included) was a rejection."""
    for death in deaths:
        if death.get("reason") == REJECTED:
            return False
        if death.get("queue") == queue_name:
            return True
    return False


def dead_letter(queue: Queue, msgs: list[Message], reason: str) -> None:
    """Republish msgs from queue to its dead-letter exchange (or drop them).

    Iterative, not recursive: a dead letter that pushes another message out of a
    full queue queues that one behind it on the vhost, and the outermost call
    republishes them all in order, however long the chain.
    """
    args = queue.args
    if not msgs:
        return
    vhost = queue.vhost
    ex = (vhost.exchanges.get(args.dead_letter_exchange)
          if args.dead_letter_exchange is not None else None)
    # counted for metrics as RabbitMQ's dead_letter_strategy: at_most_once to an
    # existing exchange, else disabled (dropped)
    key = (reason, "disabled" if ex is None else "at_most_once")
    counts = vhost.broker.counters.dead_lettered
    counts[key] = counts.get(key, 0) + len(msgs)
    if ex is None:
        return  # no dead-letter exchange; RabbitMQ drops dead letters to a missing one
    broker = vhost.broker
    for msg in msgs:
        try:
            body = broker.body_of(msg)
        except StoreError as exc:
            broker.log.error("dead letter dropped: its body cannot be read",
                             queue=queue.name, vhost=vhost.name, error=str(exc))
            continue
        props, deaths = with_death(msg, queue, reason)
        routing_key = args.dead_letter_routing_key or msg.routing_key
        _route(vhost, ex.name, routing_key, props, body, deaths)
    _drain(vhost)


def _route(vhost: VHost, exchange: str, routing_key: str, props: bytes, body: bytes,
           deaths: list[dict[str, Any]]) -> None:
    """Route one dead letter onto the vhost's pending list; a topic match longer than
    one slice runs a slice at a time off the broker's redispatch turns (nobody waits for
    it), and the dead letter follows once it is done."""
    ex = vhost.exchanges.get(exchange)
    if ex is None:
        return
    broker = vhost.broker
    try:
        routed = vhost.route(ex, routing_key, lambda: fast.message_headers(props),
                             broker.finished_routes)
    except RouteDeferred as deferred:
        def resume() -> None:
            _route(vhost, exchange, routing_key, props, body, deaths)
            _drain(vhost)
        broker.route_soon(deferred.task, resume)
        return
    targets = [q for q in routed if not is_cycle(q.name, deaths)]
    if targets:
        vhost.dead_letters.append((exchange, routing_key, props, body, targets))


def _drain(vhost: VHost) -> None:
    if vhost.dead_lettering:
        return  # an outer call is draining the queue of dead letters
    pending = vhost.dead_letters
    vhost.dead_lettering = True
    try:
        while pending:
            exchange, routing_key, props, body, targets = pending.popleft()
            live = [q for q in targets if not q.deleted]
            if live:  # the publish pipeline: overflow policies, TTL, persistence, enqueue
                pipeline.publish(vhost, exchange, shortstr(exchange), routing_key,
                                 shortstr(routing_key), props, body, live)
    finally:
        vhost.dead_lettering = False
