"""Stream queues (x-queue-type: stream) over AMQP 0-9-1, as RabbitMQ 3.10 exposes them.

Design. A stream is an append-only log (storage/streamlog.py) that consumers read
without removing anything: StreamQueue is a Queue whose enqueue appends to the log and
whose dispatch reads it, each StreamConsumer at its own offset, so any number of them
replay the same messages independently. The classic machinery stays out of the way:
`ready` is always empty for the rest of the broker (memory accounting, delete, head
timestamps count nothing) except that it is true while some consumer has messages left
to read, which is what makes acks and drained sockets call dispatch again.

RabbitMQ's rules, as its 3.10 answers them (checked against the reference broker):
* declare: durable, not exclusive, not auto-delete; arguments x-max-length-bytes,
  x-max-age, x-stream-max-segment-size-bytes, x-initial-cluster-size,
  x-queue-leader-locator (queue_args.py checks them and refuses the others);
* basic.consume needs a per-consumer prefetch (basic.qos, not global: 406) and manual
  acks (540); x-stream-offset is first, last, next (the default), an offset number, an
  AMQP timestamp (seconds) or an interval string like 1h; x-priority is refused (406);
  every delivery carries the x-stream-offset header (a long);
* acks only give the consumer its credit back; basic.nack and basic.reject (with
  requeue or not) are 540, and basic.recover with stream deliveries outstanding 541 (its
  stream reader fails); basic.get and queue.purge are 540; queue.delete ignores if-unused
  and if-empty and reports 0 messages. Deliveries outstanding when a channel closes are
  simply forgotten (the consumer is gone; nothing is requeued in a log).
* retention (x-max-length-bytes, x-max-age) drops whole segments of
  x-stream-max-segment-size-bytes (default 500 MB), oldest first.

Publisher confirms of messages appended to a stream wait for the log's fsync, run in the
message store's group commit (MessageStore.sync_with); without a data directory the log
is kept in memory. The classic queues' hot path gains one integer test (vhost.streams in
pipeline.publish) and nothing per message.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import policies
from .protocol import fast
from .protocol.errors import (
    INTERNAL_ERROR,
    NOT_IMPLEMENTED,
    PRECONDITION_FAILED,
    AMQPError,
)
from .protocol.fieldtable import LongLongInt, Timestamp
from .queue import Consumer, DeliveryTarget, FifoReady, Message, Queue
from .queue_args import QueueArgs
from .storage import StoreError
from .storage.streamlog import DEFAULT_SEGMENT_BYTES, StreamLog

if TYPE_CHECKING:
    from .vhost import VHost

READ_BUDGET = 4 * 1024 * 1024  # bytes read from the log per dispatch call
READ_BATCH = 256  # messages read at once for one consumer
_UNIT_MS = {"Y": 365 * 86_400_000, "M": 30 * 86_400_000, "D": 86_400_000, "h": 3_600_000,
            "m": 60_000, "s": 1000}
# consumer arguments RabbitMQ knows for some queue type but not for streams
_OTHER_CONSUMER_ARGS = ("x-priority", "x-cancel-on-ha-failover")


def max_age_ms(text: Any) -> int | None:
    """RabbitMQ's check_max_age: digits (more than 0) then one of Y M D h m s."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str):
        return None
    match = re.fullmatch(r"([0-9]+)([YMDhms])", text)
    if match is None or int(match.group(1)) == 0:
        return None
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def _rs(q: Queue) -> str:
    return f"queue '{q.name}' in vhost '{q.vhost.name}'"


class StreamReady(FifoReady):
    """A stream's `ready` as the rest of the broker sees it: always empty, but true while
    a consumer has something left to read (so acks and drained sockets dispatch)."""

    def __init__(self, stream: StreamQueue) -> None:
        super().__init__()
        self.stream = stream

    def __bool__(self) -> bool:
        if self.stream.deleted:
            return False
        end = self.stream.log.next_offset
        return any(c.offset < end for c in self.stream.consumers
                   if isinstance(c, StreamConsumer))


class StreamConsumer(Consumer):
    """A consumer reading the stream from its own offset."""

    __slots__ = ("offset",)

    def __init__(self, channel: DeliveryTarget, tag: str, tag_raw: bytes, queue: Queue,
                 exclusive: bool, prefetch: int, arguments: dict[str, Any],
                 offset: int) -> None:
        super().__init__(channel, tag, tag_raw, queue, False, exclusive, prefetch, 0, arguments)
        self.offset = offset  # the next offset to deliver

    def can_take(self) -> bool:
        # RabbitMQ streams ignore a global (channel) prefetch: only the consumer's counts
        return self.unacked < self.prefetch and self.channel.can_deliver_noack()


class StreamQueue(Queue):
    """An append-only log that consumers read without removing."""

    def __init__(self, vhost: VHost, name: str, durable: bool, exclusive_owner: object | None,
                 auto_delete: bool, arguments: dict[str, Any],
                 args: QueueArgs | None = None) -> None:
        super().__init__(vhost, name, durable, exclusive_owner, auto_delete, arguments, args)
        self.ready = StreamReady(self)
        self.limited = self.refusing = self.may_expire = False
        self.ttl = None
        self.can_spool = False
        self._applied: Any = None
        store = vhost.broker.store
        root = store.stream_root()
        directory = None
        # a broker only reading a data dir (export-definitions) must not touch the logs
        if root is not None and not vhost.broker._read_only:
            digest = hashlib.sha1(self.store_key.encode("utf-8", "surrogateescape")).hexdigest()
            directory = Path(root) / digest
        self.log = StreamLog(directory)
        self._retention()
        self.log.open({"vhost": vhost.name, "queue": name})
        self.token = 0  # the store token the latest append's fsync is part of
        self.lost = 0  # appends that failed since publish_token last looked
        # this log's key in a group commit (a stream deleted and declared again within
        # one commit has a new log that must be synced too)
        self.sync_key = f"stream\x00{self.store_key}\x00{id(self.log)}"
        self._read_error = ""

    # the log is the queue's content: counted there, never as RAM or unacked messages
    @property
    def unacked(self) -> int:
        return 0

    @unacked.setter
    def unacked(self, _value: int) -> None:
        pass  # RabbitMQ shows a stream's messages as all ready (messages = log length)

    @property
    def message_count(self) -> int:
        return self.log.count

    @property
    def ready_count(self) -> int:
        return self.log.count

    def paged_out_count(self) -> int:
        return 0

    # --- contents ----------------------------------------------------------------
    def enqueue(self, msg: Message) -> None:
        try:
            # a classic queue of the same publish may have paged the body out already
            body = msg.body if msg.body is not None else self.vhost.broker.body_of(msg)
            offset = self.log.append(msg.exchange_raw, msg.routing_key_raw, msg.properties,
                                     body)
        except StoreError as exc:
            self.vhost.broker.log.error("message not appended to the stream", queue=self.name,
                                        vhost=self.vhost.name, error=str(exc))
            self.lost += 1  # the publish is nacked (publish_token)
            return
        self.published += 1
        if self.log.dir is not None:
            self.token = self.vhost.broker.store.sync_with(self.sync_key, self.log.sync)
        if self.consumers:
            # consumers waiting at the end take it from here rather than from the log
            delivery: Message | None = None
            for c in self.consumers:
                if isinstance(c, StreamConsumer) and c.offset == offset and c.can_take():
                    if delivery is None:
                        delivery = Message(0, msg.exchange_raw, msg.routing_key_raw,
                                           with_offset(msg.properties, offset), body, len(body))
                    c.offset = offset + 1
                    c.channel.deliver(c, self, delivery, False, body)
            if self.ready:  # others are behind
                self.dispatch()

    def refuses(self, size: int) -> bool:
        return False

    def requeue(self, msgs: Iterable[Message]) -> None:
        """A closed channel's deliveries: nothing goes back into a log."""
        if self.consumers:
            self.dispatch()

    def dead_letter_settled(self, msgs: list[Message]) -> None:
        return None

    def expire(self, now: float | None = None) -> None:
        return None

    def take(self) -> tuple[Message, bool, bytes] | None:
        raise AMQPError(NOT_IMPLEMENTED, f"basic.get not supported by stream queues {_rs(self)}",
                        60, 70)

    def purge(self) -> int:
        raise AMQPError(NOT_IMPLEMENTED,
                        f"queue.purge not supported by stream queues {_rs(self)}", 50, 30)

    # --- retention: arguments, or policies (amqp_broker/policies.py) ------------------
    @property
    def applied(self) -> Any:
        return self._applied

    @applied.setter
    def applied(self, applied: Any) -> None:
        """The policies in force changed (or were set at declare): for a stream their
        max-length-bytes, max-age and stream-max-segment-size-bytes win over the arguments,
        applied (as RabbitMQ) when a segment is full and at start-up."""
        self._applied = applied
        self._retention()

    def apply_args(self, args: QueueArgs) -> None:
        self.args = args
        self._retention()

    def _retention(self) -> None:
        definition = self._applied.definition if self._applied is not None else {}
        effective = policies.effective_arguments(self.arguments, definition, "stream")
        log = self.log
        log.max_bytes = self.args.max_length_bytes
        log.max_age_ms = max_age_ms(effective.get("x-max-age"))
        segment = effective.get("x-stream-max-segment-size-bytes")
        if isinstance(segment, int) and not isinstance(segment, bool) and segment > 0:
            log.segment_bytes = segment
        else:
            log.segment_bytes = DEFAULT_SEGMENT_BYTES

    def destroy(self) -> None:
        """The queue was deleted: the log goes with it."""
        self.log.destroy()

    # --- consumers -----------------------------------------------------------------
    def start_offset(self, spec: Any) -> int:
        """Where a consumer with this (already checked) x-stream-offset starts."""
        log = self.log
        if spec is None or spec == "next":
            return log.next_offset
        if spec == "first":
            return log.first_offset
        if spec == "last":
            return log.next_offset - 1 if log.count else log.next_offset
        if isinstance(spec, Timestamp):
            return log.offset_at(int(spec) * 1000)
        if isinstance(spec, int):
            return log.clamp(spec)
        ms = max_age_ms(spec)
        assert ms is not None
        return log.offset_at(int(time.time() * 1000) - ms)

    def dispatch(self) -> None:
        """Hand each consumer the messages after its offset while it has credit; reads
        stop after READ_BUDGET bytes and continue on the broker's next turn."""
        if self.deleted:
            return
        log = self.log
        end = log.next_offset
        budget = READ_BUDGET
        for c in list(self.consumers):
            if not isinstance(c, StreamConsumer):
                continue
            while c.offset < end and budget > 0 and c.can_take():
                try:
                    entries = log.read(c.offset, min(c.prefetch - c.unacked, READ_BATCH))
                except StoreError as exc:
                    self._unreadable_log(str(exc))
                    return
                if not entries:
                    break
                for e in entries:
                    if not c.can_take():
                        break
                    c.offset = e.offset + 1
                    budget -= len(e.body)
                    msg = Message(0, e.exchange, e.routing_key, with_offset(e.properties,
                                                                             e.offset),
                                  e.body, len(e.body))
                    c.channel.deliver(c, self, msg, False, e.body)
        if budget <= 0 and self.ready:
            self.vhost.broker.dispatch_soon(self)

    def _unreadable_log(self, text: str) -> None:
        if text != self._read_error:
            self._read_error = text
            self.vhost.broker.log.error("stream consumers wait: the log cannot be read",
                                        queue=self.name, vhost=self.vhost.name, error=text)


def with_offset(props: bytes, offset: int) -> bytes:
    """The message's properties with its x-stream-offset header (a long) last."""
    decoded = fast.decode_properties(props)
    headers = dict(decoded.headers or {})
    headers.pop("x-stream-offset", None)
    headers["x-stream-offset"] = LongLongInt(offset)
    decoded.headers = headers
    return fast.encode_properties(decoded)


# --- basic.consume on a stream (handlers/basic.py) ------------------------------------
class _Unusable:
    """An x-stream-offset RabbitMQ's check lets through and its stream reader fails on."""

    def __init__(self, value: Any) -> None:
        self.value = value


def check_offset(q: Queue, arguments: dict[str, Any]) -> Any:
    """x-stream-offset as RabbitMQ's consume argument check and parse_offset_arg read it:
    the offset spec (None: next), or _Unusable for a value of another type."""
    if "x-stream-offset" not in arguments:
        return None
    spec = arguments["x-stream-offset"]
    if isinstance(spec, (bytes, bytearray)):
        spec = bytes(spec).decode("utf-8", "surrogateescape")
    if spec in ("first", "last", "next") or isinstance(spec, Timestamp):
        return spec
    if isinstance(spec, str):
        if not spec[:1].isdigit():  # RabbitMQ's interval parser fails on it (541)
            raise _internal_error(q, f"'{spec}'")
        if max_age_ms(spec) is None:
            shown = spec.encode("utf-8", "surrogateescape").decode("latin-1")
            raise AMQPError(PRECONDITION_FAILED,
                            f"invalid arg 'x-stream-offset' for {_rs(q)}: "
                            f'{{invalid_stream_offset_arg,{{longstr,<<"{shown}">>}}}}', 60, 20)
        return spec
    if isinstance(spec, int) and not isinstance(spec, bool):
        return spec
    return _Unusable(spec)


def _internal_error(q: Queue, shown: str) -> AMQPError:
    q.vhost.broker.log.warning("basic.consume refused: unusable x-stream-offset", queue=q.name,
                               vhost=q.vhost.name, offset=shown)
    return AMQPError(INTERNAL_ERROR, f"x-stream-offset {shown} is not an offset of {_rs(q)}",
                     60, 20)


def consumer(channel: Any, q: StreamQueue, tag: str, tag_raw: bytes, no_ack: bool,
             exclusive: bool, arguments: dict[str, Any]) -> StreamConsumer:
    """A stream consumer after RabbitMQ's checks, in its order: argument values, argument
    names, prefetch, automatic acks, then what its stream reader fails on."""
    spec = check_offset(q, arguments)
    for name in arguments:
        if name in _OTHER_CONSUMER_ARGS:
            raise AMQPError(PRECONDITION_FAILED, f"invalid arg '{name}' for {_rs(q)} of queue "
                            "type rabbit_stream_queue", 60, 20)
    if not channel.prefetch_count:
        raise AMQPError(PRECONDITION_FAILED,
                        f"consumer prefetch count is not set for '{_rs(q)}'", 60, 20)
    if no_ack:
        raise AMQPError(NOT_IMPLEMENTED,
                        f"automatic acknowledgement not supported by stream queues {_rs(q)}",
                        60, 20)
    if isinstance(spec, _Unusable):
        raise _internal_error(q, f"of type {type(spec.value).__name__}")
    return StreamConsumer(channel, tag, tag_raw, q, exclusive, channel.prefetch_count,
                          arguments, q.start_offset(spec))


def refuse_settle(channel: Any, tag: int, multiple: bool, method_id: int) -> None:
    """basic.nack or basic.reject of a stream delivery, with requeue or not: 540, as
    RabbitMQ 3.10 answers it."""
    unacked = channel.unacked
    if multiple:
        queues = [d[1] for t, d in unacked.items() if tag == 0 or t <= tag]
    else:
        d = unacked.get(tag)
        queues = [d[1]] if d is not None else []
    for q in queues:
        if isinstance(q, StreamQueue):
            raise AMQPError(NOT_IMPLEMENTED, "basic.nack and basic.reject not supported by "
                            f"stream queues {_rs(q)}", 60, method_id)


def refuse_recover(channel: Any) -> None:
    """basic.recover with stream deliveries outstanding: RabbitMQ fails (541)."""
    for _msg, q, _consumer in channel.unacked.values():
        if isinstance(q, StreamQueue):
            channel.broker.log.warning("basic.recover refused: stream deliveries cannot be "
                                       "requeued", queue=q.name, vhost=q.vhost.name)
            raise AMQPError(INTERNAL_ERROR, "basic.recover cannot requeue the deliveries of "
                            f"stream {_rs(q)}", 60, 110)


# --- publish (pipeline.py) -----------------------------------------------------------
def classic_only(queues: Collection[Queue]) -> list[Queue]:
    """The queues whose persistent messages go to the message store (not streams)."""
    return [q for q in queues if not isinstance(q, StreamQueue)]


def publish_token(token: int, queues: Collection[Queue]) -> tuple[int, bool]:
    """The store token a confirm of a message appended to these streams waits for, and
    whether some stream could not append it (the publish is then nacked)."""
    lost = False
    for q in queues:
        if isinstance(q, StreamQueue):
            if q.token > token:
                token = q.token
            if q.lost:
                q.lost = 0
                lost = True
    return token, lost
