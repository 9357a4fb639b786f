"""/api/channels, /api/channels/{name}, /api/vhosts/{vhost}/channels: a consuming channel
with a prefetch and a confirm-mode publishing channel, as listed and shown."""

from __future__ import annotations

from ..ctx import shape
from ..registry import scenario
from ._mgmt import G, call, q
from ._mgmt_objects import find, keys, pick, wait_for

VALUES = ("number", "user", "vhost", "state", "confirm", "transactional", "consumer_count",
          "prefetch_count", "global_prefetch_count", "messages_unacknowledged",
          "messages_unconfirmed", "messages_uncommitted", "acks_uncommitted",
          "pending_raft_commands")


def _described(channel: dict, connection: str) -> dict:
    details = channel.get("connection_details", {})
    stats = channel.get("message_stats", {})
    return {**pick(channel, *VALUES), "node": shape(channel.get("node")),
            "name_is_connection_and_number": channel.get("name") == (
                f"{connection} ({channel.get('number')})"),
            "connection_details": {"keys": sorted(details),
                                   "name_matches": details.get("name") == connection},
            "message_stats": {k: stats[k] for k in sorted(stats) if not k.endswith("_details")},
            "message_stats_rates": sorted(k for k in stats if k.endswith("_details"))}


@scenario(G, timeout=60)
def channel_fields(ctx):
    """Channel 1 consumes with prefetch 5 and holds one unacked delivery; channel 2 is in
    confirm mode and published twice, once unroutable: their fields, the message_stats
    each shows, the consumer on the channel's own page; unknown is 404."""
    conn = ctx.connect(client_properties={"connection_name": ctx.name("conn")})
    consumer = conn.channel()
    publisher = conn.channel()
    queue = ctx.queue(consumer, "q")
    consumer.basic_qos(prefetch_count=5)
    consumer.basic_consume(queue, lambda *args: None, consumer_tag=ctx.name("ctag"))
    publisher.confirm_delivery()
    publisher.basic_publish("", queue, b"one")
    publisher.basic_publish("", ctx.name("nowhere"), b"two")
    conn.process_data_events(0.2)
    listed = wait_for(ctx, "/api/connections", lambda body: find(
        body, user_provided_name=ctx.name("conn")) is not None)
    connection = (find(listed, user_provided_name=ctx.name("conn")) or {}).get("name", "?")

    def ready(body: object) -> bool:
        mine = [c for c in body if c.get("connection_details", {}).get("name") == connection]
        stats = [c.get("message_stats", {}) for c in mine]
        # RabbitMQ emits a channel's counts and its message stats apart (every few
        # seconds): wait for both, consumer, prefetch, unacked and confirm mode included
        return len(mine) == 2 and any(s.get("deliver") == 1 for s in stats) and any(
            s.get("publish") == 2 and s.get("confirm") == 2 for s in stats) and any(
            c.get("consumer_count") == 1 and c.get("prefetch_count") == 5
            and c.get("messages_unacknowledged") == 1 for c in mine) and any(
            c.get("confirm") is True for c in mine)

    channels = wait_for(ctx, "/api/channels", ready)
    mine = sorted((c for c in channels
                   if c.get("connection_details", {}).get("name") == connection),
                  key=lambda c: c.get("number", 0))
    for one in mine:
        ctx.log("listed", keys=keys(one), fields=_described(one, connection))
    _, in_vhost = ctx.api("GET", "/api/vhosts/%2F/channels")
    ctx.log("in_vhost", found=sum(1 for c in in_vhost if c.get("connection_details", {}).get(
        "name") == connection))
    status, one = ctx.api("GET", f"/api/channels/{q(connection + ' (1)')}")
    ctx.log("one", status=status, keys=keys(one), fields=_described(one, connection),
            consumers=[pick(c, "consumer_tag", "prefetch_count", "ack_required", "exclusive")
                       for c in one.get("consumer_details", [])],
            deliveries=one.get("deliveries"), publishes=one.get("publishes"))
    call(ctx, "unknown", "GET", "/api/channels/" + q(connection + " (9)"))
    call(ctx, "unknown_vhost", "GET", f"/api/vhosts/{q(ctx.name('nov'))}/channels")
    conn.close()
