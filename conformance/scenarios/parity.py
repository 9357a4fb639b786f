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

