"""/api/bindings and its forms: all, per vhost, between an exchange and a queue or
exchange (GET, POST with Location), one binding by properties_key (GET, DELETE), and
the exchange source/destination and queue binding lists."""

from __future__ import annotations

from ..registry import scenario
from ._mgmt import G, call, q


def _created(ctx, label: str, path: str, body: dict) -> None:
    status, _ = ctx.api("POST", path, body)
    ctx.log(label, status=status)


@scenario(G, timeout=30)
def binding_lifecycle(ctx):
    """Bind a topic exchange to a queue (no key, a key, a key with arguments) and to an
    exchange; list them every way; show and delete by properties_key; errors."""
    src, dst, queue = ctx.name("src"), ctx.name("dst"), ctx.name("q")
    for name, kind in ((src, "topic"), (dst, "fanout")):
        ctx.track_exchange(name)
        ctx.api("PUT", f"/api/exchanges/%2F/{q(name)}", {"type": kind})
    ctx.track_queue(queue)
    ctx.api("PUT", f"/api/queues/%2F/{q(queue)}", {"durable": True})
    to_queue = f"/api/bindings/%2F/e/{q(src)}/q/{q(queue)}"
    to_exchange = f"/api/bindings/%2F/e/{q(src)}/e/{q(dst)}"
    status, location, _ = _post(ctx, to_queue, {})
    ctx.log("bind_empty", status=status, location=location)
    status, location, _ = _post(ctx, to_queue, {"routing_key": "a.#"})
    ctx.log("bind_key", status=status, location=location)
    status, location, _ = _post(ctx, to_queue, {"routing_key": "b~c d/e"})
    ctx.log("bind_odd_key", status=status, location=location)
    status, location, _ = _post(ctx, to_queue, {"routing_key": "h", "arguments": {
        "x": 1, "s": "héllo", "t": True, "f": 2.5, "n": -7, "l": [1, "y"], "d": {"k": "v"}}})
    ctx.log("bind_arguments", status=status, location=location)
    status, location, _ = _post(ctx, to_exchange, {"routing_key": "e.*"})
    ctx.log("bind_exchange", status=status, location=location)
    _, between = ctx.api("GET", to_queue)
    ctx.log("between", items=between)
    call(ctx, "to_exchange", "GET", to_exchange)
    _, by_queue = ctx.api("GET", f"/api/queues/%2F/{q(queue)}/bindings")
    ctx.log("queue_bindings", items=by_queue)
    _, by_source = ctx.api("GET", f"/api/exchanges/%2F/{q(src)}/bindings/source")
    ctx.log("source", items=by_source)
    call(ctx, "destination", "GET", f"/api/exchanges/%2F/{q(dst)}/bindings/destination")
    _, in_vhost = ctx.api("GET", "/api/bindings/%2F")
    ctx.log("in_vhost", items=[b for b in in_vhost if b["source"] == src])
    _, everywhere = ctx.api("GET", "/api/bindings")
    ctx.log("all", found=sum(1 for b in everywhere if b["source"] == src))
    call(ctx, "one", "GET", to_queue + "/a.%2523")
    call(ctx, "one_empty", "GET", to_queue + "/~")
    hashed = [b for b in between if b["arguments"]]
    key = hashed[0]["properties_key"] if hashed else "x"
    status, one = ctx.api("GET", f"{to_queue}/{q(key)}")
    ctx.log("one_hashed", status=status, body=one)
    call(ctx, "unknown_props", "GET", to_queue + "/nokey")
    call(ctx, "wrong_hash", "GET", to_queue + "/h~AAAAAA")
    call(ctx, "delete", "DELETE", to_queue + "/a.%2523")
    call(ctx, "delete_again", "DELETE", to_queue + "/a.%2523")
    call(ctx, "delete_hashed", "DELETE", f"{to_queue}/{q(key)}")
    call(ctx, "delete_exchange_binding", "DELETE", to_exchange + "/e.%252A")
    _, left = ctx.api("GET", to_queue)
    ctx.log("left", keys=[b["routing_key"] for b in left])


def _post(ctx, path: str, body: dict) -> tuple[int, str | None, object]:
    import base64
    import json
    import urllib.error
    import urllib.request
    req = urllib.request.Request(f"http://{ctx.host}:{ctx.management_port}{path}",
                                 data=json.dumps(body).encode(), method="POST")
    req.add_header("content-type", "application/json")
    token = base64.b64encode(f"{ctx.user}:{ctx.password}".encode()).decode()
    req.add_header("authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status), resp.headers.get("location"), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.headers.get("location"), exc.read()


@scenario(G)
def binding_errors(ctx):
    """Binding to a missing queue or from a missing exchange is 404 with the AMQP text,
    in a missing vhost 404 vhost_not_found, from the default exchange 401; listing
    between missing objects is an empty list. (A body that is not JSON is 500 in RabbitMQ
    3.10, a crash; ours answers 400 not_json as its other endpoints do: not compared.)"""
    src, queue = ctx.name("src"), ctx.name("q")
    ctx.track_exchange(src)
    ctx.api("PUT", f"/api/exchanges/%2F/{q(src)}", {"type": "direct"})
    ctx.track_queue(queue)
    ctx.api("PUT", f"/api/queues/%2F/{q(queue)}", {})
    call(ctx, "missing_queue", "POST", f"/api/bindings/%2F/e/{q(src)}/q/{q(ctx.name('no'))}",
         {})
    call(ctx, "missing_exchange", "POST",
         f"/api/bindings/%2F/e/{q(ctx.name('no'))}/q/{q(queue)}", {})
    call(ctx, "missing_vhost", "POST",
         f"/api/bindings/{q(ctx.name('nov'))}/e/{q(src)}/q/{q(queue)}", {})
    call(ctx, "default_exchange", "POST", f"/api/bindings/%2F/e/amq.default/q/{q(queue)}", {})
    call(ctx, "default_listed", "GET", f"/api/bindings/%2F/e/amq.default/q/{q(queue)}")
    call(ctx, "between_missing", "GET", f"/api/bindings/%2F/e/{q(ctx.name('no'))}/q/{q(queue)}")
    call(ctx, "unknown_vhost_list", "GET", f"/api/bindings/{q(ctx.name('nov'))}")
