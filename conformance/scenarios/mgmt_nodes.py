"""GET /api/nodes and /api/nodes/{name}."""

from __future__ import annotations

import time

from ..ctx import shape
from ..registry import scenario
from ._mgmt import G, call, q, temp_user


@scenario(G, timeout=40)
def nodes(ctx):
    """One node with RabbitMQ's fields; the same by name; a management user is 401
    (monitoring needed); columns pick fields."""
    deadline = time.monotonic() + 20  # a RabbitMQ just started has no node stats yet
    while True:
        _, found = ctx.api("GET", "/api/nodes")
        if "mem_used" in found[0] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    ctx.log("count", count=len(found))
    node = found[0]
    ctx.log("keys", keys=sorted(node))
    ctx.log("types", shape={k: shape(node.get(k)) for k in (
        "name", "type", "running", "mem_used", "mem_used_details", "mem_limit", "mem_alarm",
        "disk_free", "disk_free_limit", "disk_free_alarm", "fd_used", "fd_total",
        "sockets_used", "sockets_total", "proc_used", "proc_total", "uptime", "os_pid",
        "exchange_types", "auth_mechanisms", "partitions", "rates_mode", "processors")})
    ctx.log("values", type=node.get("type"), running=node.get("running"),
            partitions=node.get("partitions"), rates_mode=node.get("rates_mode"),
            exchange_types=sorted(t["name"] for t in node.get("exchange_types", [])
                                  # plugin types built in here, absent from the reference
                                  if not t["name"].startswith("x-")))
    status, one = ctx.api("GET", f"/api/nodes/{q(node['name'])}")
    ctx.log("by_name", status=status, same_name=one.get("name") == node["name"])
    status, picked = ctx.api("GET", "/api/nodes?columns=name,running")
    ctx.log("columns", status=status, shape=shape(picked))
    mgmt = temp_user(ctx, "mgmt", "management")
    call(ctx, "management_user", "GET", "/api/nodes", user=mgmt, password="pw")
