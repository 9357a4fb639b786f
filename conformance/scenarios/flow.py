"""Consumers, prefetch, publisher confirms, transactions, channel.flow."""

from __future__ import annotations

import pika
import pika.exceptions as pex

from ..ctx import pump
from ..registry import scenario
from .acks import Collector, get_all, publish_n

G = "consumers"


@scenario(G)
def prefetch_two_of_five(ctx):
    """basic.qos prefetch_count=2 with 5 messages: exactly 2 delivered until an ack frees a slot."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    publish_n(ch, q, 5)
    ch.basic_qos(prefetch_count=2)
    col = Collector(ch)
    ch.basic_consume(q, col)
    pump(conn, 0.3)
    ctx.log("before_ack", got=[g["body"] for g in col.got])
    ch.basic_ack(col.got[0]["tag"])
    pump(conn, 0.3)
    ctx.log("after_one_ack", got=[g["body"] for g in col.got])
    ch.basic_ack(col.got[-1]["tag"], multiple=True)
    pump(conn, 0.3)
    ctx.log("after_multi_ack", got=[g["body"] for g in col.got])
    ch.basic_ack(0, multiple=True)
    ch.basic_qos(prefetch_count=0)


@scenario(G)
def prefetch_per_consumer_vs_global(ctx):
    """qos per consumer (global=false) vs shared per channel (global=true), two consumers each."""
    conn = ctx.connect()
    for mode in (False, True):
        ch = conn.channel()
        q1, q2 = ctx.queue(ch, f"a{mode}"), ctx.queue(ch, f"b{mode}")
        publish_n(ch, q1, 5)
        publish_n(ch, q2, 5)
        ch.basic_qos(prefetch_count=3, global_qos=mode)
        c1, c2 = Collector(ch), Collector(ch)
        ch.basic_consume(q1, c1)
        ch.basic_consume(q2, c2)
        pump(conn, 0.3)
        ctx.log("delivered", global_qos=mode, first=len(c1.got), second=len(c2.got),
                total=len(c1.got) + len(c2.got))
        ch.close()


@scenario(G)
def get_ignores_prefetch(ctx):
    """basic.get is not limited by basic.qos."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    publish_n(ch, q, 3)
    ch.basic_qos(prefetch_count=1)
    ctx.log("gets", got=get_all(ch, q, ack=False))


@scenario(G)
def round_robin(ctx):
    """Two consumers on one queue share the messages round-robin."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    seen = []
    ch.basic_consume(q, lambda c, m, p, b: seen.append(["A", b.decode()]), auto_ack=True)
    ch.basic_consume(q, lambda c, m, p, b: seen.append(["B", b.decode()]), auto_ack=True)
    publish_n(ch, q, 6)
    pump(conn, 0.3)
    ctx.log("by_consumer", A=[b for c, b in seen if c == "A"], B=[b for c, b in seen if c == "B"])


@scenario(G)
def cancel_notification_on_delete(ctx):
    """Deleting a queue under a consumer sends basic.cancel to the consumer
    (consumer_cancel_notify)."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    cancelled = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    ch.basic_consume(q, lambda *a: None, consumer_tag="my-consumer")
    other = ctx.connect().channel()
    other.queue_delete(q)
    pump(conn, 0.3)
    ctx.log("cancelled", tags=cancelled, channel_open=ch.is_open,
            consumer_tags=list(ch.consumer_tags))


@scenario(G)
def basic_cancel_ok(ctx):
    """basic.cancel returns cancel-ok; messages published afterwards stay in the queue."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    col = Collector(ch)
    tag = ch.basic_consume(q, col, auto_ack=True)
    publish_n(ch, q, 1)
    pump(conn, 0.2)
    ch.basic_cancel(tag)
    publish_n(ch, q, 2, prefix="late")
    pump(conn, 0.2)
    ctx.log("consumed", got=[g["body"] for g in col.got])
    ctx.log("left", got=get_all(ch, q))


@scenario(G)
def exclusive_consumer(ctx):
    """basic.consume exclusive=true: a second consumer gets 403 ACCESS_REFUSED."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    with ctx.expect("first"):
        ch.basic_consume(q, lambda *a: None, exclusive=True)
    with ctx.expect("second"):
        conn.channel().basic_consume(q, lambda *a: None)


@scenario(G)
def consumer_after_exclusive_blocked(ctx):
    """An exclusive consumer is refused while another consumer exists: 403."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    ch.basic_consume(q, lambda *a: None)
    with ctx.expect("exclusive"):
        conn.channel().basic_consume(q, lambda *a: None, exclusive=True)


@scenario(G)
def consume_autoack_delivery_fields(ctx):
    """Delivery fields seen by a no-ack consumer: tags, redelivered, exchange, routing key."""
    conn = ctx.connect()
    ch = conn.channel()
    x = ctx.exchange(ch, "x", "topic")
    q = ctx.queue(ch, "q")
    ch.queue_bind(q, x, "a.#")
    got = []
    ch.basic_consume(q, lambda c, m, p, b: got.append(
        {"tag": m.delivery_tag, "redelivered": m.redelivered, "exchange": m.exchange,
         "routing_key": m.routing_key, "consumer_tag": m.consumer_tag, "body": b}),
        auto_ack=True, consumer_tag="fixed-tag")
    ch.basic_publish(x, "a.b", b"1")
    ch.basic_publish(x, "a", b"2")
    pump(conn, 0.3)
    ctx.log("deliveries", got=got)


@scenario("confirms")
def confirm_sequence(ctx):
    """Publisher confirms: confirm.select-ok, then every publish acked; tags 1..N, covered once."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    acks = []
    done = []
    impl = ch._impl
    impl.confirm_delivery(lambda frame: acks.append(
        [type(frame.method).__name__, frame.method.delivery_tag, frame.method.multiple]),
        callback=lambda frame: done.append(type(frame.method).__name__))
    pump(conn, 0.2)
    ctx.log("select_ok", replies=done)
    impl.basic_publish("", q, b"first")
    for _ in range(20):
        if acks:
            break
        pump(conn, 0.05)
    ctx.log("first_ack", ack=acks[:1])
    for i in range(30):
        impl.basic_publish("", q, f"m{i}".encode())
    for _ in range(60):
        pump(conn, 0.05)
        if acks and acks[-1][1] >= 31:
            break
    covered = []
    last = 0
    for _kind, tag, multiple in acks:
        covered.extend(range(last + 1, tag + 1) if multiple else [tag])
        last = max(last, tag)
    ctx.log("confirms", kinds=sorted({a[0] for a in acks}), covered=sorted(covered),
            duplicates=len(covered) - len(set(covered)), last=last)
    ctx.log("count", message_count=ch.queue_declare(q, passive=True).method.message_count)


@scenario("confirms")
def confirm_mandatory_unroutable(ctx):
    """Confirm mode + mandatory unroutable publish: basic.return arrives before the basic.ack."""
    conn = ctx.connect()
    ch = conn.channel()
    x = ctx.exchange(ch, "x", "direct")
    order = []
    impl = ch._impl
    impl.add_on_return_callback(
        lambda c, m, p, b: order.append(["return", m.reply_code, b.decode()]))
    impl.confirm_delivery(lambda frame: order.append(
        [type(frame.method).__name__, frame.method.delivery_tag, frame.method.multiple]))
    pump(conn, 0.1)
    impl.basic_publish(x, "nowhere", b"unroutable", mandatory=True)
    impl.basic_publish(x, "nowhere", b"dropped", mandatory=False)
    for _ in range(20):
        pump(conn, 0.05)
        if any(o[0] != "return" and o[1] >= 2 for o in order):
            break
    # a broker may confirm one by one or with multiple=true: compare which tags each event covers
    events, last = [], 0
    for o in order:
        if o[0] == "return":
            events.append(o)
        else:
            covered = list(range(last + 1, o[1] + 1)) if o[2] else [o[1]]
            last = max(last, o[1])
            events.extend([o[0], t] for t in covered)
    ctx.log("order", events=events)


@scenario("confirms")
def confirm_blocking_unroutable(ctx):
    """pika BlockingChannel.confirm_delivery: unroutable mandatory raises UnroutableError."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    ch.confirm_delivery()
    with ctx.expect("routable"):
        ch.basic_publish("", q, b"ok", mandatory=True)
    try:
        ch.basic_publish("", ctx.name("missing"), b"lost", mandatory=True)
        ctx.log("unroutable", outcome="ok")
    except pex.UnroutableError as exc:
        ctx.log("unroutable", error="UnroutableError",
                returned=[[m.method.reply_code, m.body.decode()] for m in exc.messages])


@scenario("confirms")
def confirm_nack_reject_publish(ctx):
    """x-overflow reject-publish on a full queue: the publish is nacked (basic.nack)."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.confirm_delivery()
    for body in (b"fits", b"overflows"):
        try:
            ch.basic_publish("", q, body)
            ctx.log("publish", body=body, outcome="acked")
        except pex.NackError:
            ctx.log("publish", body=body, outcome="nacked")
    ctx.log("queue", got=get_all(ch, q))


@scenario("tx")
def tx_rollback(ctx):
    """tx.select, publish, tx.rollback: nothing is enqueued."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    ctx.log("select", reply=type(ch.tx_select().method).__name__)
    ch.basic_publish("", q, b"a")
    ch.basic_publish("", q, b"b")
    ctx.log("rollback", reply=type(ch.tx_rollback().method).__name__)
    ctx.log("count", message_count=ch.queue_declare(q, passive=True).method.message_count)


@scenario("tx")
def tx_commit(ctx):
    """Publishes in a transaction are invisible until tx.commit, then delivered in order."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    other = conn.channel()
    ch.tx_select()
    ch.basic_publish("", q, b"a")
    ch.basic_publish("", q, b"b")
    ctx.log("before_commit",
            message_count=other.queue_declare(q, passive=True).method.message_count)
    ctx.log("commit", reply=type(ch.tx_commit().method).__name__)
    ctx.log("after_commit", got=get_all(other, q))


@scenario("tx")
def tx_ack_at_commit(ctx):
    """An ack inside a transaction only takes effect at commit; rollback leaves it unacked."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    publish_n(ch, q, 2)
    ch.tx_select()
    m0, _, _ = ch.basic_get(q)
    m1, _, _ = ch.basic_get(q)
    ch.basic_ack(m0.delivery_tag)
    ch.tx_rollback()  # the ack of m0 is discarded; m0 remains unacked
    ch.basic_ack(m1.delivery_tag)
    ch.tx_commit()  # m1 acked
    ch.close()
    ch = conn.channel()
    ctx.log("remaining", got=get_all(ch, q))


@scenario("tx")
def tx_commit_without_select(ctx):
    """tx.commit without tx.select: 406 PRECONDITION_FAILED."""
    conn = ctx.connect()
    with ctx.expect("commit"):
        conn.channel().tx_commit()
    with ctx.expect("rollback"):
        conn.channel().tx_rollback()


@scenario("tx")
def tx_then_confirm(ctx):
    """confirm.select on a transactional channel: 406 PRECONDITION_FAILED."""
    conn = ctx.connect()
    ch = conn.channel()
    ch.tx_select()
    with ctx.expect("confirm_select"):
        ch.confirm_delivery()


@scenario(G)
def channel_flow(ctx):
    """channel.flow active=true is answered with flow-ok active=true."""
    conn = ctx.connect()
    ch = conn.channel()
    res = []
    ch._impl.flow(True, lambda active: res.append(active))
    pump(conn, 0.3)
    ctx.log("flow_ok", active=res)


@scenario(G)
def direct_reply_to_rpc(ctx):
    """RPC over amq.rabbitmq.reply-to: rewritten reply_to, direct reply, late reply unroutable."""
    conn = ctx.connect()
    server = conn.channel()
    rq = ctx.queue(server, "rpc")
    client = conn.channel()
    replies = []
    client.basic_consume("amq.rabbitmq.reply-to",
                         lambda _c, m, p, b: replies.append((p.correlation_id, b.decode())),
                         auto_ack=True)
    client.basic_publish("", rq, b"ping", pika.BasicProperties(
        reply_to="amq.rabbitmq.reply-to", correlation_id="c1"))
    pump(conn, 0.2)
    method, props, body = server.basic_get(rq, auto_ack=True)
    rewritten = props.reply_to
    ctx.log("request", body=body.decode(),
            reply_to_prefixed=rewritten.startswith("amq.rabbitmq.reply-to."),
            reply_to_longer=len(rewritten) > len("amq.rabbitmq.reply-to."))
    server.basic_publish("", rewritten, b"pong", pika.BasicProperties(correlation_id="c1"))
    pump(conn, 0.2)
    ctx.log("replies", replies=replies)
    client.close()
    returned = []
    server.add_on_return_callback(lambda _c, m, p, b: returned.append((m.reply_code, b.decode())))
    server.basic_publish("", rewritten, b"late", mandatory=True)
    pump(conn, 0.3)
    ctx.log("late_reply", returned=returned)


@scenario(G)
def channel_flow_inactive_refused(ctx):
    """channel.flow active=false from a client: 540 NOT_IMPLEMENTED closes the connection."""
    conn = ctx.connect()
    ch = conn.channel()
    try:
        ch.flow(False)
        ctx.log("flow_false", outcome="ok")
    except (pex.ConnectionClosedByBroker, pex.ChannelClosedByBroker) as exc:
        ctx.log("flow_false", kind=type(exc).__name__, code=exc.reply_code,
                text=exc.reply_text.split(" - ")[0])


@scenario(G)
def single_active_consumer(ctx):
    """x-single-active-consumer: the first consumer gets everything; after it cancels, the next."""
    conn = ctx.connect()
    ch1 = conn.channel()
    q = ctx.queue(ch1, "sac", arguments={"x-single-active-consumer": True})
    ch2 = conn.channel()
    first, second = Collector(ch1), Collector(ch2)
    ch1.basic_consume(q, first, auto_ack=True, consumer_tag="first")
    ch2.basic_consume(q, second, auto_ack=True, consumer_tag="second")
    publish_n(ch1, q, 4)
    pump(conn, 0.3)
    ctx.log("phase1", first=[g["body"] for g in first.got],
            second=[g["body"] for g in second.got])
    ch1.basic_cancel("first")
    publish_n(ch2, q, 2)
    pump(conn, 0.3)
    ctx.log("phase2", first=[g["body"] for g in first.got],
            second=[g["body"] for g in second.got])


@scenario(G)
def consumer_priorities(ctx):
    """x-priority: the higher-priority consumer is served while it has prefetch credit."""
    conn = ctx.connect()
    low_ch = conn.channel()
    q = ctx.queue(low_ch, "prio-consumers")
    high_ch = conn.channel()
    low_ch.basic_qos(prefetch_count=10)
    high_ch.basic_qos(prefetch_count=2)
    low, high = Collector(low_ch), Collector(high_ch)
    low_ch.basic_consume(q, low, arguments={"x-priority": 0})
    high_ch.basic_consume(q, high, arguments={"x-priority": 10})
    publish_n(low_ch, q, 6)
    low_ch.basic_qos(prefetch_count=10)
    pump(conn, 0.3)
    ctx.log("served", high=[g["body"] for g in high.got], low=[g["body"] for g in low.got])
    high_ch.basic_ack(0, multiple=True)
    low_ch.basic_ack(0, multiple=True)
