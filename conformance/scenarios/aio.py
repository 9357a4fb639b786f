"""aio-pika (asyncio, pamqp) clients."""

from __future__ import annotations

import asyncio
import datetime
import decimal

from ..ctx import typed
from ..registry import scenario

G = "aio"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 15))


@scenario(G)
def aio_publish_consume(ctx):
    """aio-pika: robust connection, declare, publish with properties, consume with async
    iterator."""
    import aio_pika

    async def main():
        conn = await aio_pika.connect_robust(ctx.url)
        async with conn:
            ch = await conn.channel()
            await ch.set_qos(prefetch_count=10)
            q = await ch.declare_queue(ctx.name("q"), auto_delete=False)
            ctx.track_queue(q.name)
            for i in range(5):
                await ch.default_exchange.publish(
                    aio_pika.Message(f"m{i}".encode(), content_type="text/plain",
                                     headers={"i": i}, message_id=f"id{i}",
                                     delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=q.name)
            got = []
            async with q.iterator() as it:
                async for msg in it:
                    async with msg.process():
                        got.append([msg.body.decode(), msg.headers, msg.message_id,
                                    msg.content_type, int(msg.delivery_mode), msg.redelivered])
                    if len(got) == 5:
                        break
            ctx.log("got", got=got)
            res = await q.declare()
            ctx.log("declare_ok", message_count=res.message_count,
                    consumer_count=res.consumer_count)

    run(main())


@scenario(G)
def aio_header_types(ctx):
    """Headers encoded by aio-pika/pamqp, decoded by pika: what types pika sees."""
    import aio_pika

    headers = {"small": 5, "neg": -100, "int16": 30000, "int32": 100000, "int64": 2 ** 40,
               "float": 2.5, "bool": True, "str": "s",
               "dec": decimal.Decimal("1.25"), "ts": datetime.datetime(2024, 1, 2, 3, 4, 5),
               "list": [1, "a", False], "table": {"x": {"y": 1}}, "none": None}

    async def publish(q):
        conn = await aio_pika.connect(ctx.url)
        async with conn:
            ch = await conn.channel()
            await ch.default_exchange.publish(aio_pika.Message(b"h", headers=headers),
                                              routing_key=q)

    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    run(publish(q))
    m, p, b = ch.basic_get(q, auto_ack=True)
    ctx.log("pika_decoded", headers=typed(p.headers) if m else None)


@scenario(G)
def aio_rpc_reply_to(ctx):
    """RPC with an exclusive server-named reply queue and correlation ids (aio-pika both sides)."""
    import aio_pika

    async def main():
        conn = await aio_pika.connect(ctx.url)
        async with conn:
            sch = await conn.channel()
            rq = await sch.declare_queue(ctx.name("rpc"))
            ctx.track_queue(rq.name)

            async def serve(msg):
                async with msg.process():
                    await sch.default_exchange.publish(
                        aio_pika.Message(msg.body.upper(), correlation_id=msg.correlation_id),
                        routing_key=msg.reply_to)

            await rq.consume(serve)
            cch = await conn.channel()
            cb = await cch.declare_queue("", exclusive=True)
            results = {}
            done = asyncio.Event()

            async def on_reply(msg):
                async with msg.process():
                    results[msg.correlation_id] = msg.body.decode()
                    if len(results) == 3:
                        done.set()

            await cb.consume(on_reply)
            for i, word in enumerate(["alpha", "beta", "gamma"]):
                await cch.default_exchange.publish(
                    aio_pika.Message(word.encode(), correlation_id=f"c{i}", reply_to=cb.name),
                    routing_key=rq.name)
            await asyncio.wait_for(done.wait(), 5)
            ctx.log("replies", results=dict(sorted(results.items())),
                    reply_queue_server_named=cb.name.startswith("amq.gen-"))

    run(main())


@scenario(G)
def aio_confirms_and_mandatory(ctx):
    """aio-pika publisher confirms: routable publish acked, unroutable mandatory -> returned."""
    import aio_pika
    import aiormq.exceptions

    async def main():
        conn = await aio_pika.connect(ctx.url)
        async with conn:
            ch = await conn.channel(publisher_confirms=True)
            q = await ch.declare_queue(ctx.name("q"))
            ctx.track_queue(q.name)
            r = await ch.default_exchange.publish(aio_pika.Message(b"ok"), routing_key=q.name)
            ctx.log("routable", result=type(r).__name__)
            try:
                r = await ch.default_exchange.publish(aio_pika.Message(b"lost"),
                                                      routing_key=ctx.name("none"), mandatory=True)
                ctx.log("unroutable", result=type(r).__name__)
            except aio_pika.exceptions.DeliveryError as exc:
                ctx.log("unroutable", error=type(exc).__name__,
                        reply_code=(exc.frame.reply_code if hasattr(exc.frame, "reply_code")
                                    else None))
            except aiormq.exceptions.PublishError as exc:
                ctx.log("unroutable", error=type(exc).__name__)

    run(main())


@scenario(G)
def aio_exchange_topic(ctx):
    """aio-pika: topic exchange, bindings via the high-level API, get(no_ack)."""
    import aio_pika

    async def main():
        conn = await aio_pika.connect(ctx.url)
        async with conn:
            ch = await conn.channel()
            x = await ch.declare_exchange(ctx.name("x"), aio_pika.ExchangeType.TOPIC)
            ctx.track_exchange(x.name)
            q = await ch.declare_queue(ctx.name("q"))
            ctx.track_queue(q.name)
            await q.bind(x, "stock.*.nyse")
            for k in ("stock.ibm.nyse", "stock.ibm.lse", "stock.nyse"):
                await x.publish(aio_pika.Message(k.encode()), routing_key=k)
            got = []
            while True:
                m = await q.get(no_ack=True, fail=False, timeout=2)
                if m is None:
                    break
                got.append(m.body.decode())
            ctx.log("got", got=got)
            await q.unbind(x, "stock.*.nyse")

    run(main())


@scenario(G)
def aio_channel_error(ctx):
    """aio-pika: a 404 on passive declare closes that channel only; the connection remains."""
    import aio_pika

    async def main():
        conn = await aio_pika.connect(ctx.url)
        async with conn:
            ch = await conn.channel()
            try:
                await ch.declare_queue(ctx.name("missing"), passive=True)
                ctx.log("passive", outcome="ok")
            except aio_pika.exceptions.AMQPError as exc:
                ctx.log("passive", error=type(exc).__name__)
            ch2 = await conn.channel()
            q = await ch2.declare_queue(ctx.name("q"))
            ctx.track_queue(q.name)
            ctx.log("connection", closed=conn.is_closed)

    run(main())
