"""The plain integer counters the broker and its channels keep for metrics.

The message path only increments them; amqp_broker.metrics (Prometheus) and the
management API read them when asked. They live in small __slots__ objects rather than
as attributes of Broker and Channel: CPython (3.11+) keeps an instance's attributes
in a compact, specialisable layout only up to 30 of them, and an object past that
makes every attribute access on it slower, on the hot path too.
"""

from __future__ import annotations

from typing import Any

# upper bounds of the message size histogram's buckets (RabbitMQ's); past the last: +Inf
SIZE_BOUNDS = (100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 50_000_000, 100_000_000)


class BrokerCounters:
    """Totals since start: never go down (a closing channel adds its counts to `retired`)."""

    __slots__ = ("auth_attempts", "auth_failed", "channel_errors", "channels_closed",
                 "channels_opened", "connections_closed", "dead_lettered",
                 "connections_opened", "queues_created", "queues_declared", "queues_deleted",
                 "received", "retired", "routed", "size_counts", "size_sum", "unroutable")

    def __init__(self) -> None:
        self.received = 0  # messages published (basic.publish, the API's publish)
        self.unroutable = 0  # of which no queue took
        self.routed = 0  # queue copies of published messages
        # body bytes of every message received, and how many fell in each SIZE_BOUNDS
        # bucket; the first bucket's count is not kept (the most common case costs
        # nothing): it is `received` minus the other buckets (metrics.size_buckets)
        self.size_sum = 0
        self.size_counts = [0] * (len(SIZE_BOUNDS) + 1)
        self.channel_errors = 0
        self.auth_attempts = 0  # logins checked (AMQP and the management API), and refused
        self.auth_failed = 0
        self.connections_opened = 0
        self.connections_closed = 0
        self.channels_opened = 0
        self.channels_closed = 0
        self.queues_declared = 0
        self.queues_created = 0
        self.queues_deleted = 0
        self.retired: dict[str, int] = {}  # closed channels' counters (Broker.retire_channel)
        # messages dead-lettered to an existing exchange, by reason (rejected, expired,
        # maxlen), and dropped for want of one (expired, maxlen; rejected ones without a
        # dead-letter exchange are the channels' `rejected` less those dead-lettered)
        self.dead_lettered: dict[tuple[str, str], int] = {}


class ChannelCounters:
    """One channel's counts. More are derived from what a channel keeps anyway:
    deliveries = next_tag, received in confirm mode = publish_seq, confirmed =
    _confirm_told - confirm_nacks."""

    __slots__ = ("acked", "confirm_nacks", "get_auto", "get_empty", "get_manual",
                 "manual_delivered", "published", "redelivered", "rejected", "returned",
                 "unroutable")

    def __init__(self) -> None:
        self.published = 0
        self.unroutable = 0  # of which returned (mandatory); the rest were dropped
        self.returned = 0
        self.confirm_nacks = 0
        self.manual_delivered = 0  # deliveries that wait for an ack (consume or get)
        self.get_manual = 0
        self.get_auto = 0
        self.get_empty = 0
        self.redelivered = 0
        self.acked = 0  # messages settled by basic.ack
        self.rejected = 0  # settled by basic.reject or basic.nack without requeue

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


# the Channel attributes that count, besides its ChannelCounters
CHANNEL_ATTRIBUTES = ("next_tag", "publish_seq", "_confirm_told")


def channel_counts(ch: Any) -> dict[str, int]:
    """A channel's counters and counting attributes, by name."""
    counts: dict[str, int] = ch.counters.as_dict()
    for name in CHANNEL_ATTRIBUTES:
        counts[name] = getattr(ch, name)
    return counts


class Count:
    """A Broker attribute that is a BrokerCounters field (for the code that reads
    `broker.published` and friends; the message path uses broker.counters directly)."""

    def __init__(self, field: str) -> None:
        self.field = field

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        return self if obj is None else getattr(obj.counters, self.field)

    def __set__(self, obj: Any, value: int) -> None:
        setattr(obj.counters, self.field, value)
