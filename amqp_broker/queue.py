"""Messages, queues and consumers: what a queue holds and to whom it hands it.

A Queue keeps ready messages in publish order (msg_id order), a set of ids
that were delivered and requeued (so they come back redelivered=true, in their
original place), and a list of consumers served round-robin, highest
x-priority first. Delivery is synchronous: an enqueue, an ack or a drained
socket calls dispatch(), which hands messages to consumers that have credit.
No task per message.
"""

from __future__ import annotations

from bisect import insort
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .channel import Channel
    from .vhost import VHost


STORED = 1
PAGEABLE = 2
# Above this many bytes of ready messages, bodies of pageable messages are
# dropped from RAM at enqueue and read back from the store at delivery.
PAGE_OUT_BYTES = 32 * 1024 * 1024


class Message:
    """One published message, shared by every queue it was routed to."""

    __slots__ = (
        "body",
        "body_size",
        "exchange_raw",
        "msg_id",
        "persistent",
        "properties",
        "routing_key_raw",
        "stored",
    )

    def __init__(self, msg_id: int, exchange_raw: bytes, routing_key_raw: bytes,
                 properties: bytes, body: bytes | None, persistent: bool, body_size: int) -> None:
        self.msg_id = msg_id
        self.exchange_raw = exchange_raw  # short string with its length octet
        self.routing_key_raw = routing_key_raw  # idem
        self.properties = properties  # raw content-header properties
        self.body = body  # None while paged out to the store
        self.persistent = persistent
        # 0: not in the store; STORED: in the store for some of its queues;
        # PAGEABLE: in the store for all of them, so the body may leave RAM
        self.stored = 0
        self.body_size = body_size

    @property
    def exchange(self) -> str:
        return self.exchange_raw[1:].decode("utf-8", "surrogateescape")

    @property
    def routing_key(self) -> str:
        return self.routing_key_raw[1:].decode("utf-8", "surrogateescape")

    def __lt__(self, other: Message) -> bool:  # queue order for requeue
        return self.msg_id < other.msg_id


class Consumer:
    __slots__ = (
        "arguments",
        "channel",
        "exclusive",
        "no_ack",
        "prefetch",
        "priority",
        "queue",
        "tag",
        "tag_raw",
        "unacked",
    )

    def __init__(self, channel: Channel, tag: str, tag_raw: bytes, queue: Queue,
                 no_ack: bool, exclusive: bool, prefetch: int, priority: int,
                 arguments: dict[str, Any]) -> None:
        self.channel = channel
        self.tag = tag
        self.tag_raw = tag_raw
        self.queue = queue
        self.no_ack = no_ack
        self.exclusive = exclusive
        self.prefetch = prefetch  # 0 = unlimited (per-consumer basic.qos)
        self.unacked = 0
        self.priority = priority
        self.arguments = arguments

    def can_take(self) -> bool:
        if self.no_ack:
            return self.channel.can_deliver_noack()
        if self.prefetch and self.unacked >= self.prefetch:
            return False
        return self.channel.can_deliver()


class Queue:
    def __init__(self, vhost: VHost, name: str, durable: bool, exclusive_owner: object | None,
                 auto_delete: bool, arguments: dict[str, Any]) -> None:
        self.vhost = vhost
        self.name = name
        self.durable = durable
        self.exclusive_owner = exclusive_owner  # the owning connection, or None
        self.auto_delete = auto_delete
        self.arguments = arguments
        self.store_key = f"{vhost.name}\x00{name}"
        self.ready: deque[Message] = deque()
        self.redelivered: set[int] = set()
        self.consumers: list[Consumer] = []
        self._rr = 0
        self._priorities = False
        self.had_consumer = False
        self.deleted = False
        self.unacked = 0  # delivered, not yet settled
        self.ready_bytes = 0
        # counters for metrics, plain ints on the hot path
        self.published = 0
        self.delivered = 0
        self.acked = 0

    # --- contents ----------------------------------------------------------
    @property
    def message_count(self) -> int:
        return len(self.ready)

    def enqueue(self, msg: Message) -> None:
        self.ready.append(msg)
        self.ready_bytes += msg.body_size
        if self.ready_bytes > PAGE_OUT_BYTES and msg.stored == PAGEABLE:
            msg.body = None
        self.published += 1
        if self.consumers:
            self.dispatch()

    def requeue(self, msgs: Iterable[Message]) -> None:
        """Put delivered messages back in their original place, marked redelivered."""
        ready = self.ready
        for msg in sorted(msgs, key=_msg_id):
            self.redelivered.add(msg.msg_id)
            self.ready_bytes += msg.body_size
            if not ready or ready[-1].msg_id < msg.msg_id:
                ready.append(msg)
            elif ready[0].msg_id > msg.msg_id:
                ready.appendleft(msg)
            else:
                insort(ready, msg)
        if self.consumers:
            self.dispatch()

    def take(self) -> tuple[Message, bool] | None:
        """Pop the head message for basic.get: (message, redelivered)."""
        if not self.ready:
            return None
        msg = self.ready.popleft()
        self.ready_bytes -= msg.body_size
        redelivered = False
        if self.redelivered and msg.msg_id in self.redelivered:
            self.redelivered.discard(msg.msg_id)
            redelivered = True
        return msg, redelivered

    def purge(self) -> list[Message]:
        msgs = list(self.ready)
        self.ready.clear()
        self.redelivered.clear()
        self.ready_bytes = 0
        return msgs

    # --- consumers ---------------------------------------------------------
    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)
        self.had_consumer = True
        if consumer.priority:
            self._priorities = True
        self.dispatch()

    def remove_consumer(self, consumer: Consumer) -> None:
        try:
            self.consumers.remove(consumer)
        except ValueError:
            return
        self._priorities = any(c.priority for c in self.consumers)

    def has_exclusive_consumer(self) -> bool:
        return any(c.exclusive for c in self.consumers)

    def _pick(self) -> Consumer | None:
        consumers = self.consumers
        n = len(consumers)
        if n == 1:
            c = consumers[0]
            return c if c.can_take() else None
        start = self._rr
        best: Consumer | None = None
        best_i = 0
        for i in range(n):
            c = consumers[(start + i) % n]
            if c.can_take() and (best is None or c.priority > best.priority):
                best, best_i = c, i
                if not self._priorities:
                    break
        if best is not None:
            self._rr = (start + best_i + 1) % n
        return best

    def dispatch(self) -> None:
        """Hand ready messages to consumers while any has credit."""
        ready = self.ready
        while ready:
            consumer = self._pick()
            if consumer is None:
                return
            msg = ready.popleft()
            self.ready_bytes -= msg.body_size
            redelivered = False
            if self.redelivered and msg.msg_id in self.redelivered:
                self.redelivered.discard(msg.msg_id)
                redelivered = True
            consumer.channel.deliver(consumer, self, msg, redelivered)


def _msg_id(msg: Message) -> int:
    return msg.msg_id
