"""Prometheus metrics, rendered at scrape time from the broker's plain counters.

Nothing on the message path touches prometheus_client: queues, channels and the
broker keep ints, and this collector reads them when /metrics is fetched. The
endpoint is served by a tiny HTTP responder on the broker's own event loop, so
the collector never races the broker's state from another thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import SocketStream
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .connection import Connection

if TYPE_CHECKING:
    from .broker import Broker

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class BrokerCollector(Collector):
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def collect(self) -> Iterator[Metric]:
        b = self.broker
        conns = [c for c in b.connections if isinstance(c, Connection)]
        channels = sum(len(c.channels) for c in conns)
        yield GaugeMetricFamily("amqp_broker_connections", "Open client connections",
                                value=len(conns))
        yield GaugeMetricFamily("amqp_broker_channels", "Open channels", value=channels)
        yield CounterMetricFamily("amqp_broker_connections_opened", "Connections opened",
                                  value=b.connections_opened)
        yield CounterMetricFamily("amqp_broker_messages_published", "Messages published",
                                  value=b.published)
        yield CounterMetricFamily("amqp_broker_messages_unroutable",
                                  "Messages that matched no queue", value=b.unroutable)
        yield CounterMetricFamily("amqp_broker_channel_errors", "Channels closed by an error",
                                  value=b.channel_errors)
        alarm = GaugeMetricFamily("amqp_broker_alarm", "1 while a resource alarm blocks "
                                  "publishers", labels=["resource"])
        for resource in ("memory", "disk"):
            alarm.add_metric([resource], 1 if resource in b.alarms else 0)
        yield alarm

        labels = ["vhost", "queue"]
        ready = GaugeMetricFamily("amqp_broker_queue_messages_ready",
                                  "Messages ready for delivery", labels=labels)
        ready_bytes = GaugeMetricFamily("amqp_broker_queue_messages_ready_bytes",
                                        "Body bytes of ready messages", labels=labels)
        unacked = GaugeMetricFamily("amqp_broker_queue_messages_unacked",
                                    "Messages delivered and not yet acknowledged", labels=labels)
        consumers = GaugeMetricFamily("amqp_broker_queue_consumers", "Consumers",
                                      labels=labels)
        published = CounterMetricFamily("amqp_broker_queue_messages_published",
                                        "Messages enqueued", labels=labels)
        delivered = CounterMetricFamily("amqp_broker_queue_messages_delivered",
                                        "Messages delivered to consumers or basic.get",
                                        labels=labels)
        acked = CounterMetricFamily("amqp_broker_queue_messages_acked",
                                    "Messages settled for good (ack, reject, nack)",
                                    labels=labels)
        for q in b.queues():
            key = [q.vhost.name, q.name]
            ready.add_metric(key, len(q.ready))
            ready_bytes.add_metric(key, q.ready_bytes)
            unacked.add_metric(key, q.unacked)
            consumers.add_metric(key, len(q.consumers))
            published.add_metric(key, q.published)
            delivered.add_metric(key, q.delivered)
            acked.add_metric(key, q.acked)
        yield from (ready, ready_bytes, unacked, consumers, published, delivered, acked)


def registry_for(broker: Broker) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BrokerCollector(broker))
    ProcessCollector(registry=registry)
    return registry


def respond(registry: CollectorRegistry, request_line: bytes) -> bytes:
    """The whole HTTP/1.0 response for one request line."""
    parts = request_line.split()
    if len(parts) < 2 or parts[0] not in (b"GET", b"HEAD"):
        return b"HTTP/1.0 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n"
    if parts[1].split(b"?", 1)[0] not in (b"/metrics", b"/"):
        return b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    body = generate_latest(registry)
    head = (f"HTTP/1.0 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + (body if parts[0] == b"GET" else b"")


async def serve(broker: Broker, host: str | None, port: int) -> None:
    """Serve /metrics until cancelled."""
    registry = registry_for(broker)

    async def handle(stream: SocketStream) -> None:
        async with stream:
            data = b""
            with anyio.move_on_after(5):
                while b"\r\n\r\n" not in data and len(data) < 8192:
                    try:
                        data += await stream.receive(4096)
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        break
            try:
                await stream.send(respond(registry, data.split(b"\r\n", 1)[0]))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass

    try:
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    except OSError as exc:
        # metrics are for operators; their absence must not stop the broker
        broker.log.error("metrics endpoint unavailable", host=host, port=port, error=str(exc))
        return
    broker.log.info("metrics endpoint", host=host, port=port, path="/metrics")

    async def accept_loop(one: Any, tg: Any) -> None:
        # unlike listener.serve, a failing accept() (out of descriptors) never ends it
        failing = False
        while True:
            try:
                stream = await one.accept()
            except OSError as exc:
                if not failing:
                    failing = True
                    broker.log.warning("metrics endpoint cannot accept, pausing",
                                       error=str(exc))
                await anyio.sleep(0.1)
                continue
            failing = False
            tg.start_soon(handle, stream)

    async with listener, anyio.create_task_group() as tg:
        for one in getattr(listener, "listeners", [listener]):
            tg.start_soon(accept_loop, one, tg)
