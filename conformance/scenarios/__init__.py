"""Scenario modules, one per area; importing this package registers all of them."""

from . import (  # noqa: F401
    acks,
    aio,
    apps,
    errors,
    flow,
    handshake,
    kombu_scenarios,
    mgmt_definitions,
    mgmt_health,
    mgmt_nodes,
    mgmt_overview,
    mgmt_permissions,
    mgmt_policies,
    mgmt_users,
    mgmt_vhosts,
    mgmt_whoami,
    parity,
    properties,
    queues,
    routing,
)
