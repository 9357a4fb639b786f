"""kombu (py-amqp transport) clients."""

from __future__ import annotations

from ..registry import scenario

G = "kombu"


@scenario(G)
def kombu_simple_queue(ctx):
    """kombu SimpleQueue put/get with JSON serialisation and ack."""
    from kombu import Connection

    with Connection(ctx.url, connect_timeout=5) as conn:
        name = ctx.name("simple")
        ctx.track_queue(name)
        ctx.track_exchange(name)
        q = conn.SimpleQueue(name)
        for i in range(3):
            q.put({"n": i, "s": "x" * i})
        got = []
        for _ in range(3):
            m = q.get(block=True, timeout=5)
            got.append([m.payload, m.content_type, m.delivery_info.get("redelivered")])
            m.ack()
        ctx.log("got", got=got, left=q.qsize())
        q.close()


@scenario(G)
def kombu_topic_routing(ctx):
    """kombu Producer/Consumer with a topic exchange and three bound queues."""
    from kombu import Connection, Consumer, Exchange, Producer, Queue

    ex = Exchange(ctx.name("logs"), type="topic", durable=False)
    ctx.track_exchange(ex.name)
    queues = {
        "errors": Queue(ctx.name("errors"), ex, routing_key="*.error", durable=False),
        "app": Queue(ctx.name("app"), ex, routing_key="app.#", durable=False),
        "all": Queue(ctx.name("all"), ex, routing_key="#", durable=False),
    }
    for q in queues.values():
        ctx.track_queue(q.name)
    with Connection(ctx.url, connect_timeout=5) as conn:
        ch = conn.channel()
        for q in queues.values():
            q(ch).declare()
        prod = Producer(ch, ex)
        keys = ["app.error", "db.error", "app.info.detail", "web.info"]
        for k in keys:
            prod.publish({"key": k}, routing_key=k, serializer="json")
        got = {n: [] for n in queues}
        consumers = []
        for n, q in queues.items():
            c = Consumer(ch, [q], accept=["json"],
                         callbacks=[lambda body, msg, n=n: (got[n].append(body["key"]), msg.ack())])
            c.consume()
            consumers.append(c)
        total = 0
        while total < 7:
            try:
                conn.drain_events(timeout=2)
            except TimeoutError:
                break
            except OSError:
                break
            total = sum(len(v) for v in got.values())
        for c in consumers:
            c.cancel()
        ctx.log("routed", **{n: sorted(v) for n, v in got.items()})


@scenario(G)
def kombu_reject_requeue(ctx):
    """kombu message.requeue() then message.reject(): redelivered flag and final disposal."""
    from kombu import Connection, Exchange, Queue

    with Connection(ctx.url, connect_timeout=5) as conn:
        ex = Exchange(ctx.name("x"), type="direct", durable=False)
        q = Queue(ctx.name("q"), ex, routing_key="k", durable=False)
        ctx.track_queue(q.name)
        ctx.track_exchange(ex.name)
        ch = conn.channel()
        bq = q(ch)
        bq.declare()
        conn.Producer(ch).publish("hello", exchange=ex, routing_key="k", serializer="raw")
        seq = []
        m = bq.get()
        seq.append([m.body, m.delivery_info.get("redelivered")])
        m.requeue()
        m = bq.get()
        seq.append([m.body, m.delivery_info.get("redelivered")])
        m.reject()
        seq.append(["after_reject", bq.get() is None])
        ctx.log("sequence", seq=seq)
