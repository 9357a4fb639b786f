"""Acknowledgements: ack/nack/reject, requeue ordering, redelivered flags, recover, channel
close."""

from __future__ import annotations

from ..ctx import pump
from ..registry import scenario

G = "acks"


def publish_n(ch, q, n, prefix="m"):
    for i in range(n):
        ch.basic_publish("", q, f"{prefix}{i}".encode())
    ch.basic_qos(prefetch_count=0)


def get_all(ch, q, ack=True):
    """basic.get until empty; returns [(body, redelivered, delivery_tag)]."""
    out = []
    while True:
        m, _, body = ch.basic_get(q, auto_ack=ack)
        if m is None:
            return out
        out.append([body.decode(), m.redelivered, m.delivery_tag])


class Collector:
    def __init__(self, ch):
        self.ch = ch
        self.got = []

    def __call__(self, ch, method, props, body):
        self.got.append({"body": body.decode(), "redelivered": method.redelivered,
                         "tag": method.delivery_tag})


@scenario(G)
def get_and_get_empty(ctx):
    """basic.get-ok message_count (remaining) and basic.get-empty on an empty queue."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    publish_n(ch, q, 3)
    for _ in range(4):
        m, props, body = ch.basic_get(q, auto_ack=True)
        if m is None:
            ctx.log("get_empty")
        else:
            ctx.log("get_ok", body=body, message_count=m.message_count, redelivered=m.redelivered,
                    delivery_tag=m.delivery_tag, exchange=m.exchange, routing_key=m.routing_key)


@scenario(G)
def reject_requeue_position(ctx):
    """A requeued message goes back to its original position (ahead of later messages)."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    publish_n(ch, q, 4)
    m0, _, _ = ch.basic_get(q)
    m1, _, _ = ch.basic_get(q)
    ch.basic_reject(m1.delivery_tag, requeue=True)
    ch.basic_reject(m0.delivery_tag, requeue=True)
    ctx.log("order", got=get_all(ch, q))


@scenario(G)
def reject_no_requeue(ctx):
    """basic.reject requeue=false discards the message."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    publish_n(ch, q, 2)
    m, _, _ = ch.basic_get(q)
    ch.basic_reject(m.delivery_tag, requeue=False)
    ctx.log("rest", got=get_all(ch, q))


@scenario(G)
def nack_multiple_requeue(ctx):
    """basic.nack multiple requeue: all up to the tag are requeued in original order,
    redelivered."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    publish_n(ch, q, 5)
    col = Collector(ch)
    ch.basic_consume(q, col)
    pump(conn, 0.3)
    ctx.log("first", got=col.got)
    ch.basic_nack(3, multiple=True, requeue=True)
    pump(conn, 0.3)
    ctx.log("after_nack", got=col.got[5:])
    ch.basic_ack(0, multiple=True)
    ch.basic_qos(prefetch_count=0)


@scenario(G)
def nack_no_requeue(ctx):
    """basic.nack requeue=false single and multiple discard."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    publish_n(ch, q, 4)
    tags = [ch.basic_get(q)[0].delivery_tag for _ in range(3)]
    ch.basic_nack(tags[0], requeue=False)
    ch.basic_nack(tags[2], multiple=True, requeue=False)
    ctx.log("rest", got=get_all(ch, q))


@scenario(G)
def ack_multiple(ctx):
    """basic.ack multiple acks everything up to the tag; the others return on channel close."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    publish_n(ch, q, 5)
    tags = [ch.basic_get(q)[0].delivery_tag for _ in range(5)]
    ctx.log("tags", tags=tags)
    ch.basic_ack(3, multiple=True)
    ch.close()
    ch = conn.channel()
    ctx.log("remaining", got=get_all(ch, q))


@scenario(G)
def ack_zero_multiple(ctx):
    """basic.ack delivery_tag=0 multiple=true acks all outstanding deliveries."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    publish_n(ch, q, 3)
    for _ in range(3):
        ch.basic_get(q)
    with ctx.expect("ack0"):
        ch.basic_ack(0, multiple=True)
        ch.basic_qos(prefetch_count=0)
    ch.close()
    ch = conn.channel()
    ctx.log("remaining", got=get_all(ch, q))


@scenario(G)
def unacked_requeued_on_channel_close(ctx):
    """Unacked deliveries return to the queue in order, redelivered=true, when the channel
    closes."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    publish_n(ch, q, 4)
    col = Collector(ch)
    ch.basic_consume(q, col)
    pump(conn, 0.3)
    ch.basic_ack(2)
    ch.close()
    ch = conn.channel()
    ctx.log("consumed", got=col.got)
    ctx.log("after_close", got=get_all(ch, q))


@scenario(G)
def unacked_requeued_on_connection_close(ctx):
    """Unacked deliveries return to the queue when the connection closes."""
    c1 = ctx.connect()
    ch = c1.channel()
    q = ctx.queue(ch, "q")
    publish_n(ch, q, 3)
    ch.basic_get(q)
    ch.basic_get(q)
    c1.close()
    c2 = ctx.connect()
    ctx.log("after_close", got=get_all(c2.channel(), q))


@scenario(G)
def recover_requeue(ctx):
    """basic.recover requeue=true: unacked messages come back redelivered, in order."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    publish_n(ch, q, 3)
    ch.basic_get(q)
    ch.basic_get(q)
    ch.basic_recover(requeue=True)
    ctx.log("after_recover", got=get_all(ch, q))


@scenario(G)
def recover_consumer(ctx):
    """basic.recover with a consumer: the consumer receives the unacked messages again."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    publish_n(ch, q, 2)
    col = Collector(ch)
    ch.basic_consume(q, col)
    pump(conn, 0.3)
    ch.basic_recover(requeue=True)
    pump(conn, 0.3)
    ctx.log("got", got=col.got)
    ch.basic_ack(0, multiple=True)
    ch.basic_qos(prefetch_count=0)


@scenario(G)
def consumer_redelivery_order(ctx):
    """Consumer nacks one message with requeue: it comes back (redelivered) before newer
    messages."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    publish_n(ch, q, 3)
    ch.basic_qos(prefetch_count=1)
    got = []
    state = {"nacked": False}

    def cb(c, m, p, body):
        got.append([body.decode(), m.redelivered])
        if body == b"m0" and not state["nacked"]:
            state["nacked"] = True
            c.basic_nack(m.delivery_tag, requeue=True)
        else:
            c.basic_ack(m.delivery_tag)

    ch.basic_consume(q, cb)
    for _ in range(20):
        pump(conn, 0.1)
        if len(got) >= 4:
            break
    pump(conn, 0.1)
    ctx.log("got", got=got)
