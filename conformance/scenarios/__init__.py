"""Scenario modules, one per area; importing this package registers all of them."""

from . import (  # noqa: F401
    handshake,
    errors,
    routing,
    queues,
    acks,
    flow,
    properties,
    aio,
    kombu_scenarios,
    apps,
)
