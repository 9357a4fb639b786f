"""Prometheus metrics: rendered from the broker's counters at scrape time."""

from __future__ import annotations

import urllib.request
from typing import Any

from prometheus_client import generate_latest

from amqp_broker.broker import Broker
from amqp_broker.config import Config
from amqp_broker.metrics import registry_for, respond
from tests.helpers import free_port, pika_connect


def _value(text: str, line_prefix: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_prefix + " ") or line.startswith(line_prefix + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{line_prefix} not in metrics:\n{text}")


def test_collector_reads_queue_counters() -> None:
    broker = Broker(Config(data_dir=None))
    vhost = broker.vhosts["/"]
    q, _ = vhost.declare_queue("m1", False, False, False, False, {}, None)
    broker.published = 7
    q.published, q.delivered, q.acked, q.unacked = 5, 4, 3, 1
    text = generate_latest(registry_for(broker)).decode()
    assert _value(text, "amqp_broker_messages_published_total") == 7
    assert 'amqp_broker_queue_messages_delivered_total{queue="m1",vhost="/"} 4.0' in text
    assert 'amqp_broker_queue_messages_unacked{queue="m1",vhost="/"} 1.0' in text
    assert _value(text, "amqp_broker_connections") == 0


def test_http_responses() -> None:
    registry = registry_for(Broker(Config(data_dir=None)))
    assert respond(registry, b"GET /metrics HTTP/1.1").startswith(b"HTTP/1.0 200 OK")
    assert respond(registry, b"GET /nope HTTP/1.1").startswith(b"HTTP/1.0 404")
    assert respond(registry, b"POST /metrics HTTP/1.1").startswith(b"HTTP/1.0 405")
    assert respond(registry, b"").startswith(b"HTTP/1.0 405")


def test_endpoint_on_a_running_broker(broker_factory: Any) -> None:
    port = free_port()
    b = broker_factory("--metrics-port", str(port))
    conn = pika_connect(b.port)
    ch = conn.channel()
    ch.queue_declare("metrics-q")
    for _ in range(3):
        ch.basic_publish("", "metrics-q", b"x")
    ch.queue_declare("metrics-q", passive=True)  # round trip: publishes processed
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'amqp_broker_queue_messages_ready{queue="metrics-q",vhost="/"} 3.0' in text
    assert _value(text, "amqp_broker_connections") == 1
    assert "process_resident_memory_bytes" in text
    conn.close()


def test_metrics_endpoint_survives_accept_failures(monkeypatch: Any) -> None:
    """Out of descriptors, accept() fails: the endpoint pauses and retries, never ends
    (an error escaping it would end the broker's task group, and the process)."""
    import errno

    import anyio

    from amqp_broker import metrics

    calls: list[int] = []

    class FailingListener:
        async def accept(self) -> Any:
            calls.append(1)
            if len(calls) <= 3:
                raise OSError(errno.EMFILE, "Too many open files")
            await anyio.sleep_forever()

        async def aclose(self) -> None:
            return None

        async def __aenter__(self) -> FailingListener:
            return self

        async def __aexit__(self, *exc: Any) -> None:
            return None

    async def fake_listener(**kwargs: Any) -> FailingListener:
        return FailingListener()

    monkeypatch.setattr(metrics.anyio, "create_tcp_listener", fake_listener)
    broker = Broker(Config(data_dir=None))

    async def main() -> None:
        with anyio.move_on_after(10):  # a bound, not a timing assertion
            async with anyio.create_task_group() as tg:
                tg.start_soon(metrics.serve, broker, "127.0.0.1", 1)
                while len(calls) < 4:
                    await anyio.sleep(0.02)
                tg.cancel_scope.cancel()

    anyio.run(main)
    assert len(calls) >= 4  # the fourth accept came after three failures
