"""/api/queues[/{vhost}[/{name}]]: list, show, PUT to declare, DELETE (if-empty,
if-unused), DELETE .../contents, POST .../get (ackmode, encoding, truncate), POST
.../actions; the list features (page, name, use_regex, sort, columns)."""

from __future__ import annotations

from ..ctx import shape
from ..registry import scenario
from ._mgmt import G, call, q
from ._mgmt_objects import keys, pick, wait_for

VALUES = ("name", "vhost", "durable", "auto_delete", "exclusive", "arguments", "type",
          "state", "consumers", "messages", "messages_ready", "messages_unacknowledged",
          "message_bytes", "message_bytes_ready", "message_bytes_unacknowledged",
          "policy", "operator_policy", "effective_policy_definition",
          "exclusive_consumer_tag", "single_active_consumer_tag", "head_message_timestamp",
          "consumer_utilisation", "consumer_capacity", "recoverable_slaves")


def _counts(ctx, path: str, messages: int) -> dict:
    """The queue once its statistics show `messages` (RabbitMQ's arrive every 5 s)."""
    body = wait_for(ctx, path, lambda b: b.get("messages") == messages)
    return body if isinstance(body, dict) else {}


@scenario(G, timeout=60)
def queue_fields(ctx):
    """A durable queue with a length limit, three messages published, one taken and not
    acked: its fields in the list and on its page (message_stats counts, depth rates,
    node and memory by shape)."""
    conn = ctx.connect()
    ch = conn.channel()
    name = ctx.queue(ch, "q", durable=True, arguments={"x-max-length": 10})
    ch.confirm_delivery()
    for body in (b"one", b"two", b"three"):
        ch.basic_publish("", name, body)
    ch.basic_get(name)
    path = f"/api/queues/%2F/{q(name)}"
    one = wait_for(ctx, path, lambda b: b.get("messages") == 3 and b.get(
        "message_stats", {}).get("publish") == 3 and b.get("messages_unacknowledged") == 1)
    stats = one.get("message_stats", {})
    ctx.log("one", keys=keys(one), fields=pick(one, *VALUES),
            shapes={k: shape(one.get(k)) for k in (
                "node", "memory", "messages_details", "messages_ready_details",
                "messages_unacknowledged_details", "message_bytes_paged_out",
                "message_bytes_ram", "consumer_details", "deliveries", "incoming")},
            stats={k: stats.get(k) for k in ("publish", "deliver_get")},
            stats_rates=shape({k: stats.get(k) for k in ("publish_details",
                                                         "deliver_get_details")}))
    _, listed = ctx.api("GET", f"/api/queues/%2F?page=1&page_size=10&name={q(name)}")
    item = listed.get("items", [{}])[0] if isinstance(listed, dict) else {}
    ctx.log("listed", keys=keys(item), page=pick(listed, "filtered_count", "item_count",
                                                 "page", "page_count", "page_size"))
    call(ctx, "unknown", "GET", f"/api/queues/%2F/{q(ctx.name('none'))}")
    call(ctx, "unknown_vhost", "GET", f"/api/queues/{q(ctx.name('nov'))}")
    conn.close()


@scenario(G, timeout=30)
def queue_lifecycle(ctx):
    """PUT creates (201) and redeclares (204); inequivalent, invalid and unknown-type
    arguments, a boolean that is not one, bad JSON, amq.* and an unknown vhost are
    refused; a quorum queue; DELETE if-empty and if-unused refuse, DELETE 204 then 404."""
    name = ctx.name("q")
    ctx.track_queue(name)
    path = f"/api/queues/%2F/{q(name)}"
    body = {"durable": True, "auto_delete": False, "arguments": {"x-max-length": 5}}
    call(ctx, "create", "PUT", path, body)
    call(ctx, "redeclare", "PUT", path, body)
    call(ctx, "inequivalent", "PUT", path, {"durable": False})
    other = f"/api/queues/%2F/{q(ctx.name('other'))}"
    call(ctx, "invalid_argument", "PUT", other, {"arguments": {"x-max-length": "ten"}})
    call(ctx, "unknown_type", "PUT", other, {"arguments": {"x-queue-type": "nosuch"}})
    call(ctx, "not_boolean", "PUT", other, {"durable": "yes"})
    call(ctx, "bad_json", "PUT", other, raw=b"{no")
    call(ctx, "reserved", "PUT", "/api/queues/%2F/amq.cf-reserved", {})
    call(ctx, "unknown_vhost", "PUT", f"/api/queues/{q(ctx.name('nov'))}/x", {})
    quorum = ctx.name("quorum")
    ctx.track_queue(quorum)
    call(ctx, "quorum", "PUT", f"/api/queues/%2F/{q(quorum)}",
         {"durable": True, "arguments": {"x-queue-type": "quorum"}})
    _, shown = ctx.api("GET", f"/api/queues/%2F/{q(quorum)}")
    ctx.log("quorum_shown", type=shown.get("type"), durable=shown.get("durable"),
            arguments=shown.get("arguments"))
    ctx.api("POST", "/api/exchanges/%2F/amq.default/publish",
            {"routing_key": name, "payload": "x", "payload_encoding": "string",
             "properties": {}})
    call(ctx, "delete_if_empty", "DELETE", path + "?if-empty=true")
    conn = ctx.connect()
    ch = conn.channel()
    ch.basic_consume(name, lambda *args: None)
    call(ctx, "delete_if_unused", "DELETE", path + "?if-unused=true")
    call(ctx, "delete", "DELETE", path)
    call(ctx, "delete_again", "DELETE", path)
    conn.close()


@scenario(G, timeout=30)
def queue_get_purge_actions(ctx):
    """POST .../get with each ackmode, auto and base64 encodings and truncate (a
    rejected message goes to the dead-letter queue), request errors; DELETE .../contents
    purges; actions sync (nothing to do) and an unknown action."""
    dlq, name = ctx.name("dlq"), ctx.name("q")
    for queue, args in ((dlq, {}), (name, {"x-dead-letter-exchange": "",
                                           "x-dead-letter-routing-key": dlq})):
        ctx.track_queue(queue)
        ctx.api("PUT", f"/api/queues/%2F/{q(queue)}", {"arguments": args})
    publish = "/api/exchanges/%2F/amq.default/publish"
    ctx.api("POST", publish, {"routing_key": name, "payload": "hello world",
                              "payload_encoding": "string",
                              "properties": {"content_type": "text/plain",
                                             "headers": {"n": 1}}})
    ctx.api("POST", publish, {"routing_key": name, "payload": "//4=",
                              "payload_encoding": "base64", "properties": {}})
    get = f"/api/queues/%2F/{q(name)}/get"
    call(ctx, "requeue_truncated", "POST", get, {"count": 5, "ackmode": "ack_requeue_true",
                                                 "encoding": "auto", "truncate": 5})
    call(ctx, "reject_requeue_base64", "POST", get,
         {"count": 1, "ackmode": "reject_requeue_true", "encoding": "base64"})
    call(ctx, "reject_drop", "POST", get, {"count": 1, "ackmode": "reject_requeue_false",
                                           "encoding": "auto"})
    call(ctx, "dead_lettered", "POST", f"/api/queues/%2F/{q(dlq)}/get",
         {"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"})
    call(ctx, "ack_drop", "POST", get, {"count": 1, "ackmode": "ack_requeue_false",
                                        "encoding": "auto"})
    call(ctx, "empty", "POST", get, {"count": 1, "ackmode": "ack_requeue_false",
                                     "encoding": "auto"})
    call(ctx, "missing_encoding", "POST", get, {"count": 1, "ackmode": "ack_requeue_true"})
    call(ctx, "count_not_integer", "POST", get,
         {"count": "many", "ackmode": "ack_requeue_true", "encoding": "auto"})
    call(ctx, "bad_encoding", "POST", get,
         {"count": 1, "ackmode": "ack_requeue_true", "encoding": "hex"})
    call(ctx, "unknown_queue", "POST", f"/api/queues/%2F/{q(ctx.name('none'))}/get",
         {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"})
    for _ in range(3):
        ctx.api("POST", publish, {"routing_key": name, "payload": "x",
                                  "payload_encoding": "string", "properties": {}})
    call(ctx, "purge", "DELETE", f"/api/queues/%2F/{q(name)}/contents")
    call(ctx, "after_purge", "POST", get, {"count": 5, "ackmode": "ack_requeue_false",
                                           "encoding": "auto"})
    call(ctx, "purge_unknown", "DELETE", f"/api/queues/%2F/{q(ctx.name('none'))}/contents")
    call(ctx, "sync", "POST", f"/api/queues/%2F/{q(name)}/actions", {"action": "sync"})
    call(ctx, "unknown_action", "POST", f"/api/queues/%2F/{q(name)}/actions",
         {"action": "nosuch"})


@scenario(G, timeout=30)
def queue_exclusive(ctx):
    """Another connection's exclusive queue: shown with its owner; get, purge, redeclare,
    bind and delete through the API are refused as locked."""
    conn = ctx.connect()
    ch = conn.channel()
    name = ctx.name("mine")
    ch.queue_declare(name, exclusive=True)
    path = f"/api/queues/%2F/{q(name)}"
    one = wait_for(ctx, path, lambda b: bool(b.get("owner_pid_details")))
    owner = one.get("owner_pid_details") or {}
    ctx.log("shown", exclusive=one.get("exclusive"), owner_keys=sorted(owner),
            owner_peer_host=owner.get("peer_host"))
    call(ctx, "get", "POST", path + "/get", {"count": 1, "ackmode": "ack_requeue_true",
                                             "encoding": "auto"})
    call(ctx, "purge", "DELETE", path + "/contents")
    call(ctx, "redeclare", "PUT", path, {})
    call(ctx, "bind", "POST", f"/api/bindings/%2F/e/amq.direct/q/{q(name)}", {})
    call(ctx, "delete", "DELETE", path)
    conn.close()


def paged(ctx, label: str, path: str) -> None:
    """A page, without total_count (the queues of the whole broker under test)."""
    status, body = ctx.api("GET", path)
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k != "total_count"}
    ctx.log(label, status=status, body=body)


@scenario(G, timeout=60)
def queue_list_features(ctx):
    """Three queues with 2, 0 and 1 messages: a page filtered by name, sorted by depth
    (reverse), by regex; columns on a list and an item; bad page parameters."""
    names = {}
    for logical, depth in (("la", 2), ("lb", 0), ("lc", 1)):
        names[logical] = name = ctx.name(logical)
        ctx.track_queue(name)
        ctx.api("PUT", f"/api/queues/%2F/{q(name)}", {})
        for _ in range(depth):
            ctx.api("POST", "/api/exchanges/%2F/amq.default/publish",
                    {"routing_key": name, "payload": "m", "payload_encoding": "string",
                     "properties": {}})
    prefix = ctx.name("l")
    _counts(ctx, f"/api/queues/%2F/{q(names['la'])}", 2)
    _counts(ctx, f"/api/queues/%2F/{q(names['lc'])}", 1)
    paged(ctx, "page", f"/api/queues/%2F?page=1&page_size=2&name={q(prefix)}"
          "&columns=name,messages")
    paged(ctx, "page_two", f"/api/queues/%2F?page=2&page_size=2&name={q(prefix)}"
          "&columns=name")
    paged(ctx, "sorted", f"/api/queues/%2F?page=1&name={q(prefix)}&sort=messages"
          "&sort_reverse=true&columns=name,messages")
    token = ctx.name("")
    paged(ctx, "regex", f"/api/queues?page=1&use_regex=true&name={q(token)}l[ac]$"
          "&columns=name")
    call(ctx, "item_columns", "GET", f"/api/queues/%2F/{q(names['la'])}"
         "?columns=name,arguments,durable")
    call(ctx, "page_zero", "GET", "/api/queues?page=0")
    call(ctx, "page_out_of_range", "GET", f"/api/queues/%2F?page=9&page_size=2"
         f"&name={q(prefix)}")
