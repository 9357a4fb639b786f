"""Messages, queues and consumers: what a queue holds and to whom it hands it.

A Queue keeps ready messages in publish order (msg_id order), a set of ids
that were delivered and requeued (so they come back redelivered=true, in their
original place), and a list of consumers served round-robin, highest
x-priority first. Delivery is synchronous: an enqueue, an ack or a drained
socket calls dispatch(), which hands messages to consumers that have credit.
No task per message.
"""

from __future__ import annotations

import sys
import time
from bisect import insort
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from . import backlog, deadletter
from .message import PAGEABLE as PAGEABLE  # re-exported: the model's names
from .message import STORED as STORED
from .message import Message as Message
from .protocol import fast
from .queue_args import QueueArgs
from .queue_extras import QueueExtras, extras_for, refresh_extras
from .storage import StoreError
from .storage.spool import SegmentLog

if TYPE_CHECKING:
    from .vhost import VHost


class DeliveryTarget(Protocol):
    """What a queue hands messages to (a Channel, or a fake in unit tests): the
    model knows this much of the session and nothing more."""

    def can_deliver(self) -> bool:
        """Room for one more delivery that needs an ack (prefetch, socket buffer)."""

    def can_deliver_noack(self) -> bool:
        """Room for one more no-ack delivery (socket buffer only)."""

    def deliver(self, consumer: Consumer, queue: Queue, msg: Message, redelivered: bool,
                body: bytes) -> None:
        """Send msg to consumer's client; the queue has popped it already."""

    def cancel_by_server(self, consumer: Consumer) -> None:
        """The queue went away under the consumer."""


# Above this many bytes of ready messages, bodies of pageable messages are
# dropped from RAM at enqueue and read back from the store at delivery.
PAGE_OUT_BYTES = 32 * 1024 * 1024
# RAM a ready message takes besides its body (Message, its deque slot, the body's
# header), counted against the memory watermark.
MESSAGE_OVERHEAD = 200
# At most this many bytes of paged-out bodies are read (blocking) per dispatch call.
PAGE_IN_BUDGET = 4 * 1024 * 1024
# The in-memory head of a FIFO queue: past this many ready messages, or this many
# bytes of bodies in RAM, new messages go to the queue's spool on disk
# (storage/spool.py explains the design) until the spool has been read empty again.
# A small memory watermark makes the head smaller (Broker.head_limits), and while
# the broker holds more than half its watermark every new backlog is spooled.
# A consumer that is merely slower than its publishers (a throughput benchmark's
# backlog of 200,000 small or 4,000 64 KiB messages) stays within the head and never
# waits for the disk; the memory watermark caps the head (1/16 of it) and, above half
# of it, sends every new backlog to disk.
HEAD_COUNT = 262_144
HEAD_BYTES = 256 * 1024 * 1024


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

    def __init__(self, channel: DeliveryTarget, tag: str, tag_raw: bytes, queue: Queue,
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


class PriorityReady:
    """Ready messages of an x-max-priority queue: one FIFO per priority level,
    highest first. Offers the subset of deque that Queue uses."""

    def __init__(self, max_priority: int) -> None:
        self.max_priority = max_priority
        self.levels: list[deque[Message]] = [deque() for _ in range(max_priority + 1)]
        self.count = 0

    def level(self, msg: Message) -> deque[Message]:
        priority = 0
        if fast.flags_of(msg.properties) & fast.FLAG_PRIORITY:
            priority = fast.decode_properties(msg.properties).priority or 0
        return self.levels[min(priority, self.max_priority)]

    def append(self, msg: Message) -> None:
        self.level(msg).append(msg)
        self.count += 1

    def put_back(self, msg: Message) -> None:
        _put_back(self.level(msg), msg)
        self.count += 1

    def popleft(self) -> Message:
        for level in reversed(self.levels):
            if level:
                self.count -= 1
                return level.popleft()
        raise IndexError("pop from an empty queue")

    def __getitem__(self, index: int) -> Message:
        if index != 0:
            raise IndexError(index)
        for level in reversed(self.levels):
            if level:
                return level[0]
        raise IndexError(index)

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def __iter__(self) -> Iterator[Message]:
        for level in reversed(self.levels):
            yield from level

    def clear(self) -> None:
        for level in self.levels:
            level.clear()
        self.count = 0


class FifoReady(deque):  # type: ignore[type-arg]
    """Ready messages in publish order."""

    def put_back(self, msg: Message) -> None:
        _put_back(self, msg)


def _put_back(ready: deque[Message], msg: Message) -> None:
    """Insert msg at its original (msg_id) position."""
    if not ready or ready[-1].msg_id < msg.msg_id:
        ready.append(msg)
    elif ready[0].msg_id > msg.msg_id:
        ready.appendleft(msg)
    else:
        insort(ready, msg)


class Queue:
    def __init__(self, vhost: VHost, name: str, durable: bool, exclusive_owner: object | None,
                 auto_delete: bool, arguments: dict[str, Any],
                 args: QueueArgs | None = None) -> None:
        self.vhost = vhost
        self.name = name
        self.durable = durable
        self.exclusive_owner = exclusive_owner  # the owning connection, or None
        # persistent messages are stored for durable queues that outlive their
        # connection; an exclusive queue is gone after a restart, as in RabbitMQ
        self.persists = durable and exclusive_owner is None
        self.auto_delete = auto_delete
        self.arguments = arguments
        self.args = args or QueueArgs()
        self.store_key = f"{vhost.name}\x00{name}"
        self.ready: FifoReady | PriorityReady = (
            PriorityReady(self.args.max_priority) if self.args.max_priority else FifoReady())
        self.redelivered: set[int] = set()
        self.consumers: list[Consumer] = []
        self._rr = 0
        self._priorities = False
        self.had_consumer = False
        self.deleted = False
        self.unacked = 0  # delivered, not yet settled
        self.ready_bytes = 0  # bodies of ready messages, in RAM or paged out
        self.ram_bytes = 0  # bodies of ready messages held in RAM (memory alarm)
        self.limited = self.args.limited
        # a length limit with a reject-publish overflow: publishes may be refused
        self.refusing = self.limited and self.args.overflow != "drop-head"
        self.ttl = self.args.message_ttl / 1000 if self.args.message_ttl is not None else None
        self.may_expire = self.ttl is not None  # head may hold expired messages
        # the backlog behind the head, on disk (None while everything fits the head)
        self.spool: SegmentLog | None = None
        self.can_spool = isinstance(self.ready, FifoReady)
        # the head's bounds (set_head_bounds); a queue that cannot spool has none
        self.head_count = self.head_bytes = sys.maxsize
        self.set_head_bounds(vhost.broker.spool_all)
        self._spool_error = ""  # the last spool error logged (logged once per kind)
        self.last_used = time.monotonic()
        self._unreadable = 0  # msg_id whose unreadable body was last logged
        # delivery counts and deduplication (queue_extras.py): None for most queues
        self.extras: QueueExtras | None = extras_for(self)
        # counters for metrics, plain ints on the hot path
        self.published = 0
        self.delivered = 0
        self.acked = 0

    # --- contents ----------------------------------------------------------
    @property
    def message_count(self) -> int:
        if self.may_expire:
            self.expire()
        return self.ready_count

    @property
    def ready_count(self) -> int:
        """Ready messages, in the head and in the spool."""
        spool = self.spool
        return len(self.ready) + spool.count if spool is not None else len(self.ready)

    def paged_out_count(self) -> int:
        """Ready messages whose body is not in RAM: the spooled ones, and those of the
        head paged out to the message store (the head is bounded; walked only then)."""
        head = 0
        if self.ram_bytes != self.ready_bytes:
            head = sum(1 for m in self.ready if m.body is None)
        return self.spooled + head

    @property
    def spooled(self) -> int:
        """Ready messages in the spool (no object in RAM)."""
        spool = self.spool
        return spool.count if spool is not None else 0

    def enqueue(self, msg: Message) -> None:
        """Add a routed message (overflow refusals were checked by `refuses`).

        Deliver or enqueue, as RabbitMQ: into an empty queue whose consumer can take
        it, a message goes straight to that consumer, before any TTL is looked at
        (a message with TTL 0 reaches a waiting consumer)."""
        if self.extras is not None and self.extras.refuses(msg):
            self._unstore([msg])  # a duplicate (x-message-deduplication): dropped
            return
        if self.consumers and not self.ready and msg.body is not None and self.spool is None:
            consumer = self._pick()
            if consumer is not None:
                self.published += 1
                consumer.channel.deliver(consumer, self, msg, False, msg.body)
                return
        self.ready_bytes += msg.body_size
        spooled = ((self.spool is not None or len(self.ready) >= self.head_count
                    or self.ram_bytes >= self.head_bytes) and self._spool_out(msg, False))
        if not spooled:
            self.ready.append(msg)
            if msg.stored == PAGEABLE:
                if self.ready_bytes > PAGE_OUT_BYTES:
                    msg.body = None
                else:
                    # kept in RAM here, so no other queue of this message pages it out
                    # (the body stays in RAM anyway) and every count of it stays true
                    msg.stored = STORED
            if msg.body is not None:
                self.ram_bytes += msg.body_size
        self.published += 1
        if msg.ttl is not None and msg.ttl[1] is not None:
            self.may_expire = True
            self.vhost.expiring_queues.add(self)
        if self.consumers and not spooled:  # behind the spool: no consumer could take it
            self.dispatch()
        if self.limited:
            self._drop_head()

    def refuses(self, size: int) -> bool:
        """True when a reject-publish overflow policy turns a message away."""
        return self.refusing and self._full(size)

    def refused(self, exchange_name: str, routing_key: str, props: bytes, body: bytes) -> None:
        if self.args.overflow == "reject-publish-dlx":
            msg = Message(0, fast.shortstr(exchange_name), fast.shortstr(routing_key), props,
                          body, len(body))
            deadletter.dead_letter(self, [msg], deadletter.MAXLEN)

    def _full(self, incoming: int) -> bool:
        a = self.args
        return ((a.max_length is not None and self.ready_count >= a.max_length)
                or (a.max_length_bytes is not None
                    and self.ready_bytes + incoming > a.max_length_bytes))

    def _drop_head(self) -> None:
        a = self.args
        dropped = []
        while self.ready and ((a.max_length is not None and self.ready_count > a.max_length)
                              or (a.max_length_bytes is not None
                                  and self.ready_bytes > a.max_length_bytes)):
            dropped.append(self._pop()[0])
        if dropped:
            self._discard(dropped, deadletter.MAXLEN)

    def _pop(self) -> tuple[Message, bool]:
        ready = self.ready
        msg = ready.popleft()
        if not ready and self.spool is not None:
            self._refill()
        self.ready_bytes -= msg.body_size
        if msg.body is not None:
            self.ram_bytes -= msg.body_size
        redelivered = False
        if self.redelivered and msg.msg_id in self.redelivered:
            self.redelivered.discard(msg.msg_id)
            redelivered = True
        return msg, redelivered

    def _discard(self, msgs: list[Message], reason: str) -> None:
        """Messages leave the queue without a consumer: dead-letter them, forget them."""
        if self.extras is not None:
            self.extras.left(msgs)
        deadletter.dead_letter(self, msgs, reason)
        self._unstore(msgs)

    def _unstore(self, msgs: list[Message]) -> None:
        """The messages left this queue for good: drop its references in the store."""
        if self.persists:
            ids = [m.msg_id for m in msgs if m.stored]
            if ids:
                self.vhost.broker.store.remove(self.store_key, ids)

    def deadline(self, msg: Message) -> float | None:
        if msg.ttl is None:
            return None
        published, expires = msg.ttl
        if self.ttl is None:
            return expires
        own = published + self.ttl
        return own if expires is None or own < expires else expires

    def expire(self, now: float | None = None) -> None:
        """Drop (dead-letter) expired messages at the head, as RabbitMQ does."""
        now = time.monotonic() if now is None else now
        ready = self.ready
        expired = []
        while ready:
            deadline = self.deadline(ready[0])
            if deadline is None or deadline > now:
                break
            expired.append(self._pop()[0])
        if expired:
            self._discard(expired, deadletter.EXPIRED)
        if not ready and self.ttl is None:
            self.may_expire = False

    def dead_letter_settled(self, msgs: list[Message]) -> None:
        """Rejected/nacked without requeue: dead-letter if the queue has a DLX."""
        if self.args.dead_letter_exchange is not None:
            deadletter.dead_letter(self, msgs, deadletter.REJECTED)

    def requeue(self, msgs: Iterable[Message]) -> None:
        """Put delivered messages back in their original place, marked redelivered."""
        if self.extras is not None:  # past x-delivery-limit they leave instead
            msgs = self.extras.returned(msgs)
        ready = self.ready
        # newest first: each older message then usually goes straight to the front
        for msg in sorted(msgs, key=_msg_id, reverse=True):
            self.redelivered.add(msg.msg_id)
            self.ready_bytes += msg.body_size
            if msg.body is not None:
                self.ram_bytes += msg.body_size
            ready.put_back(msg)
        if self.consumers:
            self.dispatch()

    def take(self) -> tuple[Message, bool, bytes] | None:
        """Pop the head message for basic.get: (message, redelivered, body). A body
        the store cannot read leaves the message in place and raises StoreError."""
        self.last_used = time.monotonic()
        if self.may_expire:
            self.expire()
        if not self.ready:
            if self.spool is None:
                return None
            self._refill()  # a read of the spool failed before: try again
            if not self.ready:
                return None
        body = self.vhost.broker.body_of(self.ready[0])
        msg, redelivered = self._pop()
        return msg, redelivered, body

    def purge(self) -> int:
        """Drop every ready message (no dead-lettering, as RabbitMQ); returns the count."""
        if self.extras is not None:
            self.extras.purged()
        msgs = list(self.ready)
        self.ready.clear()
        self.redelivered.clear()
        self.ready_bytes = self.ram_bytes = 0
        self._unstore(msgs)
        return len(msgs) + self.drop_spool(unstore=True)

    def set_head_bounds(self, spool_all: bool) -> None:
        """Bound the in-memory head: by HEAD_COUNT and HEAD_BYTES, less under a small
        memory watermark (Broker.head_limits), and to nothing while the broker holds
        more than half its watermark (spool_all: every new backlog goes to disk)."""
        if not self.can_spool:
            return
        if spool_all:
            self.head_count = self.head_bytes = 0
        else:
            count, size = self.vhost.broker.head_limits()
            self.head_count = min(HEAD_COUNT, count)
            self.head_bytes = min(HEAD_BYTES, size)

    def restore(self, msg: Message, delivered: bool) -> None:
        """A message recovered from the store, in publish order (no consumer yet)."""
        if self.extras is not None:  # delivery counts, deduplication keys
            self.extras.restored(msg, delivered)
        self.ready_bytes += msg.body_size
        if ((self.spool is not None or len(self.ready) >= self.head_count)
                and self._spool_out(msg, delivered)):
            return
        self.ready.append(msg)
        if delivered:
            self.redelivered.add(msg.msg_id)

    # --- the spool: the backlog behind the head, on disk -----------------------
    def _spool_out(self, msg: Message, redelivered: bool) -> bool:
        """Append msg to the spool; False (logged) when no spool can be made, then it
        stays in RAM. A failing disk keeps records in the spool's write buffer."""
        spool = self.spool
        if spool is None:
            try:
                spool = self.spool = self.vhost.broker.open_spool()
            except OSError as exc:
                self._spool_failed("cannot create the queue's spool", exc)
                return False
        in_store = bool(self.persists and msg.stored)
        if not in_store and msg.body is None:
            return False  # cannot happen: a body not in this queue's store is in RAM
        spool.append(backlog.encode(msg, redelivered, in_store))
        if spool.error is not None:
            self._spool_failed("cannot write the queue's spool; the backlog stays in RAM",
                               spool.error)
        if not self.ready:  # the head is never empty while the spool is not
            self._refill()
        return True

    def _refill(self) -> None:
        """Move the oldest spooled messages into the (empty) head."""
        spool = self.spool
        assert spool is not None
        try:
            records = spool.read()
        except OSError as exc:
            self._spool_failed("cannot read the queue's spool", exc)
            return
        ready = self.ready
        decode = backlog.decode
        for record in records:
            msg, redelivered = decode(record)
            ready.append(msg)
            if msg.body is not None:
                self.ram_bytes += msg.body_size
            if redelivered:
                self.redelivered.add(msg.msg_id)
        if not spool.count:
            spool.close()
            self.spool = None

    def drop_spool(self, unstore: bool) -> int:
        """Forget the spooled messages (purge, delete); returns how many there were.
        With unstore, their references in the message store are removed too."""
        spool = self.spool
        if spool is None:
            return 0
        count = spool.count
        ids: list[int] = []
        if unstore and self.persists:
            try:
                while spool.count:
                    for record in spool.read():
                        msg_id, in_store = backlog.msg_id_of(record)
                        if in_store:
                            ids.append(msg_id)
            except OSError as exc:
                self._spool_failed("cannot read the queue's spool", exc)
        spool.close()
        self.spool = None
        if ids:
            self.vhost.broker.store.remove(self.store_key, ids)
        return count

    def _spool_failed(self, what: str, exc: OSError) -> None:
        text = f"{what}: {exc}"
        if text != self._spool_error:
            self._spool_error = text
            self.vhost.broker.log.error(what, queue=self.name, vhost=self.vhost.name,
                                        error=str(exc))

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
        self.last_used = time.monotonic()
        self._priorities = any(c.priority for c in self.consumers)

    def has_exclusive_consumer(self) -> bool:
        return any(c.exclusive for c in self.consumers)

    def _pick(self) -> Consumer | None:
        consumers = self.consumers
        n = len(consumers)
        if n == 1 or (n and self.args.single_active_consumer):
            # single active consumer: the earliest registered one gets everything
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
        """Hand ready messages to consumers while any has credit.

        A paged-out body is read back before its message leaves the queue, so a
        store that cannot read it leaves the message where it was. Those reads
        block the event loop, so one call reads at most PAGE_IN_BUDGET bytes and
        asks the broker to call again soon for the rest."""
        ready = self.ready
        if not ready and self.spool is not None:
            self._refill()  # a read of the spool failed before: try again
        if self.may_expire:
            self.expire()
        budget = PAGE_IN_BUDGET
        while ready:
            consumer = self._pick()
            if consumer is None:
                return
            body = ready[0].body
            if body is None:
                if budget <= 0:
                    self.vhost.broker.dispatch_soon(self)
                    return
                body = self._read_head()
                if body is None:
                    return
                budget -= len(body)
            msg, redelivered = self._pop()
            consumer.channel.deliver(consumer, self, msg, redelivered, body)

    def _read_head(self) -> bytes | None:
        """The paged-out body of the head message; None (logged once) if the store
        cannot read it: the message stays at the head until a later attempt."""
        msg = self.ready[0]
        try:
            return self.vhost.broker.body_of(msg)
        except StoreError as exc:
            if self._unreadable != msg.msg_id:
                self._unreadable = msg.msg_id
                self.vhost.broker.log.error("message kept in its queue: its body cannot be "
                                            "read from the store", queue=self.name,
                                            vhost=self.vhost.name, error=str(exc))
            return None

    # --- policies (amqp_broker/policies.py) ----------------------------------
    applied: Any = None  # the policies.Applied in force, set by the vhost and policies

    def apply_args(self, args: QueueArgs) -> None:
        """Run with new effective arguments (a policy changed): length limits, TTL,
        expiry and dead-lettering apply from now on; ready messages stay, except those
        beyond a lower length limit or past a TTL, dropped or dead-lettered from the head
        as at publish. The expiry timer restarts, as RabbitMQ's does."""
        vhost = self.vhost
        old = self.args
        if self.refusing:
            vhost.refusing_queues -= 1
        self.args = args
        self.limited = args.limited
        self.refusing = self.limited and args.overflow != "drop-head"
        if self.refusing:
            vhost.refusing_queues += 1
        self.ttl = args.message_ttl / 1000 if args.message_ttl is not None else None
        if args.expires != old.expires:
            self.last_used = time.monotonic()
        if self.ttl is not None or args.expires is not None:
            self.may_expire = self.may_expire or self.ttl is not None
            vhost.expiring_queues.add(self)
        if self.may_expire:
            self.expire()
        if self.limited:
            self._drop_head()
        refresh_extras(self)  # a policy's delivery-limit (queue_extras.py)


def _msg_id(msg: Message) -> int:
    return msg.msg_id
