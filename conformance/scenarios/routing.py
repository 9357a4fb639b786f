"""Exchange types and routing."""

from __future__ import annotations

import pika

from ..ctx import pump
from ..registry import scenario

G = "routing"


def drain(ch, q) -> list:
    """All ready messages of ``q`` via basic.get (auto-ack), as body strings in order."""
    out = []
    while True:
        m, props, body = ch.basic_get(q, auto_ack=True)
        if m is None:
            return out
        out.append(body.decode())


def route_table(ctx, kind, bindings, publishes, headers_mode=False, args=None):
    """Declare an exchange of ``kind``, queues bound per ``bindings`` {queue: [key or (key, args)]},
    publish ``publishes`` [(key, body[, headers])], and log what each queue got."""
    conn = ctx.connect()
    ch = conn.channel()
    x = ctx.exchange(ch, "x", kind, arguments=args)
    qs = {}
    for lq, keys in bindings.items():
        qs[lq] = ctx.queue(ch, lq)
        for k in keys:
            if isinstance(k, tuple):
                ch.queue_bind(qs[lq], x, k[0], arguments=k[1])
            else:
                ch.queue_bind(qs[lq], x, k)
    for p in publishes:
        key, body = p[0], p[1]
        props = pika.BasicProperties(headers=p[2]) if len(p) > 2 else None
        ch.basic_publish(x, key, body.encode(), props)
    ch.basic_qos(prefetch_count=0)  # round trip: all publishes were processed
    for lq, q in qs.items():
        ctx.log("queue", queue=lq, got=drain(ch, q))
    conn.close()


@scenario(G)
def direct_exchange(ctx):
    """Direct: exact key match, one message per matching queue, same key bound twice counts once."""
    route_table(ctx, "direct",
                {"a": ["red", "red"], "b": ["green", "red"], "c": ["blue"]},
                [("red", "1"), ("green", "2"), ("blue", "3"), ("black", "4"), ("", "5"),
                 ("Red", "6")])


@scenario(G)
def default_exchange(ctx):
    """Default exchange routes by queue name; unknown name drops silently."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    ch.basic_publish("", q, b"1")
    ch.basic_publish("", ctx.name("missing"), b"2")
    ch.basic_publish("amq.direct", q, b"3")  # not bound to amq.direct -> dropped
    ch.basic_qos(prefetch_count=0)
    ctx.log("queue", got=drain(ch, q))


@scenario(G)
def fanout_exchange(ctx):
    """Fanout ignores the routing key."""
    route_table(ctx, "fanout", {"a": ["x"], "b": [""], "c": ["anything"]},
                [("k1", "1"), ("", "2"), ("a.b.c", "3")])


@scenario(G)
def topic_basic(ctx):
    """Topic: '*' matches exactly one word, '#' zero or more."""
    route_table(ctx, "topic",
                {"star": ["a.*"], "hash": ["a.#"], "exact": ["a.b"], "all": ["#"],
                 "mid": ["*.b.*"]},
                [("a", "1"), ("a.b", "2"), ("a.b.c", "3"), ("b.b.b", "4"), ("x", "5"),
                 ("", "6")])


@scenario(G)
def topic_hash_zero_words(ctx):
    """'a.#' matches 'a'; '#.a' matches 'a'; 'a.#.b' matches 'a.b' and 'a.x.y.b'."""
    route_table(ctx, "topic",
                {"tail": ["a.#"], "head": ["#.a"], "middle": ["a.#.b"], "hash_hash": ["#.#"]},
                [("a", "1"), ("a.b", "2"), ("a.x.y.b", "3"), ("b.a", "4"), ("a.b.b", "5"),
                 ("ab", "6"), ("x.a.b", "7")])


@scenario(G)
def topic_empty_words(ctx):
    """Empty words: 'a..b', leading/trailing dots, and patterns with empty words."""
    route_table(ctx, "topic",
                {"star_mid": ["a.*.b"], "empty_pat": ["a..b"], "hash_mid": ["a.#.b"],
                 "lead": ["*.a"], "trail": ["a.*"], "empty_key": [""]},
                [("a..b", "1"), ("a.x.b", "2"), (".a", "3"), ("a.", "4"), ("", "5"),
                 ("a.b", "6"), ("..", "7")])


@scenario(G)
def topic_star_and_hash(ctx):
    """'*' and '#' together: '*.#' needs >= 1 word, '#.*' too, '*.#.*' needs >= 2, '#.*.#'."""
    route_table(ctx, "topic",
                {"s_h": ["*.#"], "h_s": ["#.*"], "s_h_s": ["*.#.*"], "h_s_h": ["#.*.#"],
                 "a_s_h": ["a.*.#"]},
                [("", "0"), ("a", "1"), ("a.b", "2"), ("a.b.c", "3"), ("b", "4")])


@scenario(G)
def topic_multiple_bindings_one_copy(ctx):
    """Several matching bindings from one exchange to one queue deliver one copy."""
    route_table(ctx, "topic", {"q": ["a.*", "a.#", "#", "a.b"]}, [("a.b", "1"), ("a", "2")])


@scenario(G)
def headers_all_any(ctx):
    """Headers exchange with x-match all / any, missing header, extra headers, and x-* keys."""
    route_table(ctx, "headers",
                {"all": [("", {"x-match": "all", "fmt": "pdf", "type": "report"})],
                 "any": [("", {"x-match": "any", "fmt": "pdf", "type": "report"})],
                 "default": [("", {"fmt": "pdf", "type": "report"})],
                 "empty": [("", {"x-match": "all"})]},
                [("", "1", {"fmt": "pdf", "type": "report"}),
                 ("", "2", {"fmt": "pdf"}),
                 ("", "3", {"fmt": "pdf", "type": "report", "extra": 1}),
                 ("", "4", {"fmt": "txt", "type": "log"}),
                 ("", "5", {}),
                 ("ignored-key", "6", {"type": "report"})])


@scenario(G)
def headers_value_types(ctx):
    """Headers matching on integer and boolean values and a key whose binding value is void."""
    route_table(ctx, "headers",
                {"int": [("", {"x-match": "all", "n": 42})],
                 "bool": [("", {"x-match": "all", "flag": True})],
                 "any2": [("", {"x-match": "any", "n": 1, "flag": False})]},
                [("", "1", {"n": 42}), ("", "2", {"n": "42"}), ("", "3", {"flag": True}),
                 ("", "4", {"n": 1}), ("", "5", {"flag": False, "n": 42})])


@scenario(G)
def exchange_to_exchange(ctx):
    """exchange.bind: topic source -> fanout and direct destinations; unbind stops the flow."""
    conn = ctx.connect()
    ch = conn.channel()
    src = ctx.exchange(ch, "src", "topic")
    fan = ctx.exchange(ch, "fan", "fanout")
    dst = ctx.exchange(ch, "dst", "direct")
    q1, q2, q3 = ctx.queue(ch, "q1"), ctx.queue(ch, "q2"), ctx.queue(ch, "q3")
    ch.exchange_bind(fan, src, "logs.#")
    ch.exchange_bind(dst, src, "*.error")
    ch.queue_bind(q1, fan)
    ch.queue_bind(q2, dst, "logs.error")
    ch.queue_bind(q3, src, "#")
    for k in ("logs.info", "logs.error", "app.error", "other"):
        ch.basic_publish(src, k, k.encode())
    ch.basic_qos(prefetch_count=0)
    for n, q in (("q1", q1), ("q2", q2), ("q3", q3)):
        ctx.log("queue", queue=n, got=drain(ch, q))
    ch.exchange_unbind(fan, src, "logs.#")
    ch.basic_publish(src, "logs.info", b"after-unbind")
    ch.basic_qos(prefetch_count=0)
    for n, q in (("q1", q1), ("q3", q3)):
        ctx.log("after_unbind", queue=n, got=drain(ch, q))


@scenario(G)
def exchange_to_exchange_cycle(ctx):
    """A cycle of exchange bindings delivers each message once to a queue bound in the cycle."""
    conn = ctx.connect()
    ch = conn.channel()
    a = ctx.exchange(ch, "a", "fanout")
    b = ctx.exchange(ch, "b", "fanout")
    ch.exchange_bind(b, a)
    ch.exchange_bind(a, b)
    q = ctx.queue(ch, "q")
    ch.queue_bind(q, b)
    ch.basic_publish(a, "", b"1")
    ch.basic_publish(b, "", b"2")
    ch.basic_qos(prefetch_count=0)
    ctx.log("queue", got=drain(ch, q))


@scenario(G)
def alternate_exchange(ctx):
    """alternate-exchange argument: unroutable messages go to the AE; routable ones do not."""
    conn = ctx.connect()
    ch = conn.channel()
    ae = ctx.exchange(ch, "ae", "fanout")
    x = ctx.exchange(ch, "x", "direct", arguments={"alternate-exchange": ae})
    qa, qx = ctx.queue(ch, "qa"), ctx.queue(ch, "qx")
    ch.queue_bind(qa, ae)
    ch.queue_bind(qx, x, "k")
    ch.basic_publish(x, "k", b"routed")
    ch.basic_publish(x, "other", b"unrouted")
    ch.basic_qos(prefetch_count=0)
    ctx.log("queue", queue="qx", got=drain(ch, qx))
    ctx.log("queue", queue="qa", got=drain(ch, qa))


@scenario(G)
def unbind_queue(ctx):
    """queue.unbind removes exactly one binding (key and arguments must match)."""
    conn = ctx.connect()
    ch = conn.channel()
    x = ctx.exchange(ch, "x", "direct")
    q = ctx.queue(ch, "q")
    ch.queue_bind(q, x, "a")
    ch.queue_bind(q, x, "b")
    ch.queue_unbind(q, x, "a")
    for k in ("a", "b"):
        ch.basic_publish(x, k, k.encode())
    ch.basic_qos(prefetch_count=0)
    ctx.log("queue", got=drain(ch, q))


@scenario(G)
def mandatory_return(ctx):
    """mandatory=true and no route: basic.return 312 NO_ROUTE with the message; routable ones
    not."""
    conn = ctx.connect()
    ch = conn.channel()
    x = ctx.exchange(ch, "x", "direct")
    q = ctx.queue(ch, "q")
    ch.queue_bind(q, x, "ok")
    returned = []
    ch.add_on_return_callback(lambda c, m, p, b: returned.append(
        {"reply_code": m.reply_code, "reply_text": m.reply_text, "exchange": m.exchange,
         "routing_key": m.routing_key, "body": b.decode(), "headers": p.headers,
         "message_id": p.message_id}))
    ch.basic_publish(x, "nowhere", b"lost",
                     pika.BasicProperties(message_id="m1", headers={"h": 1}), mandatory=True)
    ch.basic_publish(x, "ok", b"kept", mandatory=True)
    ch.basic_publish(x, "nowhere2", b"dropped", mandatory=False)
    ch.basic_publish("", ctx.name("missing-queue"), b"lost2", mandatory=True)
    ch.basic_qos(prefetch_count=0)
    pump(conn, 0.3)
    ctx.log("returns", returned=returned)
    ctx.log("queue", got=drain(ch, q))
