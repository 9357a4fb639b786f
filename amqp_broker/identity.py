"""How a connection is described: the server properties and capabilities the broker
announces in connection.start, and the peer and client names its log lines carry."""

from __future__ import annotations

import platform
from typing import Any

from . import __version__

# what connection.start announces, as RabbitMQ 3.x does
CAPABILITIES = {
    "publisher_confirms": True,
    "exchange_exchange_bindings": True,
    "basic.nack": True,
    "consumer_cancel_notify": True,
    "connection.blocked": True,
    "consumer_priorities": True,
    "authentication_failure_close": True,
    "per_consumer_qos": True,
    "direct_reply_to": True,
}


def server_properties(cluster_name: str) -> dict[str, Any]:
    return {
        "product": "amqp-broker",
        "version": __version__,
        "platform": f"Python {platform.python_version()}",
        "copyright": "amqp-broker contributors",
        "information": "An AMQP 0-9-1 broker in Python",
        "cluster_name": cluster_name,
        "capabilities": CAPABILITIES,
    }


def peer_name(peer: tuple[str, int] | tuple[Any, ...] | None) -> str:
    """A peer as "host:port" ("[v6]:port"), "-" when unknown: one string in every log."""
    if not peer:
        return "-"
    host, port = peer[0], peer[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def client_name(props: dict[str, Any]) -> str:
    """The client library a connection announced, e.g. "pika 1.3.2"."""
    product = props.get("product", "")
    version = props.get("version", "")
    if isinstance(product, bytes):
        product = product.decode("utf-8", "replace")
    if isinstance(version, bytes):
        version = version.decode("utf-8", "replace")
    return f"{product} {version}".strip()
