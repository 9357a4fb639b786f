"""/api/consumers and /api/consumers/{vhost}: consumers with their channel, queue, prefetch
and arguments; single active consumer statuses."""

from __future__ import annotations

from ..ctx import shape
from ..registry import scenario
from ._mgmt import G, call, q
from ._mgmt_objects import wait_for


def _described(consumer: dict) -> dict:
    details = consumer.get("channel_details", {})
    return {**{k: v for k, v in consumer.items() if k != "channel_details"},
            "channel_details": {k: shape(v) if k in ("node", "peer_port", "connection_name",
                                                     "name") else v
                                for k, v in sorted(details.items())},
            "channel_name_is_connection_and_number": details.get("name") == (
                f"{details.get('connection_name')} ({details.get('number')})")}


@scenario(G, timeout=60)
def consumer_fields(ctx):
    """Two consumers (one exclusive, no-ack, with an argument, prefetch 3) and a single
    active consumer queue with two: as listed for all vhosts and for the vhost; an unknown
    vhost is 404."""
    conn = ctx.connect()
    ch = conn.channel()
    plain = ctx.queue(ch, "plain")
    sac = ctx.queue(ch, "sac", arguments={"x-single-active-consumer": True})
    ch.basic_qos(prefetch_count=3)
    ch.basic_consume(plain, lambda *args: None, auto_ack=True, exclusive=True,
                     consumer_tag=ctx.name("excl"), arguments={"x-priority": 5})
    ch.basic_consume(sac, lambda *args: None, consumer_tag=ctx.name("first"))
    ch.basic_consume(sac, lambda *args: None, consumer_tag=ctx.name("second"))
    names = {plain, sac}

    def mine(body: object) -> list:
        found = [c for c in body if c.get("queue", {}).get("name") in names] \
            if isinstance(body, list) else []
        return sorted(found, key=lambda c: c.get("consumer_tag", ""))

    listed = wait_for(ctx, "/api/consumers", lambda body: len(mine(body)) == 3)
    for consumer in mine(listed):
        ctx.log("consumer", **_described(consumer))
    _, in_vhost = ctx.api("GET", "/api/consumers/%2F")
    ctx.log("in_vhost", tags=[c.get("consumer_tag") for c in mine(in_vhost)])
    page = wait_for(ctx, f"/api/queues/%2F/{q(sac)}",
                    lambda b: bool(b.get("single_active_consumer_tag")))
    ctx.log("queue_consumer_details",
            details=sorted((c.get("consumer_tag"), c.get("active"), c.get("activity_status"))
                           for c in page.get("consumer_details", [])),
            single_active_consumer_tag=page.get("single_active_consumer_tag"),
            exclusive_consumer_tag=page.get("exclusive_consumer_tag"))
    page = wait_for(ctx, f"/api/queues/%2F/{q(plain)}",
                    lambda b: bool(b.get("exclusive_consumer_tag")))
    ctx.log("exclusive_consumer", tag=page.get("exclusive_consumer_tag"))
    call(ctx, "unknown_vhost", "GET", f"/api/consumers/{q(ctx.name('nov'))}")
    conn.close()
