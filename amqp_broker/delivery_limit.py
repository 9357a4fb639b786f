"""Poison messages: x-delivery-limit and the x-delivery-count header, as RabbitMQ 3.10's
quorum queues have them (rabbit_fifo return_one, rabbit_fifo_client), on classic queues too
here, as in LavinMQ.

Every return of a delivered message to its queue counts: basic.reject or basic.nack with
requeue, basic.recover, and the unacked deliveries a closing channel gives back. Past the
limit (a count above it) the message leaves the queue instead: dead-lettered with reason
`delivery_limit` when the queue has a dead-letter exchange, else dropped. A consumer's
redelivery of a returned message carries the header `x-delivery-count` (a long, the count
so far); basic.get always carries it, 0 for a first delivery. A basic.cancel returns
nothing (unacked deliveries stay with the channel), as in RabbitMQ.

The counts live in one dict per queue (msg_id -> returns so far), only for queues of type
quorum or with a limit, and only for messages returned at least once; they are not stored
(a restart counts a message that was delivered before it as returned once).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .protocol import fast
from .protocol.errors import AMQPError
from .protocol.fieldtable import LongLongInt  # RabbitMQ sends the count as a long ('l')

if TYPE_CHECKING:
    from .queue import Message
    from .queue_args import QueueArgs

HEADER = "x-delivery-count"


def tracked(args: QueueArgs) -> bool:
    """Whether a queue counts returns: a quorum queue always, any queue with a limit."""
    return args.delivery_limit is not None or args.queue_type == "quorum"


class DeliveryCounts:
    """The returns of a queue's messages: msg_id -> count, for counts above zero."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def returned(self, msgs: Iterable[Message],
                 limit: int | None) -> tuple[list[Message], list[Message]]:
        """Count one more return of each message: (those that go back to the queue,
        those past the limit, which leave it and are forgotten here). The limit is the
        queue's at the time (a policy may change it)."""
        counts = self.counts
        kept: list[Message] = []
        over: list[Message] = []
        for msg in msgs:
            count = counts.get(msg.msg_id, 0) + 1
            if limit is not None and count > limit:
                counts.pop(msg.msg_id, None)
                over.append(msg)
            else:
                counts[msg.msg_id] = count
                kept.append(msg)
        return kept, over

    def count(self, msg_id: int) -> int:
        return self.counts.get(msg_id, 0)

    def forget(self, msgs: Iterable[Message]) -> None:
        """The messages left the queue for good (acked, dropped, expired, ...)."""
        counts = self.counts
        if counts:
            for msg in msgs:
                counts.pop(msg.msg_id, None)

    def restored(self, msg: Message, delivered: bool) -> None:
        """A message recovered at start-up: one delivered before the restart counts as
        returned once (its earlier count was not stored)."""
        if delivered:
            self.counts[msg.msg_id] = max(self.counts.get(msg.msg_id, 0), 1)


def with_count(props: bytes, count: int) -> bytes:
    """Raw properties with the x-delivery-count header set to count (replacing one the
    publisher set, as RabbitMQ does). Properties that cannot be decoded (never the case
    for what the broker accepted) are returned unchanged."""
    try:
        decoded = fast.decode_properties(props)
    except AMQPError:
        return props
    headers = dict(decoded.headers or {})
    headers[HEADER] = LongLongInt(count)
    decoded.headers = headers
    return fast.encode_properties(decoded)
