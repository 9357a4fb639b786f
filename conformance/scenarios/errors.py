"""Every reply code a client can provoke: channel and connection exceptions."""

from __future__ import annotations

import pika
import pika.exceptions as pex

from ..ctx import describe_exc, pump
from ..registry import scenario

G = "errors"


def _sync(ch) -> None:
    """A cheap synchronous round trip so an asynchronous channel close surfaces here."""
    ch.basic_qos(prefetch_count=0)


def _after(ctx, conn, label="after") -> None:
    """Whether the connection survived the error and a new channel on it works."""
    try:
        ch = conn.channel()
        _sync(ch)
        ctx.log(label, connection_open=conn.is_open, new_channel="ok")
        ch.close()
    except pex.AMQPError as exc:
        ctx.log(label, connection_open=conn.is_open, new_channel=describe_exc(exc))


@scenario(G)
def publish_missing_exchange(ctx):
    """basic.publish to an exchange that does not exist: channel closed 404 NOT_FOUND."""
    conn = ctx.connect()
    ch = conn.channel()
    with ctx.expect("publish"):
        ch.basic_publish(ctx.name("nope"), "rk", b"x")
        _sync(ch)
    ctx.log("channel", is_open=ch.is_open)
    _after(ctx, conn)


@scenario(G)
def bind_missing_exchange(ctx):
    """queue.bind to a missing exchange: 404."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    with ctx.expect("bind"):
        ch.queue_bind(q, ctx.name("nope"), "rk")
    _after(ctx, conn)


@scenario(G)
def bind_missing_queue(ctx):
    """queue.bind of a missing queue to an existing exchange: 404."""
    conn = ctx.connect()
    ch = conn.channel()
    x = ctx.exchange(ch, "x", "direct")
    with ctx.expect("bind"):
        ch.queue_bind(ctx.name("nope"), x, "rk")
    _after(ctx, conn)


@scenario(G)
def passive_missing_queue(ctx):
    """Passive queue.declare of a missing queue: 404."""
    conn = ctx.connect()
    with ctx.expect("declare_passive"):
        conn.channel().queue_declare(ctx.name("nope"), passive=True)
    _after(ctx, conn)


@scenario(G)
def passive_missing_exchange(ctx):
    """Passive exchange.declare of a missing exchange: 404."""
    conn = ctx.connect()
    with ctx.expect("declare_passive"):
        conn.channel().exchange_declare(ctx.name("nope"), passive=True)
    _after(ctx, conn)


@scenario(G)
def exchange_redeclare_type(ctx):
    """Redeclare an exchange with another type: 406 PRECONDITION_FAILED; same type is fine."""
    conn = ctx.connect()
    ch = conn.channel()
    x = ctx.exchange(ch, "x", "direct")
    with ctx.expect("same"):
        ch.exchange_declare(x, "direct")
    with ctx.expect("other_type"):
        ch.exchange_declare(x, "fanout")
    _after(ctx, conn)


@scenario(G)
def exchange_redeclare_durable(ctx):
    """Redeclare a transient exchange as durable: 406."""
    conn = ctx.connect()
    ch = conn.channel()
    x = ctx.exchange(ch, "x", "topic", durable=False)
    with ctx.expect("durable"):
        ch.exchange_declare(x, "topic", durable=True)
    ch = conn.channel()
    with ctx.expect("auto_delete"):
        ch.exchange_declare(x, "topic", auto_delete=True)


@scenario(G)
def queue_redeclare_props(ctx):
    """Redeclare a queue with different durable / exclusive / arguments: 406 each time."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q", durable=False, arguments={"x-message-ttl": 60000})
    with ctx.expect("same"):
        ch.queue_declare(q, arguments={"x-message-ttl": 60000})
    for label, kw in (("durable", {"durable": True, "arguments": {"x-message-ttl": 60000}}),
                      ("other_ttl", {"arguments": {"x-message-ttl": 1000}}),
                      ("auto_delete", {"auto_delete": True,
                                       "arguments": {"x-message-ttl": 60000}})):
        ch = conn.channel()
        with ctx.expect(label):
            ch.queue_declare(q, **kw)


@scenario(G)
def reserved_exchange_name(ctx):
    """exchange.declare of "amq.<something>": 403 ACCESS_REFUSED; passive declare of amq.direct
    works."""
    conn = ctx.connect()
    ch = conn.channel()
    ctx.track_exchange("amq.cf-" + ctx.token)
    with ctx.expect("declare"):
        ch.exchange_declare("amq.cf-" + ctx.token, "direct")
    ch = conn.channel()
    with ctx.expect("passive_amq_direct"):
        ch.exchange_declare("amq.direct", passive=True)
    for name in ("amq.fanout", "amq.topic", "amq.headers", "amq.match"):
        with ctx.expect("passive", exchange=name):
            ch.exchange_declare(name, passive=True)


@scenario(G)
def reserved_queue_name(ctx):
    """queue.declare of "amq.<something>": 403 ACCESS_REFUSED."""
    conn = ctx.connect()
    ctx.track_queue("amq.cf-" + ctx.token)
    with ctx.expect("declare"):
        conn.channel().queue_declare("amq.cf-" + ctx.token)
    _after(ctx, conn)


@scenario(G)
def exclusive_queue_locked(ctx):
    """Another connection's exclusive queue: declare, consume, passive declare -> 405
    RESOURCE_LOCKED."""
    owner = ctx.connect()
    och = owner.channel()
    q = ctx.queue(och, "q", exclusive=True)
    other = ctx.connect()
    with ctx.expect("declare"):
        other.channel().queue_declare(q)
    with ctx.expect("passive"):
        other.channel().queue_declare(q, passive=True)
    with ctx.expect("consume"):
        other.channel().basic_consume(q, lambda *a: None)
    with ctx.expect("delete"):
        other.channel().queue_delete(q)
    with ctx.expect("owner_declare"):
        och.queue_declare(q, exclusive=True)


@scenario(G)
def ack_unknown_tag(ctx):
    """basic.ack with a delivery tag never delivered: 406 PRECONDITION_FAILED."""
    conn = ctx.connect()
    ch = conn.channel()
    with ctx.expect("ack"):
        ch.basic_ack(99)
        _sync(ch)
    _after(ctx, conn)


@scenario(G)
def double_ack(ctx):
    """Acking the same delivery twice: 406 on the second ack."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    ch.basic_publish("", q, b"m")
    m, _, _ = ch.basic_get(q)
    with ctx.expect("first"):
        ch.basic_ack(m.delivery_tag)
        _sync(ch)
    with ctx.expect("second"):
        ch.basic_ack(m.delivery_tag)
        _sync(ch)


@scenario(G)
def ack_after_autoack(ctx):
    """Acking a delivery that was taken with no-ack: 406 unknown delivery tag."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    ch.basic_publish("", q, b"m")
    m, _, _ = ch.basic_get(q, auto_ack=True)
    with ctx.expect("ack"):
        ch.basic_ack(m.delivery_tag)
        _sync(ch)


@scenario(G)
def unknown_exchange_type(ctx):
    """exchange.declare with an unknown type: connection closed 503 COMMAND_INVALID."""
    conn = ctx.connect()
    ctx.track_exchange(ctx.name("x"))
    with ctx.expect("declare"):
        conn.channel().exchange_declare(ctx.name("x"), "no-such-type")
    ctx.log("connection", is_open=conn.is_open)


@scenario(G)
def immediate_flag(ctx):
    """basic.publish with immediate=true: connection closed 540 NOT_IMPLEMENTED."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    ch._impl._send_method(pika.spec.Basic.Publish(exchange="", routing_key=q, immediate=True),
                          (pika.BasicProperties(), b"x"))
    with ctx.expect("after_publish"):
        _sync(ch)
        pump(conn, 0.5)
    ctx.log("connection", is_open=conn.is_open)


@scenario(G)
def default_exchange_ops(ctx):
    """Binding to / deleting / declaring the default exchange is refused with 403."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    with ctx.expect("bind"):
        ch.queue_bind(q, "", "rk")
    ch = conn.channel()
    with ctx.expect("delete"):
        ch.exchange_delete("")
    ch = conn.channel()
    ch.confirm_delivery()
    with ctx.expect("publish"):
        ch.basic_publish("", q, b"ok")
        _sync(ch)
    ok = ch.queue_declare(q, passive=True)
    ctx.log("count", message_count=ok.method.message_count)


@scenario(G)
def user_id_mismatch(ctx):
    """A user_id property that differs from the authenticated user: 406; matching user_id passes."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    with ctx.expect("matching"):
        ch.basic_publish("", q, b"a", pika.BasicProperties(user_id="guest"))
        _sync(ch)
    with ctx.expect("mismatch"):
        ch.basic_publish("", q, b"b", pika.BasicProperties(user_id="mallory"))
        _sync(ch)
    ch = conn.channel()
    m, props, body = ch.basic_get(q, auto_ack=True)
    ctx.log("got", body=body, user_id=props.user_id)


@scenario(G)
def consume_missing_queue(ctx):
    """basic.consume on a missing queue: 404."""
    conn = ctx.connect()
    with ctx.expect("consume"):
        conn.channel().basic_consume(ctx.name("nope"), lambda *a: None)
    _after(ctx, conn)


@scenario(G)
def get_missing_queue(ctx):
    """basic.get on a missing queue: 404; purge of a missing queue: 404."""
    conn = ctx.connect()
    with ctx.expect("get"):
        conn.channel().basic_get(ctx.name("nope"))
    with ctx.expect("purge"):
        conn.channel().queue_purge(ctx.name("nope"))


@scenario(G)
def duplicate_consumer_tag(ctx):
    """Two consumers with the same explicit tag on one channel: 530 NOT_ALLOWED (connection)."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    with ctx.expect("first"):
        ch.basic_consume(q, lambda *a: None, consumer_tag="dup")
    # pika refuses duplicate tags client-side, so send the second consume by hand
    ch._impl._send_method(pika.spec.Basic.Consume(queue=q, consumer_tag="dup"))
    with ctx.expect("second"):
        pump(conn, 0.5)
        _sync(ch)
    ctx.log("connection", is_open=conn.is_open)


@scenario(G)
def qos_prefetch_size(ctx):
    """basic.qos with a non-zero prefetch_size: RabbitMQ answers 540 NOT_IMPLEMENTED."""
    conn = ctx.connect()
    with ctx.expect("qos"):
        conn.channel().basic_qos(prefetch_size=1000, prefetch_count=1)
    ctx.log("connection", is_open=conn.is_open)


@scenario(G)
def delete_missing(ctx):
    """Deleting a missing queue / exchange, unbinding a missing binding: all idempotent."""
    conn = ctx.connect()
    ch = conn.channel()
    with ctx.expect("queue_delete"):
        ok = ch.queue_delete(ctx.name("nope"))
        ctx.log("delete_ok", message_count=ok.method.message_count)
    ch = conn.channel()
    with ctx.expect("exchange_delete"):
        ch.exchange_delete(ctx.name("nope"))
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    x = ctx.exchange(ch, "x", "direct")
    with ctx.expect("unbind_missing"):
        ch.queue_unbind(q, x, "never-bound")


@scenario(G)
def exclusive_redeclare_of_shared_queue(ctx):
    """Redeclaring a shared queue as exclusive (same connection) is 405 RESOURCE_LOCKED."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "shared")
    try:
        ch.queue_declare(q, exclusive=True)
        ctx.log("redeclare", outcome="ok")
    except pex.ChannelClosedByBroker as exc:
        ctx.log("redeclare", code=exc.reply_code, text=exc.reply_text.split(" - ")[0])
