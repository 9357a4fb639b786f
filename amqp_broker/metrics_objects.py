"""The per-object metric families of rabbitmq_prometheus: queues, channels and connections.

Each family is a Family (RabbitMQ's name without prefix, type, help, per-object labels)
paired with a function reading its value from one object (or, for the channel counter
families, from a dict of channel counts). metrics.BrokerCollector renders them summed on
`/metrics` and one series per object on `/metrics/per-object` and `/metrics/detailed`,
whose `family` parameter takes the group names at the end of this module.
"""

from __future__ import annotations

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    UnknownMetricFamily,
)

from .channel import Channel
from .connection import Connection


# --- names of objects, as labels -------------------------------------------
def _address(addr: tuple[str, int] | None) -> str:
    if not addr:
        return "-"
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connection_name(conn: Connection) -> str:
    """As RabbitMQ's management names a connection: "PEER:PORT -> LOCAL:PORT"."""
    return f"{_address(conn.peer)} -> {_address(conn.local)}"


def channel_name(ch: Channel) -> str:
    """As RabbitMQ's management names a channel: "CONNECTION (NUMBER)"."""
    return f"{connection_name(ch.connection)} ({ch.number})"


# --- the families ------------------------------------------------------------
class Family:
    """One metric family: its RabbitMQ name (without prefix), type and help, and the
    per-object label names."""

    __slots__ = ("help", "kind", "labels", "name")

    def __init__(self, name: str, kind: str, help: str, labels: tuple[str, ...] = ()) -> None:
        self.name = name
        self.kind = kind
        self.help = help
        self.labels = labels

    def make(self, prefix: str, per_object: bool) -> Metric:
        name = prefix + self.name
        labels = list(self.labels) if per_object else []
        if self.kind == "counter":
            # prometheus_client adds _total when rendering a counter
            return CounterMetricFamily(name.removesuffix("_total"), self.help, labels=labels)
        if self.kind == "gauge":
            return GaugeMetricFamily(name, self.help, labels=labels)
        return UnknownMetricFamily(name, self.help, labels=labels)


Q = ("vhost", "queue")
CH = ("channel",)
CH_VHOST = ("channel", "vhost")

# each family group (RabbitMQ's "metric family" tables, as /metrics/detailed names them)
# -> its metrics; a value function per metric takes the object (queue, channel, ...)
QUEUE_COARSE = [
    (Family("queue_messages_ready", "gauge", "Messages ready to be delivered to consumers", Q),
     lambda q: q.ready_count),
    (Family("queue_messages_unacked", "gauge",
            "Messages delivered to consumers but not yet acknowledged", Q),
     lambda q: q.unacked),
    (Family("queue_messages", "gauge",
            "Sum of ready and unacknowledged messages - total queue depth", Q),
     lambda q: q.ready_count + q.unacked),
]
QUEUE_CONSUMER_COUNT = [
    (Family("queue_consumers", "gauge", "Consumers on a queue", Q), lambda q: len(q.consumers)),
]
QUEUE_METRICS = QUEUE_CONSUMER_COUNT + [
    (Family("queue_messages_ready_bytes", "gauge", "Size in bytes of ready messages", Q),
     lambda q: q.ready_bytes),
    (Family("queue_messages_ram_bytes", "gauge",
            "Size of ready and unacknowledged messages stored in memory", Q),
     lambda q: q.ram_bytes),
    (Family("queue_messages_ready_ram", "gauge", "Ready messages stored in memory", Q),
     lambda q: q.ready_count - q.paged_out_count()),
    (Family("queue_messages_paged_out", "gauge", "Messages paged out to disk", Q),
     lambda q: q.paged_out_count()),
    (Family("queue_messages_paged_out_bytes", "gauge",
            "Size in bytes of messages paged out to disk", Q),
     lambda q: q.ready_bytes - q.ram_bytes),
]
CHANNEL_METRICS = [
    (Family("channel_consumers", "gauge", "Consumers on a channel", CH),
     lambda ch: len(ch.consumers)),
    (Family("channel_messages_unacked", "gauge", "Delivered but not yet acknowledged messages",
            CH), lambda ch: len(ch.unacked)),
    (Family("channel_messages_unconfirmed", "gauge", "Published but not yet confirmed messages",
            CH), lambda ch: ch.publish_seq - ch._confirm_told if ch.confirm_mode else 0),
    (Family("channel_messages_uncommitted", "gauge",
            "Messages received in a transaction but not yet committed", CH),
     lambda ch: len(ch.tx_publishes)),
    (Family("channel_acks_uncommitted", "gauge",
            "Message acknowledgements in a transaction not yet committed", CH),
     lambda ch: sum(len(taken) for taken, _action in ch.tx_settles)),
    (Family("consumer_prefetch", "gauge", "Limit of unacknowledged messages for each consumer",
            CH), lambda ch: ch.prefetch_count),
    (Family("channel_prefetch", "gauge",
            "Total limit of unacknowledged messages for all consumers on a channel", CH),
     lambda ch: ch.global_prefetch),
]
CHANNEL_EXCHANGE = [
    (Family("channel_messages_published_total", "counter",
            "Total number of messages published into an exchange on a channel", CH_VHOST),
     lambda t: t["published"]),
    (Family("channel_messages_confirmed_total", "counter",
            "Total number of messages published into an exchange and confirmed on the channel",
            CH_VHOST), lambda t: t["_confirm_told"] - t["confirm_nacks"]),
    (Family("channel_messages_unroutable_returned_total", "counter",
            "Total number of messages published as mandatory into an exchange and returned to "
            "the publisher as unroutable", CH_VHOST), lambda t: t["returned"]),
    (Family("channel_messages_unroutable_dropped_total", "counter",
            "Total number of messages published as non-mandatory into an exchange and dropped "
            "as unroutable", CH_VHOST), lambda t: t["unroutable"] - t["returned"]),
]
CHANNEL_QUEUE = [
    (Family("channel_get_ack_total", "counter",
            "Total number of messages fetched with basic.get in manual acknowledgement mode",
            CH_VHOST), lambda t: t["get_manual"]),
    (Family("channel_get_total", "counter",
            "Total number of messages fetched with basic.get in automatic acknowledgement mode",
            CH_VHOST), lambda t: t["get_auto"]),
    (Family("channel_messages_delivered_ack_total", "counter",
            "Total number of messages delivered to consumers in manual acknowledgement mode",
            CH_VHOST), lambda t: t["manual_delivered"] - t["get_manual"]),
    (Family("channel_messages_delivered_total", "counter",
            "Total number of messages delivered to consumers in automatic acknowledgement mode",
            CH_VHOST), lambda t: t["next_tag"] - t["manual_delivered"] - t["get_auto"]),
    (Family("channel_messages_redelivered_total", "counter",
            "Total number of messages redelivered to consumers", CH_VHOST),
     lambda t: t["redelivered"]),
    (Family("channel_messages_acked_total", "counter",
            "Total number of messages acknowledged by consumers", CH_VHOST),
     lambda t: t["acked"]),
    (Family("channel_get_empty_total", "counter",
            "Total number of times basic.get operations fetched no message", CH_VHOST),
     lambda t: t["get_empty"]),
]
CONNECTION_COARSE = [
    (Family("connection_incoming_bytes_total", "counter",
            "Total number of bytes received on a connection", CH),
     lambda c: c.recv_oct),
    (Family("connection_outgoing_bytes_total", "counter",
            "Total number of bytes sent on a connection", CH),
     lambda c: c.send_oct),
]
CONNECTION_METRICS = [
    (Family("connection_channels", "gauge", "Channels on a connection", CH),
     lambda c: len(c.channels)),
]
QUEUE_EXCHANGE = [
    (Family("queue_messages_published_total", "counter",
            "Total number of messages published to queues", Q), lambda q: q.published),
]

# /metrics/detailed?family=NAME: RabbitMQ's family names -> what they hold here
QUEUE_FAMILIES = {"queue_coarse_metrics": QUEUE_COARSE,
                  "queue_consumer_count": QUEUE_CONSUMER_COUNT,
                  "queue_metrics": QUEUE_METRICS,
                  "queue_exchange_metrics": QUEUE_EXCHANGE}
CHANNEL_FAMILIES = {"channel_metrics": CHANNEL_METRICS}
CHANNEL_COUNTER_FAMILIES = {"channel_exchange_metrics": CHANNEL_EXCHANGE,
                            "channel_queue_metrics": CHANNEL_QUEUE}
CONNECTION_FAMILIES = {"connection_coarse_metrics": CONNECTION_COARSE,
                       "connection_metrics": CONNECTION_METRICS}
NODE_FAMILIES = ("connection_churn_metrics", "node_coarse_metrics", "node_metrics",
                 "auth_attempt_metrics")
CLUSTER_FAMILIES = ("vhost_status", "exchange_names", "exchange_bindings")
FAMILIES = frozenset([*QUEUE_FAMILIES, *CHANNEL_FAMILIES, *CHANNEL_COUNTER_FAMILIES,
                      *CONNECTION_FAMILIES, *NODE_FAMILIES, *CLUSTER_FAMILIES])
