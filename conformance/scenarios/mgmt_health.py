"""Health checks and the aliveness test."""

from __future__ import annotations

from ..ctx import shape
from ..registry import scenario
from ._mgmt import G, call, q, temp_user


@scenario(G)
def health_checks(ctx):
    """No alarms; the AMQP port has a listener (200), port 1 has none (503
    with the ports that do); a port that is not a number is 400; aliveness of the default
    vhost, of an unknown one (404) and of one the user has no permissions in (401)."""
    call(ctx, "alarms", "GET", "/api/health/checks/alarms")
    call(ctx, "local_alarms", "GET", "/api/health/checks/local-alarms")
    call(ctx, "quorum_critical", "GET", "/api/health/checks/node-is-quorum-critical")
    status, body = ctx.api("GET", f"/api/health/checks/port-listener/{ctx.port}")
    ctx.log("port_listener", status=status, body={**body, "port": body.get("port") == ctx.port})
    status, body = ctx.api("GET", "/api/health/checks/port-listener/1")
    ctx.log("no_listener", status=status, shape=shape(body), status_field=body.get("status"),
            reason=body.get("reason"), missing=body.get("missing"),
            lists_amqp=ctx.port in body.get("ports", []))
    call(ctx, "bad_port", "GET", "/api/health/checks/port-listener/abc")
    call(ctx, "protocol", "GET", "/api/health/checks/protocol-listener/amqp")
    call(ctx, "aliveness", "GET", "/api/aliveness-test/%2F")
    call(ctx, "aliveness_unknown", "GET", f"/api/aliveness-test/{q(ctx.name('no'))}")
    mon = temp_user(ctx, "mon", "monitoring")
    call(ctx, "aliveness_no_permissions", "GET", "/api/aliveness-test/%2F", user=mon,
         password="pw")
    call(ctx, "monitor_alarms", "GET", "/api/health/checks/alarms", user=mon, password="pw")
