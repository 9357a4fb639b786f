"""The Prometheus endpoints over HTTP: `/metrics`, `/metrics/per-object` and
`/metrics/detailed` as a Starlette app (create_metrics_app), served by the management
package's HTTP server on its own port (Config.address("prometheus")); what they hold
is metrics.BrokerCollector's.
"""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import anyio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from .metrics import Scrape, registry_for
from .metrics_objects import FAMILIES

if TYPE_CHECKING:
    from .broker import Broker
    from .config import Config

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_QUEUE_FILTER = 2000  # RabbitMQ's limit on the length of the `queue` regex


class BadRequest(Exception):
    pass


def detailed_scrape(broker: Broker, params: Any) -> Scrape:
    """Scrape for /metrics/detailed from its query: family and vhost may repeat (unknown
    families and vhosts are ignored, as RabbitMQ does), queue is a regex."""
    families = frozenset(f for f in params.getlist("family") if f in FAMILIES)
    vhost_names = params.getlist("vhost")
    vhosts = {v for v in vhost_names if v in broker.vhosts} if vhost_names else None
    queue = params.get("queue") or ""
    queue_filter = None
    if len(queue) > MAX_QUEUE_FILTER:
        raise BadRequest("'queue' regex too long")
    if queue:
        try:
            queue_filter = re.compile(queue)
        except re.error as exc:
            raise BadRequest(f"Invalid 'queue' regex at position {exc.pos}: {exc.msg}") from None
    return Scrape("detailed", "rabbitmq_detailed_", families, vhosts, queue_filter)


class _One(Collector):
    def __init__(self, metric: Metric) -> None:
        self.metric = metric

    def collect(self) -> Iterator[Metric]:
        yield self.metric


async def stream(registry: CollectorRegistry) -> AsyncIterator[bytes]:
    """The exposition one family at a time, letting the broker's loop run in between:
    per object with 10,000 queues is seconds of work, which must not stall the broker."""
    for metric in registry.collect():
        yield generate_latest(_One(metric))
        await anyio.sleep(0)


def create_metrics_app(broker: Broker) -> Starlette:
    """The Prometheus endpoints as a Starlette app (GET and HEAD; 405 otherwise)."""
    aggregated = registry_for(broker, Scrape("aggregated"))
    per_object = registry_for(broker, Scrape("per-object"))

    def render(registry: CollectorRegistry) -> Response:
        return StreamingResponse(stream(registry), media_type=CONTENT_TYPE)

    async def metrics(request: Request) -> Response:
        return render(aggregated)

    async def metrics_per_object(request: Request) -> Response:
        return render(per_object)

    async def metrics_detailed(request: Request) -> Response:
        try:
            scrape = detailed_scrape(broker, request.query_params)
        except BadRequest as exc:
            return PlainTextResponse(str(exc), status_code=400)
        return render(registry_for(broker, scrape, process=False))

    return Starlette(routes=[
        Route("/metrics", metrics, methods=["GET"]),
        Route("/metrics/per-object", metrics_per_object, methods=["GET"]),
        Route("/metrics/detailed", metrics_detailed, methods=["GET"]),
    ])


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for host:port, as the management listener's (a port busy on IPv4
    or IPv6 is an OSError naming the prometheus listener)."""
    from .management import serve as http

    return http.listen(host or None, port, "prometheus")


async def serve(broker: Broker, config: Config) -> None:
    """Serve the Prometheus endpoints on config.address("prometheus") until cancelled,
    with the management API's HTTP server (uvicorn in the broker's loop). A port that
    cannot be bound is logged and the broker runs on: metrics are for operators."""
    from .management import serve as http

    host, port = config.address("prometheus")
    if not port:
        return
    try:
        sockets = bind(host, port)
    except OSError as exc:
        broker.log.error("metrics endpoint unavailable", host=host or "[::] and 0.0.0.0",
                         port=port, error=exc.strerror or str(exc))
        return
    app = create_metrics_app(broker)
    broker.log.info("metrics endpoint", host=host or "[::] and 0.0.0.0",
                    port=http.port_of(sockets), path="/metrics")
    await http.serve_app(app, sockets)
