"""/api/exchanges[/{vhost}[/{name}]]: list, show, PUT to declare, DELETE (if-unused), and
POST .../publish with its routed answer and errors."""

from __future__ import annotations

from ..registry import scenario
from ._mgmt import G, call, q
from ._mgmt_objects import find, keys


def _show(ctx, label: str, path: str) -> None:
    status, body = ctx.api("GET", path)
    if isinstance(body, dict):
        body = {k: body[k] for k in keys(body) if k != "message_stats"}
    ctx.log(label, status=status, body=body)


@scenario(G, timeout=30)
def exchange_lifecycle(ctx):
    """PUT creates (201) and redeclares (204); an inequivalent type, an unknown type, a
    boolean that is not one, bad JSON, an amq.* name and an unknown vhost are refused;
    DELETE with if-unused refuses a bound exchange; DELETE 204 then 404."""
    name = ctx.name("x")
    ctx.track_exchange(name)
    path = f"/api/exchanges/%2F/{q(name)}"
    body = {"type": "topic", "durable": True, "auto_delete": False, "internal": False,
            "arguments": {"alternate-exchange": ctx.name("ae")}}
    call(ctx, "create", "PUT", path, body)
    call(ctx, "redeclare", "PUT", path, body)
    _show(ctx, "show", path)
    call(ctx, "inequivalent", "PUT", path, {**body, "type": "direct"})
    call(ctx, "unknown_type", "PUT", f"/api/exchanges/%2F/{q(ctx.name('y'))}",
         {"type": "nosuch"})
    call(ctx, "not_boolean", "PUT", f"/api/exchanges/%2F/{q(ctx.name('y'))}",
         {"type": "direct", "durable": "maybe"})
    call(ctx, "bad_json", "PUT", path, raw=b"{nope")
    call(ctx, "reserved", "PUT", "/api/exchanges/%2F/amq.cf-reserved", {"type": "direct"})
    call(ctx, "unknown_vhost", "PUT", f"/api/exchanges/{q(ctx.name('nov'))}/x",
         {"type": "direct"})
    defaulted = ctx.name("z")
    ctx.track_exchange(defaulted)
    call(ctx, "defaults", "PUT", f"/api/exchanges/%2F/{q(defaulted)}", {})
    _show(ctx, "show_defaults", f"/api/exchanges/%2F/{q(defaulted)}")
    queue = ctx.name("q")
    ctx.track_queue(queue)
    call(ctx, "queue", "PUT", f"/api/queues/%2F/{q(queue)}", {})
    call(ctx, "bind", "POST", f"/api/bindings/%2F/e/{q(name)}/q/{q(queue)}",
         {"routing_key": "k"})
    call(ctx, "delete_if_unused", "DELETE", path + "?if-unused=true")
    call(ctx, "delete", "DELETE", path)
    call(ctx, "delete_again", "DELETE", path)
    call(ctx, "show_deleted", "GET", path)
    call(ctx, "delete_system", "DELETE", "/api/exchanges/%2F/amq.direct")


@scenario(G)
def exchange_lists(ctx):
    """The default exchange (amq.default in a path, "" in JSON) and the amq.* exchanges
    of the default vhost; the all-vhosts list holds them; an unknown vhost is 404."""
    _show(ctx, "default", "/api/exchanges/%2F/amq.default")
    _show(ctx, "amq_topic", "/api/exchanges/%2F/amq.topic")
    _, listed = ctx.api("GET", "/api/exchanges/%2F?columns=name,type,durable,internal")
    ctx.log("system", items=[x for x in listed if x["name"] in (
        "", "amq.direct", "amq.fanout", "amq.headers", "amq.match", "amq.topic")])
    _, everywhere = ctx.api("GET", "/api/exchanges?columns=name,vhost")
    ctx.log("all_vhosts", has_default=find(everywhere, name="", vhost="/") is not None)
    call(ctx, "unknown_vhost", "GET", f"/api/exchanges/{q(ctx.name('nov'))}")
    call(ctx, "unknown", "GET", f"/api/exchanges/%2F/{q(ctx.name('none'))}")


@scenario(G)
def exchange_publish(ctx):
    """POST .../publish: routed true to a queue (string and base64 payloads, properties and
    headers of each JSON type, as basic.get on that queue sees them), false when no queue
    takes it; a missing key, a bad encoding, bad base64, a payload that is not a string,
    a property of the wrong type, an unknown exchange and a bad expiration are refused."""
    queue = ctx.name("q")
    ctx.track_queue(queue)
    ctx.api("PUT", f"/api/queues/%2F/{q(queue)}", {})
    url = "/api/exchanges/%2F/amq.default/publish"
    props = {"content_type": "text/plain", "delivery_mode": 2, "priority": 3,
             "correlation_id": "cid", "timestamp": 1700000000, "type": "kind",
             "headers": {"int": 1, "str": "x", "list": [1, "y"], "table": {"t": True},
                         "float": 1.5}}
    call(ctx, "routed", "POST", url, {"routing_key": queue, "payload": "héllo",
                                      "payload_encoding": "string", "properties": props})
    call(ctx, "base64", "POST", url, {"routing_key": queue, "payload": "AAEC/w==",
                                      "payload_encoding": "base64", "properties": {}})
    call(ctx, "unroutable", "POST", url, {"routing_key": ctx.name("none"), "payload": "x",
                                          "payload_encoding": "string", "properties": {}})
    conn = ctx.connect()
    ch = conn.channel()
    for label in ("got_first", "got_second"):
        method, header, body = ch.basic_get(queue, auto_ack=True)
        ctx.log(label, routing_key=method.routing_key, exchange=method.exchange, body=body,
                content_type=header.content_type, delivery_mode=header.delivery_mode,
                priority=header.priority, correlation_id=header.correlation_id,
                timestamp=header.timestamp, type=header.type, headers=header.headers)
    conn.close()
    base = {"routing_key": queue, "payload": "x", "payload_encoding": "string",
            "properties": {}}
    call(ctx, "missing_properties", "POST", url,
         {k: v for k, v in base.items() if k != "properties"})
    call(ctx, "bad_encoding", "POST", url, {**base, "payload_encoding": "hex"})
    call(ctx, "bad_base64", "POST", url, {**base, "payload_encoding": "base64"})
    call(ctx, "payload_not_string", "POST", url, {**base, "payload": 12})
    call(ctx, "delivery_mode_not_int", "POST", url,
         {**base, "properties": {"delivery_mode": "2"}})
    call(ctx, "unknown_exchange", "POST", f"/api/exchanges/%2F/{q(ctx.name('none'))}/publish",
         base)
    call(ctx, "bad_expiration", "POST", url, {**base, "properties": {"expiration": "soon"}})
