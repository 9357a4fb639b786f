"""Message rates for the management API, sampled from counters the broker already keeps.

Nothing here runs per message: a timer (`Rates.run`, started by the app) takes a sample
of plain integer counters every INTERVAL seconds: each channel's (Channel.COUNTERS, the
ones the metrics use), the broker's totals (those of closed channels in Broker.retired
plus the open ones), each queue's published/delivered/acked and depth, each
connection's octets. A rate is the change between the two newest samples divided by
the time between them, as RabbitMQ's "basic" rates mode reports it (`{"rate": r}`).

Counters are shown with RabbitMQ's message_stats names (`message_counts`): publish,
confirm, return_unroutable, drop_unroutable, deliver, deliver_no_ack, get, get_no_ack,
get_empty, redeliver, deliver_get, ack. Broker-wide totals keep a longer history
(HISTORY samples) for charts: `total_details` adds RabbitMQ's `samples`, `avg` and
`avg_rate` when asked (`?msg_rates_age=&msg_rates_incr=`, `?lengths_age=&lengths_incr=`).
Per-object history is two samples, so memory stays proportional to the number of
queues, connections and channels.
"""

from __future__ import annotations

import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from .. import counters as counting

if TYPE_CHECKING:
    from ..broker import Broker
    from ..channel import Channel
    from ..connection import Connection
    from ..queue import Queue

INTERVAL = 5.0  # seconds between samples (RabbitMQ's collect_statistics_interval)
HISTORY = 120  # broker-wide samples kept: ten minutes at INTERVAL

# message_stats fields, in RabbitMQ's names, derived from the channel counters
PUBLISH_STATS = ("publish", "confirm", "return_unroutable", "drop_unroutable")
DELIVER_STATS = ("deliver", "deliver_no_ack", "get", "get_no_ack", "get_empty", "redeliver",
                 "deliver_get", "ack")
MESSAGE_STATS = PUBLISH_STATS + DELIVER_STATS
DEPTHS = ("messages", "messages_ready", "messages_unacknowledged")
TOTAL_FIELDS = MESSAGE_STATS + DEPTHS
QUEUE_FIELDS = ("publish", "deliver_get", "ack") + DEPTHS
CONNECTION_FIELDS = ("recv_oct", "send_oct")

Sample = tuple[float, tuple[int, ...]]  # (monotonic time, counter values)


def message_counts(raw: Mapping[str, int]) -> dict[str, int]:
    """RabbitMQ's message_stats counts from channel counters (Channel.COUNTERS names):
    deliveries are delivery tags, less gets; those that need no ack are the rest."""
    deliver_get = raw.get("next_tag", 0)
    manual = raw.get("manual_delivered", 0)
    get_manual = raw.get("get_manual", 0)
    get_auto = raw.get("get_auto", 0)
    unroutable = raw.get("unroutable", 0)
    returned = raw.get("returned", 0)
    return {
        "publish": raw.get("published", 0),
        "confirm": raw.get("_confirm_told", 0) - raw.get("confirm_nacks", 0),
        "return_unroutable": returned,
        "drop_unroutable": unroutable - returned,
        "deliver": manual - get_manual,
        "deliver_no_ack": max(0, deliver_get - manual - get_auto),
        "get": get_manual,
        "get_no_ack": get_auto,
        "get_empty": raw.get("get_empty", 0),
        "redeliver": raw.get("redelivered", 0),
        "deliver_get": deliver_get,
        "ack": raw.get("acked", 0),
    }


def channel_raw(ch: Channel) -> dict[str, int]:
    """The channel's counters by name (amqp_broker.counters)."""
    return counting.channel_counts(ch)


def channel_counts(ch: Channel) -> dict[str, int]:
    return message_counts(channel_raw(ch))


def broker_counts(broker: Broker) -> dict[str, int]:
    """The broker's message_stats counts: closed channels' (Broker.retired) and the open
    ones'; they never go down."""
    raw: dict[str, int] = dict(broker.counters.retired)
    for session in broker.connections:
        for ch in getattr(session, "channels", {}).values():
            for name, value in channel_raw(ch).items():
                raw[name] = raw.get(name, 0) + value
    return message_counts(raw)


def queue_key(q: Queue) -> tuple[str, str, str]:
    return ("queue", q.vhost.name, q.name)


def queue_counters(q: Queue) -> tuple[int, ...]:
    """In QUEUE_FIELDS order."""
    ready = q.ready_count
    return (q.published, q.delivered, q.acked, ready + q.unacked, ready, q.unacked)


def connection_counters(conn: Connection) -> tuple[int, ...]:
    """In CONNECTION_FIELDS order."""
    return (conn.recv_oct, conn.send_oct)


class Rates:
    """Samples of one broker's counters; `sample()` takes one (the timer calls it)."""

    def __init__(self, broker: Broker, interval: float = INTERVAL,
                 history: int = HISTORY, clock: Callable[[], float] = time.monotonic) -> None:
        self.broker = broker
        self.interval = interval
        self.clock = clock
        self.totals: deque[Sample] = deque(maxlen=history)
        # key -> (previous sample, newest sample) of each live object
        self.objects: dict[Any, tuple[Sample | None, Sample]] = {}
        self.running = False

    # --- sampling ---------------------------------------------------------------------
    def sample(self) -> None:
        """Take one sample of every counter; objects gone since the last one are forgotten."""
        now = self.clock()
        broker = self.broker
        old = self.objects
        new: dict[Any, tuple[Sample | None, Sample]] = {}
        messages = ready = unacked = 0
        for vhost in broker.vhosts.values():
            for q in vhost.queues.values():
                values = queue_counters(q)
                messages += values[3]
                ready += values[4]
                unacked += values[5]
                _keep(new, old, queue_key(q), (now, values))
        for session in broker.connections:
            conn: Any = session
            if hasattr(conn, "channels"):
                _keep(new, old, ("connection", id(conn)), (now, connection_counters(conn)))
                for ch in conn.channels.values():
                    counts = channel_counts(ch)
                    _keep(new, old, ("channel", id(ch)),
                          (now, tuple(counts[f] for f in MESSAGE_STATS)))
        self.objects = new
        counts = broker_counts(broker)
        self.totals.append((now, tuple(counts[f] for f in MESSAGE_STATS)
                            + (messages, ready, unacked)))

    async def run(self) -> None:
        """Sample every `interval` seconds until cancelled (the app's background task)."""
        self.running = True
        try:
            while True:
                self.broker.contained("management rates", self.sample)
                await anyio.sleep(self.interval)
        finally:
            self.running = False

    # --- reading ----------------------------------------------------------------------
    def object_rates(self, key: Any, fields: tuple[str, ...]) -> dict[str, float]:
        """field -> rate per second of one object over the newest sample interval; fields
        are those its samples hold (QUEUE_FIELDS, CONNECTION_FIELDS, MESSAGE_STATS)."""
        found = self.objects.get(key)
        if found is None or found[0] is None:
            return dict.fromkeys(fields, 0.0)
        return _rates(found[0], found[1], fields)

    def channel_rates(self, ch: Channel) -> dict[str, float]:
        return self.object_rates(("channel", id(ch)), MESSAGE_STATS)

    def total_rates(self) -> dict[str, float]:
        """Broker-wide rates (TOTAL_FIELDS: message_stats names and queue depths)."""
        if len(self.totals) < 2:
            return dict.fromkeys(TOTAL_FIELDS, 0.0)
        return _rates(self.totals[-2], self.totals[-1], TOTAL_FIELDS)

    def total_details(self, field: str, age: float | None = None,
                      incr: float | None = None) -> dict[str, Any]:
        """RabbitMQ's `*_details` object of a broker-wide counter or depth: the rate,
        plus `samples` (newest first), `avg` and `avg_rate` over the last `age`
        seconds, one sample every `incr` seconds, when both are given."""
        details: dict[str, Any] = {"rate": self.total_rates()[field]}
        if not age or not incr or age <= 0 or incr <= 0 or not self.totals:
            return details
        index = TOTAL_FIELDS.index(field)
        newest = self.totals[-1][0]
        wall = time.time() - (self.clock() - newest)
        chosen: list[tuple[float, int]] = []
        next_at = newest
        for at, values in reversed(self.totals):
            if newest - at > age:
                break
            if at <= next_at + 1e-6:
                chosen.append((at, values[index]))
                next_at = at - incr
        details["samples"] = [{"sample": v, "timestamp": int((wall - (newest - at)) * 1000)}
                              for at, v in chosen]
        details["avg"] = sum(v for _, v in chosen) / len(chosen)
        span = chosen[0][0] - chosen[-1][0]
        details["avg_rate"] = (chosen[0][1] - chosen[-1][1]) / span if span > 0 else 0.0
        return details


def _keep(new: dict[Any, tuple[Sample | None, Sample]],
          old: Mapping[Any, tuple[Sample | None, Sample]], key: Any, sample: Sample) -> None:
    before = old.get(key)
    new[key] = (before[1] if before is not None else None, sample)


def _rates(before: Sample, after: Sample, fields: tuple[str, ...]) -> dict[str, float]:
    """Counters only grow (a fall is a reset: 0.0); depths may fall."""
    span = after[0] - before[0]
    out: dict[str, float] = {}
    for field, b, a in zip(fields, before[1], after[1], strict=True):
        rate = (a - b) / span if span > 0 else 0.0
        out[field] = rate if rate >= 0 or field in DEPTHS else 0.0
    return out


def stats(counts: Iterable[tuple[str, int]], rates: Mapping[str, float]) -> dict[str, Any]:
    """A `message_stats` object: each count with its `_details` rate."""
    out: dict[str, Any] = {}
    for field, value in counts:
        out[field] = value
        out[field + "_details"] = {"rate": rates.get(field, 0.0)}
    return out


def channel_message_stats(ch: Channel, rates: Rates) -> dict[str, Any]:
    """A channel's message_stats as RabbitMQ shows them: the publishing group once it
    published, the delivering group once it delivered or got (or found a queue empty)."""
    counts = channel_counts(ch)
    shown: list[str] = []
    if counts["publish"] or counts["confirm"]:
        shown.extend(PUBLISH_STATS)
    if counts["deliver_get"] or counts["get_empty"] or counts["ack"]:
        shown.extend(DELIVER_STATS)
    channel_rates = rates.channel_rates(ch)
    return stats([(f, counts[f]) for f in shown], channel_rates)


def overview_message_stats(broker: Broker) -> dict[str, Any]:
    """The broker-wide message_stats (for /api/overview): every count with its rate."""
    rates = rates_for(broker)
    counts = broker_counts(broker)
    return stats([(f, counts[f]) for f in MESSAGE_STATS], rates.total_rates())


_registry: weakref.WeakKeyDictionary[Broker, Rates] = weakref.WeakKeyDictionary()


def rates_for(broker: Broker) -> Rates:
    """The broker's Rates (one per broker, made on first use)."""
    found = _registry.get(broker)
    if found is None:
        found = _registry[broker] = Rates(broker)
    return found


async def run_sampler(broker: Broker) -> None:
    """The sampling task for the app's lifespan (or the server's task group); a second
    call while one runs returns at once."""
    rates = rates_for(broker)
    if rates.running:
        return
    await rates.run()
