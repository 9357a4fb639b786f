"""GET /api/overview: its fields for an administrator and for a management user."""

from __future__ import annotations

import time

from ..ctx import shape
from ..registry import scenario
from ._mgmt import G, temp_user


@scenario(G, timeout=60)
def overview_fields(ctx):
    """After a publish, a get and an ack: the overview's field set, message_stats and
    queue_totals with their rate objects, object totals, exchange types, the AMQP listener
    and the management context; a management user sees no node, listeners or contexts."""
    conn = ctx.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    queue = ctx.queue(ch, "q")
    ch.basic_publish("", queue, b"x")
    method, _, _ = ch.basic_get(queue)
    ch.basic_ack(method.delivery_tag)
    overview = {}
    deadline = time.monotonic() + 30  # RabbitMQ's statistics arrive every 5 s
    while time.monotonic() < deadline:
        _, overview = ctx.api("GET", "/api/overview")
        # a RabbitMQ just started lists its HTTP contexts only some seconds later
        if "publish" in overview.get("message_stats", {}) and overview.get("contexts"):
            break
        time.sleep(0.5)
    ctx.log("keys", keys=sorted(overview))
    stats = overview.get("message_stats", {})
    ctx.log("message_stats", fields={k: shape(stats.get(k)) for k in (
        "publish", "publish_details", "deliver_get", "deliver_get_details", "ack",
        "ack_details", "get", "confirm")})
    ctx.log("queue_totals", shape=shape(overview.get("queue_totals")))
    ctx.log("object_totals", shape=shape(overview.get("object_totals")))
    ctx.log("churn_rates", keys=sorted(overview.get("churn_rates", {})))
    # the plugin types (x-...) built in here are absent from the reference RabbitMQ
    ctx.log("fixed", exchange_types=[t for t in overview.get("exchange_types") or []
                                     if not t.get("name", "").startswith("x-")],
            rates_mode=overview.get("rates_mode"),
            sample_retention_policies=overview.get("sample_retention_policies"),
            disable_stats=overview.get("disable_stats"),
            types={k: shape(overview.get(k)) for k in (
                "management_version", "rabbitmq_version", "product_name", "product_version",
                "cluster_name", "node", "statistics_db_event_queue")})
    amqp = [one for one in overview.get("listeners", []) if one.get("port") == ctx.port]
    ctx.log("amqp_listener", found=len(amqp), shape=shape(amqp[0]) if amqp else None,
            protocol=amqp[0].get("protocol") if amqp else None)
    web = [one for one in overview.get("contexts", [])
           if one.get("description") == "RabbitMQ Management"]
    ctx.log("management_context", found=len(web), shape=shape(web[0]) if web else None,
            port_is_text=isinstance(web[0].get("port"), str) if web else None)
    ch.queue_delete(queue)
    conn.close()
    mgmt = temp_user(ctx, "mgmt", "management")
    _, mine = ctx.api("GET", "/api/overview", user=mgmt, password="pw")
    ctx.log("management_user", has=sorted(k for k in ("node", "listeners", "contexts",
                                                      "object_totals", "queue_totals")
                                          if k in mine))
