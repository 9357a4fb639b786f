"""Queue lifecycle: declare-ok counts, purge, delete, auto-delete, exclusive, server-named, TTL,
length limits, dead-lettering."""

from __future__ import annotations

import time

import pika
import pika.exceptions as pex

from ..registry import scenario
from .routing import drain

G = "queues"


def _ok(ok) -> dict:
    m = ok.method
    return {"queue": m.queue, "message_count": m.message_count, "consumer_count": m.consumer_count}


@scenario(G)
def declare_ok_counts(ctx):
    """queue.declare-ok message_count and consumer_count, on redeclare and passive declare."""
    conn = ctx.connect()
    ch = conn.channel()
    ch.confirm_delivery()  # publishes below are confirmed before counts are read
    q = ctx.name("q")
    ctx.log("declare", **_ok(ch.queue_declare(q)))
    ctx.track_queue(q)
    for i in range(3):
        ch.basic_publish("", q, str(i).encode())
    ctx.log("redeclare", **_ok(ch.queue_declare(q)))
    ch2 = conn.channel()
    ch2.basic_consume(q, lambda *a: None)
    ch2.basic_consume(q, lambda *a: None)
    ch.basic_qos(prefetch_count=0)
    ctx.log("passive_with_consumers", **_ok(ch.queue_declare(q, passive=True)))
    ch2.close()
    time.sleep(0.1)
    ctx.log("passive_after_close", **_ok(ch.queue_declare(q, passive=True)))


@scenario(G)
def purge_count(ctx):
    """queue.purge-ok message_count counts ready messages only; unacked survive the purge."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    for i in range(5):
        ch.basic_publish("", q, str(i).encode())
    m, _, body = ch.basic_get(q)  # one unacked
    ok = ch.queue_purge(q)
    ctx.log("purge", message_count=ok.method.message_count)
    ctx.log("purge_again", message_count=ch.queue_purge(q).method.message_count)
    ch.basic_nack(m.delivery_tag, requeue=True)
    time.sleep(0.1)
    ctx.log("after_requeue", **_ok(ch.queue_declare(q, passive=True)))


@scenario(G)
def delete_counts(ctx):
    """queue.delete-ok message_count; the queue is gone afterwards (passive 404)."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    ch.confirm_delivery()
    for _i in range(4):
        ch.basic_publish("", q, b"x")
    ch.basic_qos(prefetch_count=0)
    ctx.log("delete", message_count=ch.queue_delete(q).method.message_count)
    with ctx.expect("passive"):
        ch.queue_declare(q, passive=True)


@scenario(G)
def delete_if_empty(ctx):
    """queue.delete if-empty on a non-empty queue: 406; on an empty one: ok."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    ch.basic_publish("", q, b"x")
    with ctx.expect("if_empty_nonempty"):
        ch.queue_delete(q, if_empty=True)
    ch = conn.channel()
    ch.queue_purge(q)
    with ctx.expect("if_empty_empty"):
        ctx.log("deleted", message_count=ch.queue_delete(q, if_empty=True).method.message_count)


@scenario(G)
def delete_if_unused(ctx):
    """queue.delete if-unused with a consumer: 406; after cancel: ok."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    tag = ch.basic_consume(q, lambda *a: None)
    ch2 = conn.channel()
    with ctx.expect("if_unused_used"):
        ch2.queue_delete(q, if_unused=True)
    ch.basic_cancel(tag)
    ch2 = conn.channel()
    with ctx.expect("if_unused_unused"):
        ch2.queue_delete(q, if_unused=True)


@scenario(G)
def exchange_delete_if_unused(ctx):
    """exchange.delete if-unused while a queue is bound: 406; after unbind: ok."""
    conn = ctx.connect()
    ch = conn.channel()
    x = ctx.exchange(ch, "x", "fanout")
    q = ctx.queue(ch, "q")
    ch.queue_bind(q, x)
    with ctx.expect("if_unused_bound"):
        ch.exchange_delete(x, if_unused=True)
    ch = conn.channel()
    ch.queue_unbind(q, x)
    with ctx.expect("if_unused_unbound"):
        ch.exchange_delete(x, if_unused=True)
    with ctx.expect("passive_after"):
        ch.exchange_declare(x, passive=True)


@scenario(G)
def delete_queue_removes_bindings(ctx):
    """Deleting and redeclaring a queue drops its old bindings."""
    conn = ctx.connect()
    ch = conn.channel()
    x = ctx.exchange(ch, "x", "direct")
    q = ctx.queue(ch, "q")
    ch.queue_bind(q, x, "k")
    ch.queue_delete(q)
    ch.queue_declare(q)
    ch.basic_publish(x, "k", b"after")
    ch.basic_qos(prefetch_count=0)
    ctx.log("queue", got=drain(ch, q))


@scenario(G)
def auto_delete_exchange(ctx):
    """An auto-delete exchange disappears when its last binding is removed."""
    conn = ctx.connect()
    ch = conn.channel()
    x = ctx.exchange(ch, "x", "fanout", auto_delete=True)
    q = ctx.queue(ch, "q")
    ch.queue_bind(q, x)
    with ctx.expect("passive_bound"):
        ch.exchange_declare(x, passive=True)
    ch.queue_unbind(q, x)
    with ctx.expect("passive_unbound"):
        ch.exchange_declare(x, passive=True)


@scenario(G)
def auto_delete_after_cancel(ctx):
    """An auto-delete queue survives until its last consumer cancels, then is deleted."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q", auto_delete=True)
    t1 = ch.basic_consume(q, lambda *a: None)
    t2 = ch.basic_consume(q, lambda *a: None)
    ch.basic_cancel(t1)
    other = conn.channel()
    with ctx.expect("after_first_cancel"):
        ctx.log("declare", **_ok(other.queue_declare(q, passive=True)))
    ch.basic_cancel(t2)
    time.sleep(0.1)
    with ctx.expect("after_last_cancel"):
        other.queue_declare(q, passive=True)


@scenario(G)
def auto_delete_never_consumed(ctx):
    """An auto-delete queue that never had a consumer stays."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q", auto_delete=True)
    ch.confirm_delivery()
    ch.basic_publish("", q, b"x")
    conn.close()
    conn = ctx.connect()
    with ctx.expect("passive"):
        ctx.log("declare", **_ok(conn.channel().queue_declare(q, passive=True)))


@scenario(G)
def exclusive_gone_after_close(ctx):
    """An exclusive queue is deleted when its connection closes."""
    owner = ctx.connect()
    q = ctx.queue(owner.channel(), "q", exclusive=True)
    other = ctx.connect()
    with ctx.expect("while_open"):
        other.channel().queue_declare(q, passive=True)
    owner.close()
    time.sleep(0.1)
    with ctx.expect("after_close"):
        other.channel().queue_declare(q, passive=True)


@scenario(G)
def server_named_queue(ctx):
    """queue.declare with an empty name: the server picks amq.gen-*; it is usable and exclusive."""
    conn = ctx.connect()
    ch = conn.channel()
    ok = ch.queue_declare("", exclusive=True)
    q = ok.method.queue
    ctx.track_queue(q)
    ctx.log("declare", **_ok(ok), starts_with_amq_gen=q.startswith("amq.gen-"))
    ch.basic_publish("", q, b"hi")
    ch.basic_qos(prefetch_count=0)
    ctx.log("queue", got=drain(ch, q))
    ok2 = ch.queue_declare("", exclusive=True)
    ctx.track_queue(ok2.method.queue)
    ctx.log("second_differs", differs=ok2.method.queue != q)


@scenario(G)
def message_ttl(ctx):
    """x-message-ttl on the queue and per-message expiration: expired messages are not delivered."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q", arguments={"x-message-ttl": 150})
    q2 = ctx.queue(ch, "q2")
    ch.confirm_delivery()
    ch.basic_publish("", q, b"short")
    ch.basic_publish("", q2, b"expires", pika.BasicProperties(expiration="100"))
    ch.basic_publish("", q2, b"stays", pika.BasicProperties(expiration="60000"))
    ch.basic_qos(prefetch_count=0)
    ctx.log("before", q=_ok(ch.queue_declare(q, passive=True))["message_count"])
    time.sleep(0.4)
    ctx.log("after", q=drain(ch, q), q2=drain(ch, q2))


@scenario(G)
def max_length_drop_head(ctx):
    """x-max-length 2 (default overflow drop-head): oldest messages are dropped."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q", arguments={"x-max-length": 2})
    for i in range(5):
        ch.basic_publish("", q, str(i).encode())
    ch.basic_qos(prefetch_count=0)
    ctx.log("queue", got=drain(ch, q))


@scenario(G)
def dead_letter_on_reject(ctx):
    """Rejected (requeue=false) and expired messages go to the dead-letter exchange with x-death."""
    conn = ctx.connect()
    ch = conn.channel()
    dlx = ctx.exchange(ch, "dlx", "fanout")
    dlq = ctx.queue(ch, "dlq")
    ch.queue_bind(dlq, dlx)
    q = ctx.queue(ch, "q", arguments={"x-dead-letter-exchange": dlx})
    ch.basic_publish("", q, b"rejected")
    ch.basic_publish("", q, b"expired", pika.BasicProperties(expiration="50"))
    m, _, _ = ch.basic_get(q)
    ch.basic_reject(m.delivery_tag, requeue=False)
    time.sleep(0.3)
    ch.basic_get(q, auto_ack=True)  # expiry is checked lazily at the head of the queue
    time.sleep(0.1)
    while True:
        m, props, body = ch.basic_get(dlq, auto_ack=True)
        if m is None:
            break
        deaths = [{k: v for k, v in d.items() if k != "time"}
                  for d in props.headers.get("x-death", [])]
        ctx.log("dead", body=body.decode(), routing_key=m.routing_key, exchange=m.exchange,
                death=deaths,
                other_headers=sorted(k for k in props.headers if k != "x-death"))


@scenario(G)
def queue_durable_flag(ctx):
    """A durable queue and exchange can be declared, used and deleted (no restart involved)."""
    conn = ctx.connect()
    ch = conn.channel()
    x = ctx.exchange(ch, "x", "direct", durable=True)
    q = ctx.queue(ch, "q", durable=True)
    ch.queue_bind(q, x, "k")
    ch.basic_publish(x, "k", b"persistent", pika.BasicProperties(delivery_mode=2))
    ch.basic_qos(prefetch_count=0)
    m, props, body = ch.basic_get(q, auto_ack=True)
    ctx.log("got", body=body, delivery_mode=props.delivery_mode)


@scenario(G)
def priority_queue(ctx):
    """x-max-priority queue delivers higher priorities first, FIFO within a priority."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q", arguments={"x-max-priority": 5})
    for body, prio in (("a0", 0), ("b3", 3), ("c1", 1), ("d3", 3), ("e9", 9), ("f", None)):
        ch.basic_publish("", q, body.encode(), pika.BasicProperties(priority=prio))
    ch.basic_qos(prefetch_count=0)
    ctx.log("queue", got=drain(ch, q))


@scenario(G)
def max_length_bytes_and_overflow_dlx(ctx):
    """x-max-length-bytes drops oldest; reject-publish-dlx dead-letters the refused message."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "bytes", arguments={"x-max-length-bytes": 10})
    for word in (b"aaaa", b"bbbb", b"cccc"):
        ch.basic_publish("", q, word)
    ctx.log("bytes_limited", got=drain(ch, q))
    dlx = ctx.exchange(ch, "dlx", "fanout")
    dead = ctx.queue(ch, "dead")
    ch.queue_bind(dead, dlx)
    full = ctx.queue(ch, "full", arguments={"x-max-length": 1, "x-overflow": "reject-publish-dlx",
                                            "x-dead-letter-exchange": dlx})
    ch.basic_publish("", full, b"first")
    ch.basic_publish("", full, b"second")
    time.sleep(0.2)
    ctx.log("full", got=drain(ch, full))
    method, props, body = ch.basic_get(dead, auto_ack=True)
    death = (props.headers or {}).get("x-death", [{}])[0] if method else {}
    ctx.log("dead", body=body.decode() if body else None, reason=death.get("reason"),
            count=death.get("count"))


@scenario(G)
def queue_expires_when_unused(ctx):
    """x-expires: an unused queue is deleted after the period; passive declare then 404."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "exp", arguments={"x-expires": 300})
    ctx.log("declared", ok=ch.queue_declare(q, passive=True).method.queue == q)
    time.sleep(1.5)
    try:
        ch.queue_declare(q, passive=True)
        ctx.log("after", exists=True)
    except pex.ChannelClosedByBroker as exc:
        ctx.log("after", exists=False, code=exc.reply_code)


@scenario(G)
def invalid_queue_argument(ctx):
    """A negative x-max-length is refused with 406 at declare."""
    conn = ctx.connect()
    ch = conn.channel()
    try:
        ctx.queue(ch, "bad", arguments={"x-max-length": -1})
        ctx.log("declare", outcome="ok")
    except pex.ChannelClosedByBroker as exc:
        ctx.log("declare", code=exc.reply_code, text=exc.reply_text.split(" - ")[0])


@scenario(G)
def dead_letter_cycle(ctx):
    """Two length-limited queues dead-lettering into each other: a message that would go back
    to a queue it already died in (no rejection on the way) is dropped, so each keeps one."""
    conn = ctx.connect()
    ch = conn.channel()
    a, b = ctx.name("a"), ctx.name("b")
    ctx.queue(ch, "a", arguments={"x-max-length": 1, "x-dead-letter-exchange": "",
                                  "x-dead-letter-routing-key": b})
    ctx.queue(ch, "b", arguments={"x-max-length": 1, "x-dead-letter-exchange": "",
                                  "x-dead-letter-routing-key": a})
    ch.confirm_delivery()
    for i in range(5):
        ch.basic_publish("", a, f"m{i}".encode())
    time.sleep(0.2)
    for name, q in (("a", a), ("b", b)):
        got = []
        while True:
            m, props, body = ch.basic_get(q, auto_ack=True)
            if m is None:
                break
            deaths = [{k: v for k, v in d.items() if k != "time"}
                      for d in (props.headers or {}).get("x-death", [])]
            got.append({"body": body.decode(), "death": deaths})
        ctx.log("queue", name=name, got=got)


@scenario(G)
def dead_letter_into_reject_publish(ctx):
    """Dead letters go through the target queue's overflow policy: a full reject-publish queue
    refuses them as it refuses publishes."""
    conn = ctx.connect()
    ch = conn.channel()
    full = ctx.queue(ch, "full", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    src = ctx.queue(ch, "src", arguments={"x-dead-letter-exchange": "",
                                          "x-dead-letter-routing-key": full})
    for i in range(3):
        ch.basic_publish("", src, f"m{i}".encode())
    for _ in range(3):
        m, _, _ = ch.basic_get(src)
        ch.basic_reject(m.delivery_tag, requeue=False)
    time.sleep(0.2)
    got = []
    while True:
        m, _, body = ch.basic_get(full, auto_ack=True)
        if m is None:
            break
        got.append(body.decode())
    ctx.log("full", got=got)
