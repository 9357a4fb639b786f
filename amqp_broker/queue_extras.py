"""Per-queue state of the optional features that follow a message after it was enqueued:
delivery counts (x-delivery-limit and quorum queues, delivery_limit.py) and queue-level
deduplication (x-message-deduplication, dedup.py).

A Queue has `extras = None` unless one of them is on, so other queues pay one attribute
test where a message enters, returns or leaves. The hooks:

  Queue.enqueue     refuses(msg): a duplicate is not enqueued
  Queue.requeue     returned(msgs): counts a return; the messages past the limit are
                    dead-lettered (reason delivery_limit) or dropped, the rest requeued
  Queue._discard    left(msgs): expired or pushed out by a length limit
  Queue.purge       purged()
  Queue.restore     restored(msg, delivered): recovered at start-up
  Channel.deliver   properties(msg, props): a redelivery carries x-delivery-count
  Channel.track     left([msg]) for a no-ack delivery
  Channel settle    left(msgs) for acked and rejected (not requeued) deliveries
  basic.get         get_properties(msg, props): always carries x-delivery-count on a
                    counting queue, as RabbitMQ's quorum queues do
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from . import deadletter, dedup, delivery_limit
from .delivery_limit import DeliveryCounts

if TYPE_CHECKING:
    from .queue import Message, Queue


class QueueExtras:
    __slots__ = ("counts", "dedup", "queue")

    def __init__(self, queue: Queue, counts: DeliveryCounts | None,
                 dedup_: dedup.QueueDedup | None) -> None:
        self.queue = queue
        self.counts = counts
        self.dedup = dedup_

    def refuses(self, msg: Message) -> bool:
        """True for a duplicate of a message in a deduplicating queue (dropped)."""
        return self.dedup is not None and self.dedup.duplicate(msg)

    def returned(self, msgs: Iterable[Message]) -> list[Message]:
        """Delivered messages come back: those within their delivery limit, to requeue.
        The others leave the queue (dead-lettered with reason delivery_limit, or
        dropped) and are removed from the store."""
        if self.counts is None:
            return list(msgs)
        kept, over = self.counts.returned(msgs, self.queue.args.delivery_limit)
        if over:
            queue = self.queue
            queue.acked += len(over)
            queue._discard(over, deadletter.DELIVERY_LIMIT)
        return kept

    def left(self, msgs: Iterable[Message]) -> None:
        """The messages left the queue for good."""
        if self.counts is not None:
            self.counts.forget(msgs)
        if self.dedup is not None:
            self.dedup.left(msgs)

    def purged(self) -> None:
        """Called before the ready messages go: those returned before (in the queue's
        redelivered set) lose their counts, unacked deliveries keep theirs; the
        deduplication cache is flushed, as the plugin does."""
        counts = self.counts
        if counts is not None and counts.counts:
            for msg_id in self.queue.redelivered:
                counts.counts.pop(msg_id, None)
        if self.dedup is not None:
            self.dedup.clear()

    def restored(self, msg: Message, delivered: bool) -> None:
        if self.counts is not None:
            self.counts.restored(msg, delivered)
        if self.dedup is not None:
            self.dedup.duplicate(msg)

    def properties(self, msg: Message, props: bytes) -> bytes:
        """The properties of a consumer's redelivery: x-delivery-count once returned."""
        counts = self.counts
        if counts is None:
            return props
        count = counts.count(msg.msg_id)
        return delivery_limit.with_count(props, count) if count else props

    def get_properties(self, msg: Message, props: bytes) -> bytes:
        """The properties of a basic.get delivery: x-delivery-count, 0 the first time."""
        counts = self.counts
        if counts is None:
            return props
        return delivery_limit.with_count(props, counts.count(msg.msg_id))


def extras_for(queue: Queue) -> QueueExtras | None:
    """The extras of a new queue, None when it needs none; 406 (AMQPError) for bad
    deduplication arguments. Called again when a policy changes the queue's arguments
    (refresh_extras keeps the counts and the cache)."""
    args = queue.args
    if args.queue_type == "stream":  # a log: nothing is returned, nothing deduplicated
        return None
    counts = DeliveryCounts() if delivery_limit.tracked(args) else None
    dedup_ = dedup.for_queue(queue.arguments)
    if counts is None and dedup_ is None:
        return None
    return QueueExtras(queue, counts, dedup_)


def refresh_extras(queue: Queue) -> None:
    """The queue's arguments changed (a policy's delivery-limit): start counting if it
    now needs to, keeping what was counted and cached so far."""
    extras = queue.extras
    if extras is None:
        queue.extras = extras_for(queue)
    elif extras.counts is None and delivery_limit.tracked(queue.args):
        extras.counts = DeliveryCounts()
