"""The one publish pipeline: what happens to a routed message, whoever publishes it.

basic.publish, tx.commit (through Channel.publish) and dead-lettering all hand their
routed queues here: overflow policies first (reject-publish refuses, reject-publish-dlx
dead-letters the refused copy), then one shared Message with its TTL stamp, stored once
for the durable queues when persistent, then enqueued on each queue.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import TYPE_CHECKING

from . import queue as queue_model  # queue imports deadletter imports this: use at call time
from .exchanges.delayed import Delayed
from .protocol import fast

if TYPE_CHECKING:
    from .queue import Queue
    from .vhost import VHost


def publish(vhost: VHost, exchange: str, exchange_raw: bytes, routing_key: str,
            routing_key_raw: bytes, props: bytes, body: bytes, queues: Collection[Queue],
            expires: float | None = None, now: float | None = None) -> tuple[int, bool, bool]:
    """Enqueue a routed message on queues (routing and alternates are done).

    expires is a per-message TTL in seconds (the expiration property), counted from now
    (monotonic seconds; the current time when None). Returns (store token a confirm waits
    for, whether some queue refused it, whether some queue took it).
    """
    refused = False
    broker = vhost.broker
    if queues.__class__ is Delayed:  # held by delayed-message exchanges (delayed.py)
        queues = broker.delayed.hold(vhost, queues, exchange, routing_key, props, body)
    if vhost.refusing_queues:
        accepting = [q for q in queues if not q.refuses(len(body))]
        refused = len(accepting) != len(queues)
        if refused:
            for q in queues:
                if q not in accepting:
                    q.refused(exchange, routing_key, props, body)
        queues = accepting
    if not queues:
        return 0, refused, False
    msg = queue_model.Message(broker.next_msg_id(), exchange_raw, routing_key_raw, props, body,
                              len(body))
    if expires is not None or vhost.expiring_queues:
        if now is None:
            now = time.monotonic()
        msg.ttl = (now, None if expires is None else now + expires)
    token = 0
    streams = vhost.streams  # stream queues keep messages in their own logs
    if streams:
        from . import stream as stream_model  # it imports queue: not at load time (cycle)
    if fast.delivery_mode(props) == 2:
        token = broker.persist(msg, body, stream_model.classic_only(queues) if streams else queues,
                               exchange, routing_key)
    for q in queues:
        q.enqueue(msg)
    if streams:
        token, lost = stream_model.publish_token(token, queues)
        refused = refused or lost  # a stream could not append it: nacked
    return token, refused, True
