"""Poison messages on quorum queues: x-delivery-limit, the x-delivery-count header, the
dead letter with reason delivery_limit; and the declarations a quorum queue refuses."""

from __future__ import annotations

import time

import pika

from ..ctx import pump
from ..registry import scenario

G = "poison"
QUORUM = {"x-queue-type": "quorum"}


def get(ch, q, tries=200):
    """basic.get, waiting for a message on its way (a quorum queue applies a return
    asynchronously)."""
    for _ in range(tries):
        m, props, body = ch.basic_get(q)
        if m is not None:
            return m, props, body
        time.sleep(0.02)
    return None, None, None


def dlx_queue(ctx, ch, limit):
    dlx = ctx.exchange(ch, "dlx", "fanout")
    dlq = ctx.queue(ch, "dlq")
    ch.queue_bind(dlq, dlx)
    q = ctx.queue(ch, "q", durable=True, arguments={
        **QUORUM, "x-delivery-limit": limit, "x-dead-letter-exchange": dlx})
    return q, dlq


@scenario(G)
def delivery_limit_get(ctx):
    """basic.get and basic.reject requeue: x-delivery-count 0, 1, 2, then past the limit
    the message is dead-lettered with reason delivery_limit (no x-delivery-count there)."""
    conn = ctx.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    q, dlq = dlx_queue(ctx, ch, 2)
    ch.basic_publish("", q, b"m1", pika.BasicProperties(headers={"h": 1}))
    for _ in range(4):
        m, props, body = get(ch, q, tries=50)
        if m is None:
            ctx.log("get_empty")
            break
        ctx.log("get", body=body, redelivered=m.redelivered, headers=props.headers)
        ch.basic_reject(m.delivery_tag, requeue=True)
    m, props, body = get(ch, dlq)
    ctx.log("dead_letter", body=body, redelivered=m.redelivered, headers=props.headers)
    ch.basic_ack(m.delivery_tag)


@scenario(G)
def delivery_limit_consumer(ctx):
    """A consumer nacking with requeue: the first delivery has no header, redeliveries
    carry the count; the dead letter follows the limit."""
    conn = ctx.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    q, dlq = dlx_queue(ctx, ch, 1)
    ch.basic_publish("", q, b"m2")
    seen = []

    def on_message(channel, method, props, body):
        seen.append({"body": body, "redelivered": method.redelivered,
                     "headers": props.headers})
        channel.basic_nack(method.delivery_tag, requeue=True)

    tag = ch.basic_consume(q, on_message)
    deadline = time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:
        pump(conn, 0.05)
    ch.basic_cancel(tag)
    for entry in seen:
        ctx.log("deliver", **entry)
    m, props, body = get(ch, dlq)
    ctx.log("dead_letter", body=body, reason=props.headers["x-death"][0]["reason"],
            count=props.headers["x-death"][0]["count"])
    ch.basic_ack(m.delivery_tag)


@scenario(G)
def delivery_limit_channel_close(ctx):
    """Unacked deliveries a closing channel returns count; no dead-letter exchange: past
    the limit the message is dropped."""
    conn = ctx.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    q = ctx.queue(ch, "q", durable=True, arguments={**QUORUM, "x-delivery-limit": 1})
    ch.basic_publish("", q, b"m3")
    for _ in range(3):
        other = conn.channel()
        m, props, body = get(other, q, tries=50)
        ctx.log("get", found=m is not None,
                count=props.headers.get("x-delivery-count") if m else None)
        other.close()
    ctx.log("left", message_count=ch.queue_declare(q, passive=True).method.message_count)


@scenario(G)
def quorum_declare_refusals(ctx):
    """What a quorum queue cannot be: non-durable, exclusive, auto-delete, with classic
    arguments; a redeclare without the type."""
    conn = ctx.connect()
    cases = [
        ("non_durable", {}, QUORUM),
        ("exclusive", {"durable": True, "exclusive": True}, QUORUM),
        ("auto_delete", {"durable": True, "auto_delete": True}, QUORUM),
        ("max_priority", {"durable": True}, {**QUORUM, "x-max-priority": 4}),
        ("delivery_limit_ok", {"durable": True}, {**QUORUM, "x-delivery-limit": 5}),
    ]
    for label, props, arguments in cases:
        name = ctx.name(label)
        ctx.track_queue(name)
        with ctx.expect("declare", case=label):
            conn.channel().queue_declare(name, arguments=arguments, **props)
    with ctx.expect("redeclare_without_type"):
        conn.channel().queue_declare(ctx.name("delivery_limit_ok"), durable=True)
