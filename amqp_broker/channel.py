"""One AMQP channel: content assembly, deliveries, settlement, confirms, tx.

Method handlers live in amqp_broker.handlers (grouped per AMQP class); this
module keeps the state they share and the per-message hot path: publish
(assemble content, route, enqueue), deliver, and settle (ack, nack, reject
all go through `settle`).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import TYPE_CHECKING, Any

from pamqp import commands

from . import permissions, pipeline, reply_to
from .counters import SIZE_BOUNDS, ChannelCounters
from .exchanges.topic import Finished, RouteDeferred
from .protocol import fast
from .protocol.assembler import Command, ContentAssembler
from .protocol.channels import ChannelState
from .protocol.codec import Method, encode_method, make
from .protocol.errors import (
    ACCESS_REFUSED,
    INTERNAL_ERROR,
    NO_ROUTE,
    NOT_FOUND,
    PRECONDITION_FAILED,
    AMQPError,
)
from .protocol.frames import method_frame
from .queue import MESSAGE_OVERHEAD, Consumer, Message, Queue

if TYPE_CHECKING:
    from .connection import Connection
    from .vhost import Authorize, Exchange

ACK, DROP, REQUEUE = 0, 1, 2
UNACKED_SAMPLE = 32  # deliveries sampled to estimate what a channel's unacked ones hold
_NACK = -1  # confirm token of a publish an overflow policy refused

Delivery = tuple[Message, Queue, "Consumer | None"]


class Channel:
    def __init__(self, connection: Connection, number: int) -> None:
        self.connection = connection
        self.broker = connection.broker
        self.vhost = connection.vhost
        self.store = connection.broker.store
        self.number = number
        self.state = ChannelState.OPEN
        # method, header and body frames -> one publish (protocol.assembler)
        self.content = ContentAssembler(connection.broker.config.max_message_size)
        # consumers and deliveries
        self.consumers: dict[str, Consumer] = {}
        self.prefetch_count = 0  # per consumer, for consumers created later
        self.global_prefetch = 0  # per channel
        self.next_tag = 0
        self.unacked: dict[int, Delivery] = {}
        self._low_tag = 1  # no unacked tag below this
        # (next delivery tag, time) samples taken by the broker's sweep: a delivery with a
        # tag above a sample's was made after that sample's time (consumer timeout)
        self.tag_marks: deque[tuple[int, float]] = deque()
        self.opened_at = time.monotonic()
        self.unacked_count = 0  # unacked deliveries counted against global prefetch
        # publisher confirms
        self.confirm_mode = False
        self.publish_seq = 0
        self._confirm_ready = 0  # every seq up to here is confirmed but not yet told
        self._confirm_told = 0
        # transactions
        self.reply_to: tuple[str, bytes, str] | None = None  # direct reply-to consumer
        self.tx_mode = False
        # the exchange this channel last had write permission on, and the permission
        # generation then: a publisher's repeated check is two comparisons
        self._writable: str | None = None
        self._writable_generation = -1
        self.tx_publishes: list[tuple[str, bytes, bytes, str, int, bytes, bytes]] = []
        self.tx_settles: list[tuple[list[tuple[int, Delivery]], int]] = []
        # counters for metrics, added into the broker's totals at shutdown
        self.counters = ChannelCounters()
        self.broker.counters.channels_opened += 1

    # --- output ------------------------------------------------------------
    def send(self, method: type[Method], **values: Any) -> None:
        self.connection.send_method(self.number, method, **values)

    def send_synced(self, definition_keys: tuple[str, ...], method: type[Method],
                    **values: Any) -> None:
        """Reply to a declare, bind or delete once the durable definitions it is about
        are on disk (their latest write, whoever made it)."""
        token = self.broker.definition_token(*definition_keys) if definition_keys else 0
        self.send_after(token, method, **values)

    def send_after(self, token: int, method: type[Method], **values: Any) -> None:
        """Reply once the store synced through token; token 0 depends on nothing."""
        if not token:
            self.send(method, **values)
            return
        frame = method_frame(self.number, encode_method(make(method, **values)))
        self.connection.reply_after(token, self._write_synced, frame)

    def _write_synced(self, frame: bytes, ok: bool) -> None:
        if self.state is not ChannelState.OPEN:
            return
        if not ok:
            self.connection.close_with(AMQPError(
                INTERNAL_ERROR, "the message store could not write to disk (see the broker log)"))
            return
        self.connection.write(frame)

    # --- content assembly (protocol.assembler) ------------------------------
    def on_publish(self, payload: bytes) -> None:
        self.content.publish(payload)

    def on_header(self, payload: bytes) -> None:
        command = self.content.header(payload)
        if command is not None:
            self._complete(command)

    def on_body(self, payload: bytes | memoryview) -> None:
        command = self.content.body(payload)
        if command is not None:
            self._complete(command)

    def expecting_content(self) -> bool:
        return self.content.expecting_content

    def _complete(self, command: Command) -> None:
        ex_raw, rk_raw, exchange, routing_key, mandatory, props, body = command
        if self.tx_mode:
            self.get_exchange_for_publish(exchange, routing_key)
            self.tx_publishes.append((exchange, ex_raw, rk_raw, routing_key, mandatory,
                                      props, body))
            return
        self.publish(exchange, ex_raw, rk_raw, routing_key, mandatory, props, body,
                     self.connection.finished_routes)

    # --- permissions (amqp_broker.permissions) ------------------------------
    def permit(self, kind: str, name: str, perm: str) -> None:
        """403 unless the user may `perm` (configure, write, read) the exchange or queue."""
        permissions.check_resource(self.connection.access, self.vhost.name, kind, name, perm)

    def permit_topic(self, ex: Exchange, routing_key: str, perm: str) -> None:
        """403 unless the user's topic permissions on ex allow the routing key."""
        permissions.check_topic(self.connection.access, self.vhost.name, ex, routing_key, perm)

    def declare_checks(self, kind: str, arguments: dict[str, Any]) -> Authorize:
        """The permission checks of a declare, for VHost.declare_* to run once the name
        is known and whether it is new."""
        access, vhost = self.connection.access, self.vhost.name
        return lambda name, new: permissions.check_declare(access, vhost, kind, name, new,
                                                           arguments)

    def permit_binding(self, dest_kind: str, dest: str, source: str,
                       routing_key: str) -> None:
        """403 unless the user may bind dest to source with routing_key."""
        permissions.check_binding(self.connection.access, self.vhost.name,
                                  self.vhost.exchanges, dest_kind, dest, source, routing_key)

    # --- publish -------------------------------------------------------------
    def get_exchange_for_publish(self, name: str, routing_key: str) -> Any:
        # RabbitMQ's order: write permission, then 404, internal, topic permission
        access = self.connection.access.access
        if name != self._writable or self._writable_generation != access.generation:
            self.permit("exchange", name, "write")
            self._writable, self._writable_generation = name, access.generation
        ex = self.vhost.exchanges.get(name)
        if ex is None:
            raise AMQPError(NOT_FOUND, f"no exchange '{name}' {self.vhost.where()}", 60, 40)
        if ex.internal:
            raise AMQPError(ACCESS_REFUSED, f"cannot publish to internal exchange '{name}' "
                            f"{self.vhost.where()}", 60, 40)
        if ex.type_name == "topic":
            self.permit_topic(ex, routing_key, "write")
        return ex

    def publish(self, exchange: str, ex_raw: bytes, rk_raw: bytes, routing_key: str,
                mandatory: int, props: bytes, body: bytes,
                finished: Finished | None = None) -> int:
        """Route and enqueue one message; returns the store token it waits on (0: none).

        With finished, a long topic match is run in slices (Connection.route_later) and
        this publish is made again once it is done: everything before routing must stay
        repeatable (the reply-to rewrite of already rewritten properties changes nothing).
        """
        ex = self.get_exchange_for_publish(exchange, routing_key)
        flags = fast.flags_of(props)
        expires = None
        if flags & fast.FLAG_SPECIAL:
            expires, props = self._check_special(flags, props)
        if not exchange and routing_key.startswith(reply_to.PREFIX):
            if reply_to.deliver_reply(self, routing_key, ex_raw, rk_raw, props, body):
                if self.confirm_mode:
                    self._confirm_published(0)
                return 0
        vhost = self.vhost
        try:
            queues = vhost.route(ex, routing_key, lambda: fast.message_headers(props), finished)
        except RouteDeferred as deferred:
            conn = self.connection
            conn.route_later(deferred.task, self, lambda: self.publish(
                exchange, ex_raw, rk_raw, routing_key, mandatory, props, body,
                conn.finished_routes))
            return 0
        totals = self.broker.counters
        totals.received += 1
        self.counters.published += 1
        self.connection.published += 1
        size = len(body)
        totals.size_sum += size
        if size > 100:  # SIZE_BOUNDS[0]: the first bucket is derived (metrics.size_buckets)
            totals.size_counts[bisect_left(SIZE_BOUNDS, size)] += 1
        token, refused, taken = pipeline.publish(self.vhost, ex.name, ex_raw, routing_key, rk_raw,
                                                 props, body, queues, expires)
        if taken:
            totals.routed += len(queues)
        elif not refused:
            totals.unroutable += 1
            self.counters.unroutable += 1
            if mandatory:
                self.counters.returned += 1
                self.connection.write(method_frame(self.number, encode_method(make(
                    commands.Basic.Return, reply_code=NO_ROUTE, reply_text="NO_ROUTE",
                    exchange=exchange, routing_key=routing_key))))
                self.connection.write_content(self.number, props, body)
        if self.confirm_mode:
            self._confirm_published(_NACK if refused else token)
        return token

    def _confirm_published(self, token: int) -> None:
        """Track a publish for publisher confirms: confirmed once the store synced
        through token (0: nothing to wait for); _NACK refuses it."""
        self.publish_seq += 1
        gate = self.connection.gate
        if token == _NACK:
            if gate.waiting:
                gate.hold(0, self._nack, self.publish_seq)
            else:
                self._nack(self.publish_seq, True)
        elif gate.ready(token):
            self._confirm_ready = self.publish_seq
            self.connection.confirms_due.add(self)
        else:
            gate.hold(token, self._confirmed, self.publish_seq)

    def _confirmed(self, seq: int, ok: bool) -> None:
        if not ok:
            self._nack(seq, ok)
        elif self.state is ChannelState.OPEN:
            self._confirm_ready = seq
            self.connection.confirms_due.add(self)

    def _nack(self, seq: int, _ok: bool) -> None:
        if self.state is ChannelState.OPEN:
            self.counters.confirm_nacks += 1
            self.flush_confirms()
            self.send(commands.Basic.Nack, delivery_tag=seq, multiple=False, requeue=False)
            self._confirm_told = self._confirm_ready = seq

    def _check_special(self, flags: int, props: bytes) -> tuple[float | None, bytes]:
        """user-id must match the login; expiration gives a per-message TTL (seconds);
        a direct reply-to request gets its reply_to rewritten. Returns (ttl, props)."""
        decoded = fast.decode_properties(props)
        if flags & fast.FLAG_REPLY_TO:
            props = reply_to.rewrite_request(self, decoded) or props
        if flags & fast.FLAG_USER_ID:
            try:
                permissions.check_user_id(self.connection.access, decoded.user_id)
            except AMQPError as exc:
                raise exc.with_method(60, 40) from None
        if flags & fast.FLAG_EXPIRATION:
            try:
                ttl = int(str(decoded.expiration))
                if ttl < 0:
                    raise ValueError
            except (TypeError, ValueError):
                raise AMQPError(PRECONDITION_FAILED,
                                f"invalid expiration '{decoded.expiration}'", 60, 40) from None
            return ttl / 1000, props
        return None, props

    def flush_confirms(self) -> None:
        ready = self._confirm_ready
        if ready > self._confirm_told and self.state is ChannelState.OPEN:
            self.send(commands.Basic.Ack, delivery_tag=ready,
                      multiple=ready - self._confirm_told > 1)
            self._confirm_told = ready

    # --- deliveries ----------------------------------------------------------
    def can_deliver(self) -> bool:
        return (not self.connection.write_blocked
                and (not self.global_prefetch or self.unacked_count < self.global_prefetch))

    def can_deliver_noack(self) -> bool:
        return not self.connection.write_blocked

    def deliver(self, consumer: Consumer, queue: Queue, msg: Message, redelivered: bool,
                body: bytes) -> None:
        props = msg.properties
        if redelivered and queue.extras is not None:  # x-delivery-count
            props = queue.extras.properties(msg, props)
        tag = self.track(queue, msg, consumer, consumer.no_ack)
        if redelivered:
            self.counters.redelivered += 1
        self.write_delivery(tag, redelivered, msg.exchange_raw, msg.routing_key_raw,
                            props, body, consumer.tag_raw)

    def write_delivery(self, tag: int, redelivered: bool, exchange_raw: bytes,
                       routing_key_raw: bytes, props: bytes, body: bytes,
                       consumer_tag_raw: bytes | None = None, message_count: int = 0) -> None:
        """The one writer of a message to this channel's client: basic.deliver for a
        consumer (consumer_tag_raw) or direct reply-to, basic.get-ok for basic.get."""
        conn = self.connection
        if consumer_tag_raw is not None:
            frames = fast.deliver_frames(self.number, consumer_tag_raw, tag, redelivered,
                                         exchange_raw, routing_key_raw, props, body,
                                         conn.frame_max)
            if isinstance(frames, bytes):
                conn.write(frames)
            else:
                conn.write_parts(frames)
            return
        conn.write(method_frame(self.number, encode_method(make(
            commands.Basic.GetOk, delivery_tag=tag, redelivered=redelivered,
            exchange=exchange_raw[1:], routing_key=routing_key_raw[1:],
            message_count=message_count))))
        conn.write_content(self.number, props, body)

    def track(self, queue: Queue, msg: Message, consumer: Consumer | None, no_ack: bool) -> int:
        """Account for a delivery (consumer or basic.get); returns its delivery tag."""
        self.next_tag += 1
        tag = self.next_tag
        queue.delivered += 1
        if no_ack:
            if msg.stored and queue.persists:
                self.store.remove(queue.store_key, (msg.msg_id,))
            if queue.extras is not None:
                queue.extras.left((msg,))
        else:
            self.unacked[tag] = (msg, queue, consumer)
            self.unacked_count += 1
            self.counters.manual_delivered += 1
            queue.unacked += 1
            if consumer is not None:
                consumer.unacked += 1
            if msg.stored and queue.persists:
                self.store.mark_delivered(queue.store_key, msg.msg_id)
        return tag

    # --- settlement: ack, nack, reject, recover all end here ------------------
    def collect(self, tag: int, multiple: bool) -> list[tuple[int, Delivery]]:
        """Take deliveries out of the unacked map; 406 for an unknown tag."""
        unacked = self.unacked
        if multiple:
            if tag == 0:
                taken = list(unacked.items())
                unacked.clear()
                self._low_tag = self.next_tag + 1
                return taken
            if tag > self.next_tag:
                raise AMQPError(PRECONDITION_FAILED, f"unknown delivery tag {tag}")
            taken = []
            for t in range(self._low_tag, tag + 1):
                d = unacked.pop(t, None)
                if d is not None:
                    taken.append((t, d))
            self._low_tag = tag + 1
            if not taken:
                raise AMQPError(PRECONDITION_FAILED, f"unknown delivery tag {tag}")
            return taken
        d = unacked.pop(tag, None)
        if d is None:
            raise AMQPError(PRECONDITION_FAILED, f"unknown delivery tag {tag}")
        if tag == self._low_tag:
            self._low_tag = tag + 1
        return [(tag, d)]

    def settle(self, tag: int, multiple: bool, action: int) -> None:
        taken = self.collect(tag, multiple)
        if self.tx_mode:
            self.tx_settles.append((taken, action))
            return
        self.apply_settle(taken, action)

    def apply_settle(self, taken: list[tuple[int, Delivery]], action: int) -> None:
        if action == ACK:
            self.counters.acked += len(taken)
        elif action == DROP:
            self.counters.rejected += len(taken)
        requeue: dict[Queue, list[Message]] = {}
        removed: dict[Queue, list[int]] = {}
        dead: dict[Queue, list[Message]] = {}
        touched: set[Queue] = set()
        for _tag, (msg, queue, consumer) in taken:
            self.unacked_count -= 1
            queue.unacked -= 1
            if consumer is not None:
                consumer.unacked -= 1
                touched.add(consumer.queue)
            if queue.deleted:
                continue
            if action == REQUEUE:
                requeue.setdefault(queue, []).append(msg)
            else:
                queue.acked += 1
                if queue.extras is not None:
                    queue.extras.left((msg,))
                if action == DROP and queue.args.dead_letter_exchange is not None:
                    dead.setdefault(queue, []).append(msg)
                if msg.stored and queue.persists:
                    removed.setdefault(queue, []).append(msg.msg_id)
        for queue, msgs in dead.items():
            queue.dead_letter_settled(msgs)
        for queue, ids in removed.items():
            self.store.remove(queue.store_key, ids)
        for queue, msgs in requeue.items():
            queue.requeue(msgs)
        if self.global_prefetch:
            touched.update(c.queue for c in self.consumers.values())
        for queue in touched:
            if queue.ready and queue.consumers:
                queue.dispatch()

    def rollback(self) -> None:
        """Forget the transaction's publishes; its acks, nacks and rejects never
        happened, so those deliveries are unacked again."""
        self.tx_publishes = []
        for taken, _action in self.tx_settles:
            for tag, d in taken:
                self.unacked[tag] = d
                self._low_tag = min(self._low_tag, tag)
        self.tx_settles = []

    def requeue_all(self) -> None:
        """Give every unacked delivery back to its queue (channel close, recover)."""
        if self.unacked:
            taken = sorted(self.unacked.items())
            self.unacked.clear()
            self._low_tag = self.next_tag + 1
            self.apply_settle(taken, REQUEUE)

    # --- consumers ------------------------------------------------------------
    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers[consumer.tag] = consumer
        consumer.queue.add_consumer(consumer)

    def remove_consumer(self, tag: str) -> Consumer | None:
        consumer = self.consumers.pop(tag, None)
        if consumer is not None:
            queue = consumer.queue
            queue.remove_consumer(consumer)
            if queue.auto_delete and not queue.consumers and not queue.deleted:
                self.vhost.remove_queue(queue)
        return consumer

    def cancel_by_server(self, consumer: Consumer) -> None:
        """The queue went away under the consumer: tell clients that asked to be told."""
        self.consumers.pop(consumer.tag, None)
        if self.state is ChannelState.OPEN and self.connection.capability(
                "consumer_cancel_notify"):
            self.send(commands.Basic.Cancel, consumer_tag=consumer.tag, nowait=True)

    def kick(self) -> None:
        """Deliveries may resume (socket drained, flow on): wake this channel's queues."""
        for queue in {c.queue for c in self.consumers.values()}:
            if queue.ready:
                queue.dispatch()

    def unacked_bytes_estimate(self) -> int:
        """RAM held by the unacknowledged deliveries, from the bodies of the oldest few
        (bodies paged out count nothing): O(UNACKED_SAMPLE), not O(unacked)."""
        unacked = self.unacked
        n = len(unacked)
        body = seen = 0
        for msg, _queue, _consumer in islice(unacked.values(), UNACKED_SAMPLE):
            seen += 1
            if msg.body is not None:
                body += msg.body_size
        return n * MESSAGE_OVERHEAD + (body * n // seen if seen else 0)

    def oldest_unacked_since(self, now: float) -> float | None:
        """No earlier than this the oldest unacked delivery was made (None: none)."""
        marks = self.tag_marks
        if not self.unacked:
            # everything delivered so far is settled; later deliveries come after now
            marks.clear()
            marks.append((self.next_tag, now))
            return None
        if not marks or marks[-1][0] != self.next_tag:
            marks.append((self.next_tag, now))
        oldest = next(iter(self.unacked))
        while len(marks) > 1 and marks[1][0] < oldest:
            marks.popleft()
        return marks[0][1] if marks[0][0] < oldest else self.opened_at

    # --- teardown -------------------------------------------------------------
    def shutdown(self) -> None:
        """Release everything the channel holds; called once when it closes."""
        if self.state is ChannelState.CLOSED:
            return
        self.state = ChannelState.CLOSED
        self.broker.retire_channel(self)
        reply_to.release(self)
        for tag in list(self.consumers):
            self.remove_consumer(tag)
        self.rollback()
        self.requeue_all()


# a method handler takes the channel and the pamqp method object it received
Handler = Callable[[Channel, Any], None]
Handlers = dict[type[Method], Handler]
