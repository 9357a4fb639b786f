"""Stream queues (x-queue-type: stream): declare rules, consumers at an x-stream-offset
(first, next, a number, last) with the x-stream-offset header, and RabbitMQ's refusals
of no-ack consumers, consumers without prefetch, basic.get and nack."""

from __future__ import annotations

import time

import pika

from ..ctx import pump
from ..registry import scenario

G = "streams"
STREAM = {"x-queue-type": "stream"}


def stream(ctx, ch, logical="s", **arguments):
    return ctx.queue(ch, logical, durable=True, arguments={**STREAM, **arguments})


def publish_confirmed(conn, q, n, prefix="m"):
    ch = conn.channel()
    ch.confirm_delivery()
    for i in range(n):
        ch.basic_publish("", q, f"{prefix}{i}".encode(),
                         pika.BasicProperties(headers={"i": i}, content_type="text/plain"))
    ch.close()


def consume(ctx, conn, q, label, offset, n, prefetch=10, ack=True, seconds=3.0):
    """A consumer at offset; logs what it receives (at most n, waiting up to seconds)."""
    ch = conn.channel()
    ch.basic_qos(prefetch_count=prefetch)
    got = []

    def on_message(ch_, method, props, body):
        got.append(method)
        ctx.log(label, body=body, tag=method.delivery_tag, redelivered=method.redelivered,
                headers=props.headers, content_type=props.content_type)
        if ack:
            ch_.basic_ack(method.delivery_tag)

    args = {} if offset is None else {"x-stream-offset": offset}
    tag = ch.basic_consume(q, on_message, arguments=args)
    deadline = time.monotonic() + seconds
    while len(got) < n and time.monotonic() < deadline:
        conn.process_data_events(0.05)
    ch.basic_cancel(tag)
    ctx.log(label + "_count", count=len(got))
    return ch


@scenario(G)
def declare(ctx):
    """What a stream declaration may be: durable only, its own arguments, equivalence."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.name("s")
    ok = ch.queue_declare(q, durable=True, arguments={
        **STREAM, "x-max-age": "7D", "x-max-length-bytes": 10_000_000,
        "x-stream-max-segment-size-bytes": 1_000_000})
    ctx.track_queue(q)
    ctx.log("declare_ok", queue=ok.method.queue, message_count=ok.method.message_count,
            consumer_count=ok.method.consumer_count)
    with ctx.expect("redeclare_other_max_age"):
        ch.queue_declare(q, durable=True, arguments={
            **STREAM, "x-max-age": "1D", "x-max-length-bytes": 10_000_000,
            "x-stream-max-segment-size-bytes": 1_000_000})
    cases = [
        ("non_durable", {"durable": False}, {}),
        ("exclusive", {"durable": True, "exclusive": True}, {}),
        ("auto_delete", {"durable": True, "auto_delete": True}, {}),
        ("message_ttl", {"durable": True}, {"x-message-ttl": 1000}),
        ("max_length", {"durable": True}, {"x-max-length": 10}),
        ("bad_max_age", {"durable": True}, {"x-max-age": "7X"}),
        ("max_age_not_a_string", {"durable": True}, {"x-max-age": 7}),
        ("server_named", {"durable": True}, {}),
    ]
    for label, flags, arguments in cases:
        ch = conn.channel() if not ch.is_open else ch
        name = "" if label == "server_named" else ctx.name(label)
        with ctx.expect(label):
            ch.queue_declare(name, arguments={**STREAM, **arguments}, **flags)
            ctx.track_queue(name)


@scenario(G)
def consume_offsets(ctx):
    """Consumers at first, a number and last replay the same messages, each delivery
    with its x-stream-offset header; a next consumer sees only later publishes."""
    conn = ctx.connect()
    ch = conn.channel()
    q = stream(ctx, ch)
    publish_confirmed(conn, q, 5)
    consume(ctx, conn, q, "first", "first", 5)
    consume(ctx, conn, q, "from_2", 2, 3)
    consume(ctx, conn, q, "last", "last", 1)
    consume(ctx, conn, q, "from_beyond_end", 100, 1, seconds=0.5)
    # next (also the default): only what is published after the consumer started; the
    # publish goes through the consumer's channel, so it comes after the consume
    for label, offset in (("next", "next"), ("default", None)):
        nch = conn.channel()
        nch.basic_qos(prefetch_count=10)
        got = []
        args = {} if offset is None else {"x-stream-offset": offset}
        tag = nch.basic_consume(q, lambda c, m, p, b, g=got, lbl=label: (
            g.append(b), ctx.log(lbl, body=b, headers=p.headers), c.basic_ack(m.delivery_tag)),
            arguments=args)
        pump(conn, 0.2)
        nch.basic_publish("", q, f"late-{label}".encode())
        deadline = time.monotonic() + 3
        while not got and time.monotonic() < deadline:
            conn.process_data_events(0.05)
        pump(conn, 0.2)
        nch.basic_cancel(tag)


@scenario(G)
def prefetch_credit(ctx):
    """A consumer gets as many deliveries as its prefetch; each ack returns credit."""
    conn = ctx.connect()
    ch = conn.channel()
    q = stream(ctx, ch)
    publish_confirmed(conn, q, 5)
    cch = conn.channel()
    cch.basic_qos(prefetch_count=2)
    got = []
    cch.basic_consume(q, lambda c, m, p, b: got.append((m.delivery_tag, b)),
                      arguments={"x-stream-offset": "first"})
    deadline = time.monotonic() + 3
    while len(got) < 2 and time.monotonic() < deadline:
        conn.process_data_events(0.05)
    pump(conn, 0.3)
    ctx.log("before_ack", got=got)
    cch.basic_ack(got[-1][0], multiple=True)
    deadline = time.monotonic() + 3
    while len(got) < 4 and time.monotonic() < deadline:
        conn.process_data_events(0.05)
    pump(conn, 0.3)
    ctx.log("after_ack", got=got)


@scenario(G)
def consume_refusals(ctx):
    """No prefetch (406), automatic acks (540), x-priority and a bad interval (406), an
    offset RabbitMQ's reader fails on (541), in RabbitMQ's order of checks."""
    conn = ctx.connect()
    ch = conn.channel()
    q = stream(ctx, ch)
    for label, qos, no_ack, arguments in (
            ("no_prefetch", None, False, {}),
            ("no_prefetch_no_ack", None, True, {}),
            ("global_prefetch_only", "global", False, {}),
            ("no_ack", 10, True, {}),
            ("x_priority", 10, False, {"x-priority": 1}),
            ("bad_interval", 10, False, {"x-stream-offset": "1x"}),
            ("zero_interval", 10, False, {"x-stream-offset": "0s"}),
            ("bad_interval_before_x_priority", 10, False,
             {"x-priority": 1, "x-stream-offset": "1x"}),
            ("bool_offset_no_prefetch", None, False, {"x-stream-offset": True}),
            ("bool_offset", 10, False, {"x-stream-offset": True}),
            ("word_offset", None, False, {"x-stream-offset": "foo"}),
            ("void_offset", 10, False, {"x-stream-offset": None})):
        if not conn.is_open:
            conn = ctx.connect()
        cch = conn.channel()
        with ctx.expect(label):
            if qos == "global":
                cch.basic_qos(prefetch_count=10, global_qos=True)
            elif qos:
                cch.basic_qos(prefetch_count=qos)
            cch.basic_consume(q, lambda *a: None, auto_ack=no_ack, arguments=arguments)
            pump(conn, 0.2)


@scenario(G)
def get_purge_nack_refusals(ctx):
    """basic.get, queue.purge and basic.nack on a stream: 540 (connection errors)."""
    conn = ctx.connect()
    ch = conn.channel()
    q = stream(ctx, ch)
    publish_confirmed(conn, q, 2)
    for label, no_ack in (("get", False), ("get_no_ack", True)):
        conn = ctx.connect()
        with ctx.expect(label):
            conn.channel().basic_get(q, auto_ack=no_ack)
    conn = ctx.connect()
    with ctx.expect("purge"):
        conn.channel().queue_purge(q)
    for label, requeue in (("nack_requeue", True), ("nack", False)):
        conn = ctx.connect()
        cch = conn.channel()
        cch.basic_qos(prefetch_count=1)
        got = []
        cch.basic_consume(q, lambda c, m, p, b, g=got: g.append(m),
                          arguments={"x-stream-offset": "first"})
        deadline = time.monotonic() + 3
        while not got and time.monotonic() < deadline:
            conn.process_data_events(0.05)
        with ctx.expect(label):
            cch.basic_nack(got[0].delivery_tag, requeue=requeue)
            pump(conn, 0.5)
    conn = ctx.connect()
    ok = conn.channel().queue_delete(q, if_empty=True, if_unused=True)
    ctx.log("delete_ok", message_count=ok.method.message_count)
