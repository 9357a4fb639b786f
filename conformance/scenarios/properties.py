"""Message properties, header tables and bodies (empty, large)."""

from __future__ import annotations

import datetime
import decimal
import hashlib

import pika

from ..ctx import pump, typed
from ..registry import scenario

G = "messages"

PROP_FIELDS = ["content_type", "content_encoding", "headers", "delivery_mode", "priority",
               "correlation_id", "reply_to", "expiration", "message_id", "timestamp", "type",
               "user_id", "app_id", "cluster_id"]


def props_of(p) -> dict:
    return {f: typed(getattr(p, f)) for f in PROP_FIELDS}


def roundtrip(ctx, props, body=b"body"):
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    ch.basic_publish("", q, body, props)
    ch.basic_qos(prefetch_count=0)
    m, p, b = ch.basic_get(q, auto_ack=True)
    got = []
    ch.basic_publish("", q, body, props)
    ch.basic_consume(q, lambda c, m2, p2, b2: got.append((p2, b2)), auto_ack=True)
    pump(conn, 0.3)
    return (p, b), got[0] if got else (None, None)


@scenario(G)
def all_properties(ctx):
    """All 14 basic properties survive the round trip (get and consume) exactly as pika
    decodes them."""
    props = pika.BasicProperties(
        content_type="application/json", content_encoding="gzip", headers={"k": "v"},
        delivery_mode=2, priority=7, correlation_id="corr-1", reply_to="reply.queue",
        expiration="60000", message_id="msg-1", timestamp=1700000000, type="order.created",
        user_id="guest", app_id="conformance", cluster_id="cluster-x")
    (gp, gb), (cp, cb) = roundtrip(ctx, props)
    ctx.log("get", props=props_of(gp), body=gb)
    ctx.log("consume", props=props_of(cp), body=cb)


@scenario(G)
def no_properties(ctx):
    """A message without any property: every field decodes as None."""
    (gp, gb), (cp, cb) = roundtrip(ctx, None)
    ctx.log("get", props=props_of(gp))
    ctx.log("consume", props=props_of(cp))


@scenario(G)
def header_types_pika(ctx):
    """Header table values encoded by pika (str, ints of each size, bool, bytes, Decimal,
    datetime, None, nested tables, arrays): record the decoded value and Python type.
    (pika cannot encode floats; they are covered by header_raw_field_types.)"""
    headers = {
        "str": "text", "unicode": "żółć ✓", "empty": "", "int_small": 7, "int_neg": -5,
        "int32_max": 2147483647, "int32_min": -2147483648, "int64": 2 ** 40,
        "int64_neg": -(2 ** 40), "bool_t": True, "bool_f": False, "bytes": b"\x00\x01\xff",
        "decimal": decimal.Decimal("3.14"), "ts": datetime.datetime(2024, 1, 2, 3, 4, 5),
        "void": None, "nested": {"a": 1, "b": {"c": "deep", "d": [1, "x", {"e": False}]}},
        "array": [1, "two", True, None, [4, 5], {"six": 6}], "empty_array": [],
        "empty_table": {}, "zero": 0,
    }
    (gp, _), (cp, _) = roundtrip(ctx, pika.BasicProperties(headers=headers))
    ctx.log("get", headers=typed(gp.headers))
    ctx.log("same_on_consume", same=typed(gp.headers) == typed(cp.headers))


@scenario(G)
def header_raw_field_types(ctx):
    """Field types pika never emits (b, B, s, u, i, f and long strings) written as raw frames:
    record exactly what pika decodes after the broker passes them through."""
    import struct

    def shortstr(s):
        b = s.encode()
        return bytes([len(b)]) + b

    fields = [
        ("b_neg", b"b" + struct.pack(">b", -3)), ("B_255", b"B" + struct.pack(">B", 255)),
        ("s_short", b"s" + struct.pack(">h", -300)), ("u_ushort", b"u" + struct.pack(">H", 65000)),
        ("i_uint", b"i" + struct.pack(">I", 4000000000)),
        ("f_float", b"f" + struct.pack(">f", 2.5)),
        ("l_long", b"l" + struct.pack(">q", -7)), ("d_double", b"d" + struct.pack(">d", 0.1)),
        ("S_long", b"S" + struct.pack(">I", 3) + b"abc"), ("t_bool", b"t\x01"),
        ("x_bytes", b"x" + struct.pack(">I", 2) + b"\xde\xad"),
        ("T_ts", b"T" + struct.pack(">Q", 1700000000)),
        ("D_dec", b"D" + struct.pack(">Bi", 2, 12345)),
        ("V_void", b"V"),
    ]
    table = b"".join(shortstr(k) + v for k, v in fields)
    # content header: class 60, weight 0, body size, flags (headers only), table
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    body = b"raw"

    class RawProps(pika.BasicProperties):
        def encode(self):
            return [struct.pack(">H", 1 << 13), struct.pack(">I", len(table)), table]

    ch.basic_publish("", q, body, RawProps())
    ch.basic_qos(prefetch_count=0)
    m, p, b = ch.basic_get(q, auto_ack=True)
    ctx.log("decoded", headers=typed(p.headers), body=b)


@scenario(G)
def timestamp_opaque(ctx):
    """A timestamp is an opaque 64-bit number: 0, 2**31, 2**62 and 2**64-1 (pika sends ints)
    come back unchanged via get and consume, with a datetime header beside them, and keep
    both through dead-lettering (reject requeue=false)."""
    import time

    stamps = [0, 2 ** 31, 2 ** 62, 2 ** 64 - 1]
    when = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    conn = ctx.connect()
    ch = conn.channel()
    dlq = ctx.queue(ch, "dlq")
    q = ctx.queue(ch, "q", arguments={"x-dead-letter-exchange": "",
                                      "x-dead-letter-routing-key": dlq})
    ch.basic_qos(prefetch_count=0)
    for stamp in stamps:
        ch.basic_publish("", q, b"get", pika.BasicProperties(timestamp=stamp, headers={"t": when}))
    got = []
    for _ in stamps:
        m, p, b = ch.basic_get(q, auto_ack=True)
        got.append(typed([p.timestamp, p.headers]) if m else None)
    ctx.log("get", got=got)
    consumed = []
    for stamp in stamps:
        ch.basic_publish("", q, b"consume", pika.BasicProperties(timestamp=stamp))
    tag = ch.basic_consume(q, lambda c, m, p, b: consumed.append(p.timestamp), auto_ack=True)
    for _ in range(20):
        pump(conn, 0.1)
        if len(consumed) >= len(stamps):
            break
    ch.basic_cancel(tag)
    ctx.log("consume", got=consumed)
    for stamp in stamps:
        ch.basic_publish("", q, b"dead", pika.BasicProperties(timestamp=stamp, headers={"t": when},
                                                               message_id=str(stamp)))
    for _ in stamps:
        m, _, _ = ch.basic_get(q)
        ch.basic_reject(m.delivery_tag, requeue=False)
    dead = []
    for _ in range(50):
        m, p, b = ch.basic_get(dlq, auto_ack=True)
        if m is None:
            if len(dead) >= len(stamps):
                break
            time.sleep(0.05)
            continue
        death = p.headers["x-death"][0]
        dead.append({"timestamp": p.timestamp, "message_id": p.message_id,
                     "t": typed(p.headers["t"]), "reason": death["reason"],
                     "count": death["count"], "queue": death["queue"]})
    ctx.log("dead_lettered", got=dead)


@scenario(G)
def empty_body(ctx):
    """A zero-length body (no body frames) arrives as b'' via get and consume."""
    (gp, gb), (cp, cb) = roundtrip(ctx, pika.BasicProperties(content_type="text/plain"), b"")
    ctx.log("bodies", get=gb, consume=cb, content_type=gp.content_type)


def _large(ctx, size):
    body = hashlib.sha256(b"seed").digest() * (size // 32) + b"!" * (size % 32)
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    ch.basic_publish("", q, body)
    ch.basic_qos(prefetch_count=0)
    m, p, b = ch.basic_get(q, auto_ack=True)
    ctx.log("got", size=len(b), same=b == body, sha256=hashlib.sha256(b).hexdigest())
    got = []
    ch.basic_publish("", q, body)
    ch.basic_consume(q, lambda c, m2, p2, b2: got.append(b2), auto_ack=True)
    pump(conn, 1.0)
    ctx.log("consumed", sizes=[len(g) for g in got], same=[g == body for g in got])


@scenario(G)
def large_body_1mb(ctx):
    """A 1 MiB body crosses many body frames (frame_max 131072) and arrives intact."""
    _large(ctx, 1024 * 1024 + 7)


@scenario(G)
def body_exactly_frame_size(ctx):
    """Bodies around the frame boundary (frame_max - 8 and +/- 1) arrive intact."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    fm = conn._impl.params.frame_max
    sizes = [fm - 9, fm - 8, fm - 7, 2 * (fm - 8)]
    for n in sizes:
        ch.basic_publish("", q, bytes([n % 251]) * n)
    ch.basic_qos(prefetch_count=0)
    res = []
    for n in sizes:
        m, p, b = ch.basic_get(q, auto_ack=True)
        res.append([n - fm, len(b) - fm, b == bytes([n % 251]) * n])
    ctx.log("sizes_relative_to_frame_max", got=res)


@scenario(G)
def many_small_messages_order(ctx):
    """1000 small messages keep FIFO order through one queue."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    for i in range(1000):
        ch.basic_publish("", q, str(i).encode())
    ch.basic_qos(prefetch_count=0)
    got = []
    ch.basic_consume(q, lambda c, m, p, b: got.append(int(b)), auto_ack=True)
    for _ in range(40):
        pump(conn, 0.1)
        if len(got) >= 1000:
            break
    ctx.log("order", count=len(got), in_order=got == list(range(1000)))
