"""Prometheus metrics with the names, types and labels of RabbitMQ's rabbitmq_prometheus.

Three endpoints, as RabbitMQ serves them on its Prometheus port (15692):

- `/metrics`: aggregated. Every family is one unlabelled sum (no per-queue series),
  so a scrape costs one pass over queues and channels however many there are.
- `/metrics/per-object`: the same families with one series per queue
  (`vhost`, `queue`), channel (`channel`) and connection.
- `/metrics/detailed?family=...&vhost=...&queue=...`: only the families asked for,
  per object, prefixed `rabbitmq_detailed_`; `vhost` keeps the queue families to
  those vhosts, `queue` (a regex) to matching queue names.

Nothing on the message path touches prometheus_client: the broker, channels and
queues keep plain ints, and the collectors below read them when a scrape comes. A
closed channel's counters are added to the broker's totals (Broker.retire_channel),
so the `rabbitmq_global_*` counters never go down.

This module holds the collector (BrokerCollector, one per endpoint via registry_for)
and the node-wide families; the families per queue, channel and connection, and the
names `/metrics/detailed` accepts, are in metrics_objects. The routes are a Starlette
app (metrics_http.create_metrics_app) served by the management package's HTTP server
on its own port (Config.address("prometheus")).
"""

from __future__ import annotations

import os
import platform
import re
import resource
import time
from collections.abc import Callable, Iterable, Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    UnknownMetricFamily,
)
from prometheus_client.registry import Collector

from . import __version__
from .channel import Channel
from .connection import Connection
from .counters import CHANNEL_ATTRIBUTES, ChannelCounters, channel_counts
from .metrics_objects import (
    CHANNEL_COUNTER_FAMILIES,
    CHANNEL_FAMILIES,
    CONNECTION_FAMILIES,
    FAMILIES,
    QUEUE_FAMILIES,
    channel_name,
    connection_name,
)

if TYPE_CHECKING:
    from .broker import Broker
    from .queue import Queue

PROTOCOL = "amqp091"
QUEUE_TYPE = "rabbit_classic_queue"  # every queue here is a classic queue

# the bounds of Channel.SIZE_BOUNDS as Prometheus writes them (the dashboards' le="...")
SIZE_LE = ("100.0", "1000.0", "10000.0", "100000.0", "1e+06", "1e+07", "5e+07", "1e+08", "+Inf")


# --- names and figures read at scrape time ---------------------------------
def node_name(broker: Broker) -> str:
    name = getattr(broker, "node_name", None)
    return name if isinstance(name, str) and name else broker.cluster_name


def channel_totals(broker: Broker, channels: Iterable[Channel]) -> dict[str, int]:
    """Every channel counter summed: closed channels' (kept by the broker) and open ones'."""
    totals = dict.fromkeys([*ChannelCounters.__slots__, *CHANNEL_ATTRIBUTES], 0)
    totals.update(broker.counters.retired)
    for ch in channels:
        for name, count in channel_counts(ch).items():
            totals[name] += count
    return totals


def size_buckets(counts: list[int], received: int) -> list[int]:
    """Messages per size bucket: the publish paths count all but the first (the small
    messages, whatever counts[0] holds), which is every message received not in another."""
    return [received - sum(counts[1:]), *counts[1:]]


def open_connections(broker: Broker) -> list[Connection]:
    return [c for c in broker.connections if isinstance(c, Connection)]


def open_channels(conns: Iterable[Connection]) -> list[Channel]:
    return [ch for c in conns for ch in c.channels.values()]


def resident_memory() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        # not Linux: the peak, which is what getrusage offers (kilobytes on Linux/BSD)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def max_fds() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def disk_free(broker: Broker) -> int:
    try:
        st = os.statvfs(broker.config.data_dir or os.getcwd())
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def _dist_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return ""


# --- the node-wide families --------------------------------------------------
GLOBAL_MESSAGES: list[tuple[str, str, bool, Callable[[Broker, dict[str, int]], int]]] = [
    # name, help, labelled by queue_type too, value from (broker, channel totals)
    ("messages_received_total", "Total number of messages received from publishers", False,
     lambda b, t: b.counters.received),
    ("messages_received_confirm_total",
     "Total number of messages received from publishers expecting confirmations", False,
     lambda b, t: t["publish_seq"]),
    ("messages_routed_total", "Total number of messages routed to queues or streams", False,
     lambda b, t: b.counters.routed),
    ("messages_unroutable_dropped_total",
     "Total number of messages published as non-mandatory into an exchange and dropped as "
     "unroutable", False, lambda b, t: b.counters.unroutable - t["returned"]),
    ("messages_unroutable_returned_total",
     "Total number of messages published as mandatory into an exchange and returned to the "
     "publisher as unroutable", False, lambda b, t: t["returned"]),
    ("messages_confirmed_total", "Total number of messages confirmed to publishers", False,
     lambda b, t: t["_confirm_told"] - t["confirm_nacks"]),
    ("messages_delivered_total", "Total number of messages delivered to consumers", True,
     lambda b, t: t["next_tag"]),
    ("messages_delivered_consume_manual_ack_total",
     "Total number of messages delivered to consumers using basic.consume with manual "
     "acknowledgment", True, lambda b, t: t["manual_delivered"] - t["get_manual"]),
    ("messages_delivered_consume_auto_ack_total",
     "Total number of messages delivered to consumers using basic.consume with automatic "
     "acknowledgment", True, lambda b, t: t["next_tag"] - t["manual_delivered"] - t["get_auto"]),
    ("messages_delivered_get_manual_ack_total",
     "Total number of messages delivered to consumers using basic.get with manual "
     "acknowledgment", True, lambda b, t: t["get_manual"]),
    ("messages_delivered_get_auto_ack_total",
     "Total number of messages delivered to consumers using basic.get with automatic "
     "acknowledgment", True, lambda b, t: t["get_auto"]),
    ("messages_get_empty_total", "Total number of times basic.get operations fetched no message",
     True, lambda b, t: t["get_empty"]),
    ("messages_redelivered_total", "Total number of messages redelivered to consumers", True,
     lambda b, t: t["redelivered"]),
    ("messages_acknowledged_total", "Total number of messages acknowledged by consumers", True,
     lambda b, t: t["acked"]),
]


class Scrape:
    """What one scrape asks for: per object or summed, which families, which vhosts
    and queue names (detailed)."""

    def __init__(self, endpoint: str, prefix: str = "rabbitmq_",
                 families: frozenset[str] = FAMILIES, vhosts: set[str] | None = None,
                 queue_filter: re.Pattern[str] | None = None) -> None:
        self.endpoint = endpoint  # aggregated, per-object, detailed
        self.per_object = endpoint != "aggregated"
        self.prefix = prefix
        self.families = families
        self.vhosts = vhosts
        self.queue_filter = queue_filter

    def wants_queue(self, q: Queue) -> bool:
        if self.vhosts is not None and q.vhost.name not in self.vhosts:
            return False
        return self.queue_filter is None or self.queue_filter.search(q.name) is not None


class BrokerCollector(Collector):
    """rabbitmq_prometheus's core, global and message size collectors in one."""

    def __init__(self, broker: Broker, scrape: Scrape) -> None:
        self.broker = broker
        self.scrape = scrape

    def collect(self) -> Iterator[Metric]:
        b, s = self.broker, self.scrape
        conns = open_connections(b)
        channels = open_channels(conns)
        wanted = s.families
        detailed = s.endpoint == "detailed"
        if "connection_churn_metrics" in wanted:
            yield from self._churn()
        if "node_coarse_metrics" in wanted or "node_metrics" in wanted:
            yield from self._node(wanted)
        if "auth_attempt_metrics" in wanted:
            yield from self._auth()
        queues = [q for q in b.queues() if s.wants_queue(q)] if (
            s.vhosts is not None or s.queue_filter is not None) else list(b.queues())
        for name, metrics in QUEUE_FAMILIES.items():
            if name in wanted and not (name == "queue_consumer_count"
                                       and "queue_metrics" in wanted):
                yield from self._objects(metrics, queues, lambda q: [q.vhost.name, q.name])
        for name, metrics in CHANNEL_FAMILIES.items():
            if name in wanted:
                yield from self._objects(metrics, channels, lambda ch: [channel_name(ch)])
        for name, metrics in CHANNEL_COUNTER_FAMILIES.items():
            if name in wanted:
                yield from self._channel_counters(metrics, channels)
        for name, metrics in CONNECTION_FAMILIES.items():
            if name in wanted:
                yield from self._objects(metrics, conns, lambda c: [connection_name(c)])
        if detailed:
            yield from self._cluster(wanted)
            if any(f in wanted for f in QUEUE_FAMILIES):
                yield self._queue_info(queues)
        else:
            yield from self._totals(conns, channels)
            if s.per_object:
                yield self._queue_info(queues)
            yield from self._alarms()
        yield from self._identity()
        if not detailed:
            yield from self._global(channels)
            yield self._message_sizes()

    # --- groups -------------------------------------------------------------
    def _objects(self, metrics: list[Any], objects: list[Any],
                 labels: Callable[[Any], list[str]]) -> Iterator[Metric]:
        per_object = self.scrape.per_object
        for family, value in metrics:
            m = family.make(self.scrape.prefix, per_object)
            if per_object:
                for obj in objects:
                    m.add_metric(labels(obj), value(obj))
            else:
                m.add_metric([], sum(value(obj) for obj in objects))
            yield m

    def _channel_counters(self, metrics: list[Any], channels: list[Channel]) -> Iterator[Metric]:
        if not self.scrape.per_object:
            totals = channel_totals(self.broker, channels)
            for family, value in metrics:
                m = family.make(self.scrape.prefix, False)
                m.add_metric([], value(totals))
                yield m
            return
        per_channel = [(ch, channel_counts(ch)) for ch in channels]
        for family, value in metrics:
            m = family.make(self.scrape.prefix, True)
            for ch, counts in per_channel:
                m.add_metric([channel_name(ch), ch.vhost.name], value(counts))
            yield m

    def _churn(self) -> Iterator[Metric]:
        b, p = self.broker.counters, self.scrape.prefix
        for name, help, value in (
                ("connections_opened", "Total number of connections opened",
                 b.connections_opened),
                ("connections_closed", "Total number of connections closed or terminated",
                 b.connections_closed),
                ("channels_opened", "Total number of channels opened", b.channels_opened),
                ("channels_closed", "Total number of channels closed", b.channels_closed),
                ("queues_declared", "Total number of queues declared", b.queues_declared),
                ("queues_created", "Total number of queues created", b.queues_created),
                ("queues_deleted", "Total number of queues deleted", b.queues_deleted)):
            yield CounterMetricFamily(p + name, help, value=value)

    def _auth(self) -> Iterator[Metric]:
        b, p = self.broker.counters, self.scrape.prefix
        for name, help, value in (
                ("auth_attempts", "Total number of authentication attempts", b.auth_attempts),
                ("auth_attempts_succeeded", "Total number of successful authentication attempts",
                 b.auth_attempts - b.auth_failed),
                ("auth_attempts_failed", "Total number of failed authentication attempts",
                 b.auth_failed)):
            yield CounterMetricFamily(p + name, help, value=value)

    def _node(self, wanted: frozenset[str]) -> Iterator[Metric]:
        b, p = self.broker, self.scrape.prefix
        if "node_coarse_metrics" in wanted:
            yield GaugeMetricFamily(p + "process_open_fds", "Open file descriptors",
                                    value=open_fds())
            yield GaugeMetricFamily(p + "process_resident_memory_bytes", "Memory used in bytes",
                                    value=resident_memory())
            yield GaugeMetricFamily(p + "disk_space_available_bytes",
                                    "Disk space available in bytes", value=disk_free(b))
        if "node_metrics" in wanted:
            yield GaugeMetricFamily(p + "process_max_fds", "Open file descriptors limit",
                                    value=max_fds())
            yield GaugeMetricFamily(p + "resident_memory_limit_bytes",
                                    "Memory high watermark in bytes",
                                    value=b.memory_alarm.watermark)
            yield GaugeMetricFamily(p + "disk_space_available_limit_bytes",
                                    "Free disk space low watermark in bytes",
                                    value=b.config.disk_free_limit)
            yield GaugeMetricFamily(p + "erlang_uptime_seconds", "Node uptime",
                                    value=round(time.time() - b.started, 3))

    def _totals(self, conns: list[Connection], channels: list[Channel]) -> Iterator[Metric]:
        b = self.broker
        yield GaugeMetricFamily("rabbitmq_connections", "Connections currently open",
                                value=len(conns))
        yield GaugeMetricFamily("rabbitmq_channels", "Channels currently open",
                                value=len(channels))
        yield GaugeMetricFamily("rabbitmq_consumers", "Consumers currently connected",
                                value=sum(len(ch.consumers) for ch in channels))
        yield GaugeMetricFamily("rabbitmq_queues", "Queues available",
                                value=sum(len(v.queues) for v in b.vhosts.values()))

    def _queue_info(self, queues: list[Queue]) -> Metric:
        m = GaugeMetricFamily(
            self.scrape.prefix + "queue_info",
            "A metric with a constant '1' value and labels that provide some queue details",
            labels=["vhost", "queue", "queue_type", "membership"])
        for q in queues:
            m.add_metric([q.vhost.name, q.name, QUEUE_TYPE, "leader"], 1)
        return m

    def _alarms(self) -> Iterator[Metric]:
        alarms = self.broker.alarms
        for name, help, on in (
                ("file_descriptor_limit", "is 1 if file descriptor limit alarm is in effect",
                 False),
                ("free_disk_space_watermark",
                 "is 1 if free disk space watermark alarm is in effect", "disk" in alarms),
                ("memory_used_watermark", "is 1 if VM memory watermark alarm is in effect",
                 "memory" in alarms)):
            yield UnknownMetricFamily("rabbitmq_alarms_" + name, help, value=int(on))

    def _cluster(self, wanted: frozenset[str]) -> Iterator[Metric]:
        b, vhosts = self.broker, self.scrape.vhosts
        if "vhost_status" in wanted:
            m = GaugeMetricFamily("rabbitmq_cluster_vhost_status",
                                  "Whether a given vhost is running", labels=["vhost"])
            for name in b.vhosts:
                if vhosts is None or name in vhosts:
                    m.add_metric([name], 1)
            yield m
        if "exchange_names" in wanted:
            m = GaugeMetricFamily("rabbitmq_cluster_exchange_name",
                                  "Enumerates exchanges without any additional info. This "
                                  "value is cluster-wide. A cheaper alternative to "
                                  "`exchange_bindings`", labels=["vhost", "exchange", "type"])
            for vname, vhost in b.vhosts.items():
                if vhosts is not None and vname not in vhosts:
                    continue
                for ex in vhost.exchanges.values():
                    if ex.name and not ex.internal:
                        m.add_metric([vname, ex.name, ex.type_name], 1)
            yield m

    def _identity(self) -> Iterator[Metric]:
        b = self.broker
        build = UnknownMetricFamily(
            "rabbitmq_build_info", "RabbitMQ & Erlang/OTP version info",
            labels=["product_name", "product_version", "rabbitmq_version",
                    "prometheus_plugin_version", "prometheus_client_version",
                    "erlang_version"])
        build.add_metric(["amqp-broker", __version__, __version__, __version__,
                          _dist_version("prometheus_client"),
                          f"Python {platform.python_version()}"], 1)
        yield build
        identity = UnknownMetricFamily(
            "rabbitmq_identity_info", "RabbitMQ node & cluster identity info",
            labels=["rabbitmq_node", "rabbitmq_cluster", "rabbitmq_cluster_permanent_id",
                    "rabbitmq_endpoint"])
        identity.add_metric([node_name(b), b.cluster_name, b.cluster_name,
                             self.scrape.endpoint], 1)
        yield identity

    def _global(self, channels: list[Channel]) -> Iterator[Metric]:
        b = self.broker
        totals = channel_totals(b, channels)
        consumers = GaugeMetricFamily("rabbitmq_global_consumers", "Current number of consumers",
                                      labels=["protocol"])
        consumers.add_metric([PROTOCOL], sum(len(ch.consumers) for ch in channels))
        yield consumers
        publishers = GaugeMetricFamily("rabbitmq_global_publishers",
                                       "Current number of publishers", labels=["protocol"])
        # a channel is a publisher once it has published (as RabbitMQ counts them)
        publishers.add_metric([PROTOCOL], sum(1 for ch in channels if ch.counters.published))
        yield publishers
        for name, help, by_type, value in GLOBAL_MESSAGES:
            labels = ["protocol", "queue_type"] if by_type else ["protocol"]
            m = CounterMetricFamily("rabbitmq_global_" + name.removesuffix("_total"), help,
                                    labels=labels)
            m.add_metric([PROTOCOL, QUEUE_TYPE] if by_type else [PROTOCOL], value(b, totals))
            yield m
        yield from self._dead_lettered(totals)

    def _dead_lettered(self, totals: dict[str, int]) -> Iterator[Metric]:
        counts = self.broker.counters.dead_lettered
        at_most_once_rejected = counts.get(("rejected", "at_most_once"), 0)
        for reason, help in (
                ("expired", "Total number of messages dead-lettered due to message TTL "
                            "exceeded"),
                ("maxlen", "Total number of messages dead-lettered due to overflow drop-head "
                           "or reject-publish-dlx"),
                ("delivery_limit", "Total number of messages dead-lettered due to "
                                   "delivery-limit exceeded"),
                ("rejected", "Total number of messages dead-lettered due to basic.reject or "
                             "basic.nack")):
            m = CounterMetricFamily(f"rabbitmq_global_messages_dead_lettered_{reason}",
                                    help, labels=["queue_type", "dead_letter_strategy"])
            if reason == "rejected":
                # rejected without a dead-letter exchange never reach deadletter.py
                dropped = totals["rejected"] - at_most_once_rejected
                values = {"at_most_once": at_most_once_rejected, "disabled": dropped}
            else:
                values = {s: counts.get((reason, s), 0) for s in ("at_most_once", "disabled")}
            for strategy, n in values.items():
                m.add_metric([QUEUE_TYPE, strategy], n)
            yield m

    def _message_sizes(self) -> Metric:
        b = self.broker.counters
        m = HistogramMetricFamily("rabbitmq_message_size_bytes",
                                  "Size of messages received from publishers",
                                  labels=["protocol"])
        buckets: list[tuple[str, float]] = []
        running = 0
        for le, count in zip(SIZE_LE, size_buckets(b.size_counts, b.received), strict=True):
            running += count
            buckets.append((le, running))
        m.add_metric([PROTOCOL], buckets, sum_value=b.size_sum)
        return m


def registry_for(broker: Broker, scrape: Scrape | None = None,
                 process: bool = True) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BrokerCollector(broker, scrape or Scrape("aggregated")))
    if process:
        ProcessCollector(registry=registry)
    return registry
