"""RabbitMQ parity details: default exchange, idempotent unbind, exclusive locks, channel_max,
frame size slack, queue types and arguments."""

from __future__ import annotations

from ..registry import scenario

G = "parity"


@scenario(G)
def default_exchange_declare(ctx):
    """exchange.declare of "" is 403, passive or not; an unknown type is 503 before that;
    redeclaring amq.direct is an equivalence check (406 for another type), not a 403."""
    conn = ctx.connect()
    for passive in (True, False):
        with ctx.expect("declare_default", passive=passive):
            conn.channel().exchange_declare("", "direct", passive=passive)
    with ctx.expect("declare_default_unknown_type"):
        conn.channel().exchange_declare("", "no-such-type")
    ctx.log("connection", is_open=conn.is_open)
    conn = ctx.connect()
    with ctx.expect("redeclare_amq_direct"):
        conn.channel().exchange_declare("amq.direct", "direct", durable=True)
    with ctx.expect("redeclare_amq_direct_as_fanout"):
        conn.channel().exchange_declare("amq.direct", "fanout", durable=True)



@scenario(G)
def unbind_idempotent(ctx):
    """queue.unbind / exchange.unbind of a missing binding, queue or exchange is unbind-ok;
    the default exchange is 403 even then; another connection's exclusive queue is 405 only
    when the binding exists."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    x = ctx.exchange(ch, "x", "direct")
    gone_q, gone_x = ctx.name("gone-q"), ctx.name("gone-x")
    for label, queue, exchange in (("binding", q, x), ("queue", gone_q, x),
                                   ("exchange", q, gone_x), ("both", gone_q, gone_x)):
        with ctx.expect("queue_unbind_missing", missing=label):
            conn.channel().queue_unbind(queue, exchange, "k")
    for label, dest, source in (("binding", x, "amq.direct"), ("destination", gone_x, x),
                                ("source", x, gone_x), ("both", gone_x, ctx.name("gone-x2"))):
        with ctx.expect("exchange_unbind_missing", missing=label):
            conn.channel().exchange_unbind(dest, source, "k")
    with ctx.expect("queue_unbind_default_exchange_missing_queue"):
        conn.channel().queue_unbind(gone_q, "", "k")
    with ctx.expect("exchange_unbind_default_source"):
        conn.channel().exchange_unbind(gone_x, "", "k")
    owner = ctx.connect()
    och = owner.channel()
    eq = ctx.queue(och, "excl", exclusive=True)
    och.queue_bind(eq, x, "bound")
    with ctx.expect("unbind_locked_not_bound"):
        conn.channel().queue_unbind(eq, x, "not-bound")
    with ctx.expect("unbind_locked_missing_exchange"):
        conn.channel().queue_unbind(eq, gone_x, "bound")
    with ctx.expect("unbind_locked_bound"):
        conn.channel().queue_unbind(eq, x, "bound")
    och.basic_publish(x, "bound", b"m")
    method, _props, body = och.basic_get(eq, auto_ack=True)
    ctx.log("still_bound", body=body)
    with ctx.expect("unbind_no_previous_queue"):
        ctx.connect().channel().queue_unbind("", "amq.direct", "k")


@scenario(G)
def exclusive_flag_mismatch(ctx):
    """Redeclaring an exclusive queue with another exclusive flag is 405 on any connection
    (never 406); the durable flag of an exclusive queue is not compared."""
    owner = ctx.connect()
    q = ctx.queue(owner.channel(), "excl", exclusive=True)
    other = ctx.connect()
    for exclusive in (True, False):
        with ctx.expect("other_connection", exclusive=exclusive):
            other.channel().queue_declare(q, exclusive=exclusive)
    with ctx.expect("same_connection", exclusive=False):
        owner.channel().queue_declare(q, exclusive=False)
    with ctx.expect("same_connection", exclusive=False, durable=True):
        owner.channel().queue_declare(q, exclusive=False, durable=True)
    with ctx.expect("same_connection", exclusive=True, durable=True):
        owner.channel().queue_declare(q, exclusive=True, durable=True)
    shared = ctx.queue(owner.channel(), "shared", auto_delete=True)
    with ctx.expect("shared_queue_redeclared_exclusive"):
        owner.channel().queue_declare(shared, exclusive=True, auto_delete=True)


@scenario(G)
def channel_max_counts_open_channels(ctx):
    """With a negotiated channel_max of 2, channels 65535 and 3 open; after closing one
    another opens; one more open channel is connection error 530 NOT_ALLOWED."""
    conn = ctx.connect(channel_max=2)
    ctx.log("negotiated", channel_max=conn._impl.params.channel_max)
    channels = {}
    for number in (65535, 3):
        with ctx.expect("open", channel=number):
            channels[number] = conn.channel(channel_number=number)
    channels[3].close()
    with ctx.expect("open_after_close", channel=7):
        channels[7] = conn.channel(channel_number=7)
    with ctx.expect("open_one_too_many", channel=9):
        conn.channel(channel_number=9)
    ctx.log("connection", is_open=conn.is_open)
