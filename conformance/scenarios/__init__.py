"""Scenario modules, one per area; importing this package registers all of them."""

from . import (  # noqa: F401
    acks,
    aio,
    apps,
    errors,
    flow,
    handshake,
    kombu_scenarios,
    parity,
    properties,
    queues,
    routing,
)
