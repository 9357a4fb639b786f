"""Integration tests with pika (and a raw socket client where pika cannot go).

RabbitMQ 3.x is the reference: every expectation here holds against it too
(run with AMQP_TEST_PORT=5673 against tools/reference-rabbitmq.sh to check).
"""

from __future__ import annotations

import datetime
import decimal
import os
import random
import socket
import time
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions as pex
import pytest
from pamqp import commands, heartbeat
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from helpers import (
    PROTOCOL_HEADER,
    BrokerProcess,
    RawClient,
    consume_n,
    drain,
    method_payload,
    pika_connect,
    pika_params,
    raw_frame,
)

# --- fixtures and helpers --------------------------------------------------------------

@pytest.fixture
def conn(broker: BrokerProcess):
    c = pika_connect(broker.port)
    try:
        yield c
    finally:
        if c.is_open:
            try:
                c.close()
            except Exception:
                pass


@pytest.fixture
def ch(conn: pika.BlockingConnection):
    return conn.channel()


def sync(ch: Any) -> None:
    """One synchronous round trip: any earlier channel error surfaces here."""
    ch.exchange_declare("amq.direct", "direct", passive=True, durable=True)


def channel_error(ch: Any, fn: Callable[[], Any]) -> int:
    """Run fn (then a round trip) and return the reply code the channel was closed with."""
    with pytest.raises(pex.ChannelClosedByBroker) as info:
        fn()
        sync(ch)
    assert ch.is_closed
    return int(info.value.reply_code)


def connection_error(conn: Any, fn: Callable[[], Any]) -> int:
    with pytest.raises(pex.ConnectionClosedByBroker) as info:
        fn()
        conn.channel()  # round trip on channel 0
    return int(info.value.reply_code)


def still_works(broker: BrokerProcess) -> None:
    """A fresh connection can declare, publish and get: the broker is healthy."""
    c = pika_connect(broker.port)
    try:
        chan = c.channel()
        q = chan.queue_declare("", exclusive=True).method.queue
        chan.basic_publish("", q, b"ping")
        method, _, body = chan.basic_get(q, auto_ack=True)
        assert body == b"ping"
    finally:
        c.close()


def temp_queue(ch: Any, name: str = "", **kw: Any) -> str:
    """A queue for one test: server-named ones are exclusive (gone with the connection)."""
    if not name:
        kw.setdefault("exclusive", True)
    return ch.queue_declare(name, **kw).method.queue


def bodies(messages: list[tuple[Any, Any, bytes]]) -> list[bytes]:
    return [m[2] for m in messages]


# --- connection-level reply codes ----------------------------------------------------

def test_bad_credentials_403(broker: BrokerProcess) -> None:
    params = pika_params(broker.port, credentials=pika.PlainCredentials("guest", "wrong"))
    with pytest.raises((pex.ProbableAuthenticationError, pex.AuthenticationError)):
        pika.BlockingConnection(params)


def test_bad_credentials_raw_403(broker: BrokerProcess) -> None:
    with RawClient(broker.port) as raw:
        raw.send_raw(PROTOCOL_HEADER)
        raw.read_until((commands.Connection.Start,))
        raw.send(commands.Connection.StartOk(
            client_properties={"capabilities": {"authentication_failure_close": True}},
            mechanism="PLAIN", response="\x00guest\x00nope", locale="en_US"))
        close = raw.expect_connection_close()
        assert close.reply_code == 403
        assert close.reply_text.startswith("ACCESS_REFUSED")
        assert raw.wait_closed(5)


def test_unknown_vhost_530(broker: BrokerProcess) -> None:
    with pytest.raises(pex.AMQPConnectionError):
        pika_connect(broker.port, virtual_host="no-such-vhost")
    with RawClient(broker.port) as raw:
        raw.send_raw(PROTOCOL_HEADER)
        raw.read_until((commands.Connection.Start,))
        raw.send(commands.Connection.StartOk(client_properties={}, mechanism="PLAIN",
                                             response="\x00guest\x00guest", locale="en_US"))
        _, tune = raw.read_until((commands.Connection.Tune,))
        raw.send(commands.Connection.TuneOk(channel_max=tune.channel_max,
                                            frame_max=tune.frame_max, heartbeat=0))
        raw.send(commands.Connection.Open(virtual_host="no-such-vhost"))
        close = raw.expect_connection_close()
        assert close.reply_code == 530
        assert close.reply_text.startswith("NOT_ALLOWED")


def test_wrong_protocol_header(broker: BrokerProcess) -> None:
    # (RabbitMQ also accepts the 0-8 and 0-9 headers, so those are not "wrong")
    for bad in (b"AMQP\x00\x00\x09\x02", b"AMQP\x00\x00\x0a\x00", b"XMQP\x00\x00\x09\x01",
                b"GET / HTTP/1.1\r\n\r\n"):
        with RawClient(broker.port) as raw:
            raw.send_raw(bad)
            assert raw.read_bytes(8) == PROTOCOL_HEADER
            assert raw.wait_closed(5)
    still_works(broker)


def test_unknown_exchange_type_503_closes_connection(conn: Any, ch: Any, uid: str) -> None:
    code = connection_error(conn, lambda: ch.exchange_declare("x-" + uid, "no-such-type"))
    assert code == 503
    assert conn.is_closed


def test_immediate_540(broker: BrokerProcess, uid: str) -> None:
    with RawClient(broker.port) as raw:
        raw.handshake()
        raw.open_channel(1)
        raw.publish(1, "", "q-" + uid, b"x", immediate=True)
        close = raw.expect_connection_close()
        assert close.reply_code == 540
        assert close.class_id == 60 and close.method_id == 40
        assert raw.wait_closed(5)


def test_method_on_unopened_channel_504(broker: BrokerProcess) -> None:
    with RawClient(broker.port) as raw:
        raw.handshake()
        raw.send(commands.Queue.Declare(queue="", exclusive=True), 5)
        close = raw.expect_connection_close()
        assert close.reply_code == 504
        assert raw.wait_closed(5)


def test_frame_larger_than_frame_max_501(broker: BrokerProcess, uid: str) -> None:
    with RawClient(broker.port) as raw:
        raw.handshake(frame_max=4096)
        raw.open_channel(1)
        data = raw_frame(1, 1, method_payload(commands.Basic.Publish(exchange="", routing_key="q")))
        data += raw_frame(2, 1, ContentHeader(0, 10000, commands.Basic.Properties()).marshal())
        # the head of one body frame of 10008 bytes > 4096; the rest is never sent, so the
        # broker has no unread bytes when it closes (which would make the kernel send RST)
        data += raw_frame(3, 1, b"x" * 10000)[:7]
        raw.send_raw(data)
        close = raw.expect_connection_close()
        assert close.reply_code == 501
        assert raw.wait_closed(5)
    still_works(broker)


def test_body_without_publish_505(broker: BrokerProcess) -> None:
    with RawClient(broker.port) as raw:
        raw.handshake()
        raw.open_channel(1)
        raw.send(ContentBody(b"orphan body"), 1)
        close = raw.expect_connection_close()
        assert close.reply_code == 505
        assert raw.wait_closed(5)


def test_header_without_publish_505(broker: BrokerProcess) -> None:
    with RawClient(broker.port) as raw:
        raw.handshake()
        raw.open_channel(1)
        raw.send(ContentHeader(0, 5, commands.Basic.Properties()), 1)
        close = raw.expect_connection_close()
        assert close.reply_code == 505


def test_method_instead_of_content_header_505(broker: BrokerProcess) -> None:
    with RawClient(broker.port) as raw:
        raw.handshake()
        raw.open_channel(1)
        raw.send(commands.Basic.Publish(exchange="", routing_key="nowhere"), 1)
        raw.send(commands.Basic.Qos(prefetch_count=1), 1)
        close = raw.expect_connection_close()
        assert close.reply_code == 505


GARBAGE_AFTER_HANDSHAKE = [
    pytest.param(b"\xff" * 64, id="unknown-frame-type"),
    pytest.param(raw_frame(1, 0, b"\x00\x0a\x00\x32", end=b"\x00"), id="bad-frame-end"),
    pytest.param(raw_frame(1, 1, b"\x00\x32"), id="method-payload-too-short"),
    pytest.param(raw_frame(1, 1, method_payload(commands.Queue.Declare(queue="abc"))[:9]),
                 id="truncated-method-args"),
    pytest.param(raw_frame(1, 0, b"\x00\x0a\x00\x28\xff\xff"), id="bad-shortstr-length"),
    pytest.param(raw_frame(1, 1, b"\x03\xe7\x00\x01"), id="unknown-class"),
    pytest.param(raw_frame(2, 1, b"\x00"), id="short-content-header"),
    pytest.param(b"\x01\x00\x01\x00\x00\x10\x00" + b"\x00" * 20, id="truncated-then-eof"),
    pytest.param(b"\x01\x00\x01\x7f\xff\xff\xff", id="huge-size"),
]


@pytest.mark.parametrize("garbage", GARBAGE_AFTER_HANDSHAKE)
def test_garbage_does_not_affect_other_connections(broker: BrokerProcess, uid: str,
                                                   garbage: bytes) -> None:
    bystander = pika_connect(broker.port)
    try:
        bch = bystander.channel()
        q = temp_queue(bch, "bystander-" + uid)
        with RawClient(broker.port) as raw:
            raw.handshake()
            raw.open_channel(1)
            raw.send_raw(garbage)
            if garbage.startswith(b"\x01\x00\x01\x00\x00\x10"):
                raw.sock.shutdown(socket.SHUT_WR)  # truncated frame, then EOF
            # the broker must answer malformed input by closing (with a connection.close
            # or straight away), never by hanging or crashing
            assert raw.wait_closed(5), "broker did not close the connection"
        bch.basic_publish("", q, b"still here")
        method, _, body = bch.basic_get(q, auto_ack=True)
        assert body == b"still here"
        bch.queue_delete(q)
    finally:
        bystander.close()
    assert broker.proc is None or broker.alive()
    still_works(broker)


MALFORMED_REPLY_CODES = [  # what RabbitMQ 3.x answers (connection.close) to each
    pytest.param(b"\xff" * 64, 501, id="unknown-frame-type"),
    pytest.param(raw_frame(1, 0, b"\x00\x0a\x00\x32", end=b"\x00"), 501, id="bad-frame-end"),
    pytest.param(raw_frame(1, 1, b"\x00\x32"), 501, id="method-payload-too-short"),
    pytest.param(raw_frame(1, 1, method_payload(commands.Queue.Declare(queue="abc"))[:9]), 501,
                 id="truncated-method-args"),
    pytest.param(raw_frame(2, 1, b"\x00"), 501, id="short-content-header"),
    pytest.param(b"\x01\x00\x01\x7f\xff\xff\xff", 501, id="huge-size"),
]


@pytest.mark.parametrize("garbage,code", MALFORMED_REPLY_CODES)
def test_malformed_frame_reply_code(broker: BrokerProcess, garbage: bytes, code: int) -> None:
    with RawClient(broker.port) as raw:
        raw.handshake()
        raw.open_channel(1)
        raw.send_raw(garbage)
        raw.wait_closed(5)
        assert raw.close_frame is not None, "no connection.close before the socket closed"
        assert raw.close_frame.reply_code == code, raw.close_frame.reply_text


def _closes_after(raw: RawClient, garbage: bytes) -> bool:
    """Send garbage; the broker must close the connection, at the latest once we
    stop sending (an incomplete frame may legitimately wait for more bytes)."""
    raw.send_raw(garbage)
    if raw.wait_closed(0.3):
        return True
    try:
        raw.sock.shutdown(socket.SHUT_WR)
    except OSError:
        return True
    return raw.wait_closed(5.0)


@pytest.mark.time_limit(60)
def test_random_garbage_fuzz(broker: BrokerProcess) -> None:
    rng = random.Random(0xA3C9)
    for _ in range(10):
        with RawClient(broker.port) as raw:
            raw.handshake()
            assert _closes_after(raw, rng.randbytes(rng.randint(1, 300)))
    for _ in range(10):
        with RawClient(broker.port) as raw:  # garbage before any handshake
            assert _closes_after(raw, rng.randbytes(rng.randint(1, 64)))
    still_works(broker)


# --- channel-level reply codes -------------------------------------------------------

def test_publish_to_missing_exchange_404(ch: Any, uid: str) -> None:
    code = channel_error(ch, lambda: ch.basic_publish("missing-" + uid, "rk", b"x"))
    assert code == 404


def test_publish_to_missing_exchange_does_not_close_connection(conn: Any, uid: str) -> None:
    ch1 = conn.channel()
    channel_error(ch1, lambda: ch1.basic_publish("missing-" + uid, "rk", b"x"))
    assert conn.is_open
    ch2 = conn.channel()
    sync(ch2)


def test_passive_declare_missing_queue_404(ch: Any, uid: str) -> None:
    assert channel_error(ch, lambda: ch.queue_declare("missing-" + uid, passive=True)) == 404


def test_passive_declare_missing_exchange_404(ch: Any, uid: str) -> None:
    assert channel_error(
        ch, lambda: ch.exchange_declare("missing-" + uid, "direct", passive=True)) == 404


def test_passive_declare_existing(ch: Any, uid: str) -> None:
    ch.exchange_declare("x-" + uid, "topic", auto_delete=True)
    ch.exchange_declare("x-" + uid, "topic", passive=True)
    q = temp_queue(ch, "q-" + uid, auto_delete=True)
    ch.basic_publish("", q, b"1")
    ok = ch.queue_declare(q, passive=True)
    assert ok.method.message_count == 1
    ch.exchange_delete("x-" + uid)
    ch.queue_delete(q)


def test_redeclare_exchange_other_type_406(conn: Any, uid: str) -> None:
    ch = conn.channel()
    ch.exchange_declare("x-" + uid, "direct", auto_delete=True)
    assert channel_error(ch, lambda: ch.exchange_declare("x-" + uid, "fanout",
                                                         auto_delete=True)) == 406
    ch2 = conn.channel()
    assert channel_error(ch2, lambda: ch2.exchange_declare("x-" + uid, "direct",
                                                           durable=True,
                                                           auto_delete=True)) == 406
    ch3 = conn.channel()
    ch3.exchange_delete("x-" + uid)


def test_redeclare_queue_other_properties_406(conn: Any, uid: str) -> None:
    ch = conn.channel()
    q = "q-" + uid
    ch.queue_declare(q, auto_delete=False)
    try:
        assert channel_error(ch, lambda: ch.queue_declare(q, durable=True)) == 406
        ch = conn.channel()
        assert channel_error(ch, lambda: ch.queue_declare(
            q, arguments={"x-max-length": 10})) == 406
        ch = conn.channel()
        ch.queue_declare(q)  # same properties: fine
    finally:
        conn.channel().queue_delete(q)


@pytest.mark.parametrize("name", ["amq.custom", "amq.direct-ish"])
def test_declare_amq_exchange_403(ch: Any, name: str) -> None:
    assert channel_error(ch, lambda: ch.exchange_declare(name, "direct")) == 403


def test_declare_amq_queue_403(ch: Any, uid: str) -> None:
    assert channel_error(ch, lambda: ch.queue_declare("amq.q-" + uid)) == 403


def test_redeclare_builtin_exchange_ok(ch: Any) -> None:
    ch.exchange_declare("amq.topic", "topic", durable=True)
    ch.exchange_declare("amq.fanout", "fanout", durable=True)


def test_exclusive_queue_other_connection_405(broker: BrokerProcess, ch: Any, uid: str) -> None:
    q = ch.queue_declare("excl-" + uid, exclusive=True).method.queue
    other = pika_connect(broker.port)
    try:
        for op in (lambda c: c.queue_declare(q, passive=True),
                   lambda c: c.queue_declare(q, exclusive=True),
                   lambda c: c.basic_consume(q, lambda *a: None),
                   lambda c: c.queue_purge(q),
                   lambda c: c.basic_get(q)):
            c = other.channel()
            assert channel_error(c, lambda op=op, c=c: op(c)) == 405
    finally:
        other.close()


def test_unknown_delivery_tag_406(ch: Any) -> None:
    assert channel_error(ch, lambda: ch.basic_ack(999)) == 406


def test_double_ack_406(ch: Any, uid: str) -> None:
    q = temp_queue(ch)
    ch.basic_publish("", q, b"1")
    method, _, _ = ch.basic_get(q)
    ch.basic_ack(method.delivery_tag)
    assert channel_error(ch, lambda: ch.basic_ack(method.delivery_tag)) == 406


def test_mandatory_unroutable_returned_312(ch: Any, uid: str) -> None:
    returned: list[tuple[Any, Any, bytes]] = []
    ch.add_on_return_callback(lambda c, m, p, b: returned.append((m, p, b)))
    ch.basic_publish("amq.direct", "nobody-" + uid, b"lost",
                     pika.BasicProperties(message_id="m1"), mandatory=True)
    ch.basic_publish("amq.direct", "nobody-" + uid, b"silently dropped")
    deadline = time.monotonic() + 5
    while not returned and time.monotonic() < deadline:
        ch.connection.process_data_events(time_limit=0.1)
    assert len(returned) == 1
    method, props, body = returned[0]
    assert method.reply_code == 312
    assert method.reply_text == "NO_ROUTE"
    assert method.exchange == "amq.direct"
    assert method.routing_key == "nobody-" + uid
    assert body == b"lost"
    assert props.message_id == "m1"
    sync(ch)
    assert ch.is_open


def test_internal_exchange_publish_refused_403(ch: Any, uid: str) -> None:
    ch.exchange_declare("int-" + uid, "fanout", internal=True, auto_delete=True)
    assert channel_error(ch, lambda: ch.basic_publish("int-" + uid, "", b"x")) == 403


def test_default_exchange_operations_refused_403(conn: Any, uid: str) -> None:
    ch = conn.channel()
    q = temp_queue(ch)
    assert channel_error(ch, lambda: ch.queue_bind(q, "", "rk")) == 403


# --- exchanges ----------------------------------------------------------------------

def test_direct_routing(ch: Any, uid: str) -> None:
    ex = "direct-" + uid
    ch.exchange_declare(ex, "direct", auto_delete=True)
    qa, qb = temp_queue(ch), temp_queue(ch)
    ch.queue_bind(qa, ex, "a")
    ch.queue_bind(qb, ex, "b")
    ch.queue_bind(qb, ex, "a")
    for key in ("a", "b", "c"):
        ch.basic_publish(ex, key, key.encode())
    assert bodies(consume_n(ch, qa, 1, auto_ack=True)) == [b"a"]
    assert sorted(bodies(consume_n(ch, qb, 2, auto_ack=True))) == [b"a", b"b"]
    assert ch.queue_declare(qa, passive=True).method.message_count == 0


def test_default_exchange_routes_by_queue_name(ch: Any, uid: str) -> None:
    q = temp_queue(ch, "dq-" + uid, auto_delete=True)
    ch.basic_publish("", q, b"hello")
    method, _, body = ch.basic_get(q, auto_ack=True)
    assert body == b"hello" and method.exchange == "" and method.routing_key == q


def test_fanout_routing(ch: Any, uid: str) -> None:
    ex = "fan-" + uid
    ch.exchange_declare(ex, "fanout", auto_delete=True)
    queues = [temp_queue(ch) for _ in range(3)]
    for q in queues:
        ch.queue_bind(q, ex, "ignored-" + q)
    ch.basic_publish(ex, "whatever", b"all")
    for q in queues:
        method, _, body = ch.basic_get(q, auto_ack=True)
        assert body == b"all"
        assert method.routing_key == "whatever"


@pytest.mark.parametrize("pattern,matches,misses", [
    ("a.*.c", ["a.b.c", "a.x.c"], ["a.c", "a.b.b.c", "a.b.c.d"]),
    ("a.#", ["a", "a.b", "a.b.c"], ["b.a", "ab"]),
    ("#.c", ["c", "a.c", "a.b.c"], ["c.a", "a.cc"]),
    ("#", ["", "a", "a.b.c"], []),
    ("*", ["a"], ["a.b", ""]),
    ("a.#.z", ["a.z", "a.b.z", "a.b.c.z"], ["a.b", "b.z"]),
    ("*.*", ["a.b", ".", "a."], ["a", "a.b.c"]),
    ("lit.eral", ["lit.eral"], ["lit.eral.x", "lit"]),
])
def test_topic_routing(ch: Any, uid: str, pattern: str, matches: list[str],
                       misses: list[str]) -> None:
    ex = "topic-" + uid
    ch.exchange_declare(ex, "topic", auto_delete=True)
    q = temp_queue(ch)
    ch.queue_bind(q, ex, pattern)
    for key in matches + misses:
        ch.basic_publish(ex, key, key.encode() or b"<empty>")
    got = bodies(consume_n(ch, q, len(matches) + 1, timeout=0.5, auto_ack=True))
    assert sorted(got) == sorted(k.encode() or b"<empty>" for k in matches)


def test_topic_multiple_bindings_deliver_once(ch: Any, uid: str) -> None:
    ex = "topic-" + uid
    ch.exchange_declare(ex, "topic", auto_delete=True)
    q = temp_queue(ch)
    for pattern in ("a.*", "#", "a.b", "*.b"):
        ch.queue_bind(q, ex, pattern)
    ch.basic_publish(ex, "a.b", b"once")
    assert bodies(consume_n(ch, q, 2, timeout=0.5, auto_ack=True)) == [b"once"]


def test_headers_routing(ch: Any, uid: str) -> None:
    ex = "hdr-" + uid
    ch.exchange_declare(ex, "headers", auto_delete=True)
    q_all, q_any = temp_queue(ch), temp_queue(ch)
    ch.queue_bind(q_all, ex, "", arguments={"x-match": "all", "format": "pdf", "type": "report"})
    ch.queue_bind(q_any, ex, "", arguments={"x-match": "any", "format": "pdf", "type": "log"})
    cases = {
        b"both": {"format": "pdf", "type": "report"},
        b"pdf-only": {"format": "pdf"},
        b"log": {"type": "log", "format": "zip"},
        b"none": {"other": 1},
        b"no-headers": None,
    }
    for body, headers in cases.items():
        ch.basic_publish(ex, "", body, pika.BasicProperties(headers=headers))
    assert sorted(bodies(consume_n(ch, q_all, 5, timeout=0.5, auto_ack=True))) == [b"both"]
    assert sorted(bodies(consume_n(ch, q_any, 5, timeout=0.5, auto_ack=True))) == \
        [b"both", b"log", b"pdf-only"]


def test_headers_routing_default_all(ch: Any, uid: str) -> None:
    ch.exchange_declare("hdr-" + uid, "headers", auto_delete=True)
    q = temp_queue(ch)
    ch.queue_bind(q, "hdr-" + uid, "", arguments={"a": 1, "b": "two"})
    ch.basic_publish("hdr-" + uid, "", b"yes", pika.BasicProperties(headers={"a": 1, "b": "two",
                                                                             "c": 3}))
    ch.basic_publish("hdr-" + uid, "", b"no", pika.BasicProperties(headers={"a": 1}))
    assert bodies(consume_n(ch, q, 2, timeout=0.5, auto_ack=True)) == [b"yes"]


def test_exchange_to_exchange_bind_unbind(ch: Any, uid: str) -> None:
    src, dst = "e2e-src-" + uid, "e2e-dst-" + uid
    ch.exchange_declare(src, "topic")
    ch.exchange_declare(dst, "fanout")
    try:
        q = temp_queue(ch)
        ch.queue_bind(q, dst)
        ch.exchange_bind(destination=dst, source=src, routing_key="news.#")
        ch.basic_publish(src, "news.sport", b"via-e2e")
        ch.basic_publish(src, "weather", b"filtered")
        assert bodies(consume_n(ch, q, 2, timeout=0.5, auto_ack=True)) == [b"via-e2e"]
        ch.exchange_unbind(destination=dst, source=src, routing_key="news.#")
        ch.basic_publish(src, "news.sport", b"after-unbind")
        assert consume_n(ch, q, 1, timeout=0.3, auto_ack=True) == []
    finally:
        ch.exchange_delete(src)
        ch.exchange_delete(dst)


def test_exchange_to_exchange_cycle_delivers_once(ch: Any, uid: str) -> None:
    a, b = "cyc-a-" + uid, "cyc-b-" + uid
    ch.exchange_declare(a, "fanout")
    ch.exchange_declare(b, "fanout")
    try:
        q = temp_queue(ch)
        ch.queue_bind(q, b)
        ch.queue_bind(q, a)
        ch.exchange_bind(b, a)
        ch.exchange_bind(a, b)
        ch.basic_publish(a, "", b"once")
        assert bodies(consume_n(ch, q, 2, timeout=0.5, auto_ack=True)) == [b"once"]
    finally:
        ch.exchange_delete(a)
        ch.exchange_delete(b)


def test_exchange_delete_if_unused(conn: Any, uid: str) -> None:
    ch = conn.channel()
    ex = "del-" + uid
    ch.exchange_declare(ex, "direct")
    q = temp_queue(ch)
    ch.queue_bind(q, ex, "k")
    assert channel_error(ch, lambda: ch.exchange_delete(ex, if_unused=True)) == 406
    ch = conn.channel()
    ch.exchange_declare(ex, "direct", passive=True)  # still there
    ch.queue_unbind(q, ex, "k")
    ch.exchange_delete(ex, if_unused=True)
    assert channel_error(ch, lambda: ch.exchange_declare(ex, "direct", passive=True)) == 404


def test_exchange_delete_removes_bindings(ch: Any, uid: str) -> None:
    ex = "delb-" + uid
    ch.exchange_declare(ex, "fanout")
    q = temp_queue(ch)
    ch.queue_bind(q, ex)
    ch.exchange_delete(ex)
    ch.exchange_declare(ex, "fanout")
    ch.basic_publish(ex, "", b"x")
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    ch.exchange_delete(ex)


def test_auto_delete_exchange_goes_with_last_binding(conn: Any, uid: str) -> None:
    ch = conn.channel()
    ex = "ad-" + uid
    ch.exchange_declare(ex, "direct", auto_delete=True)
    q = temp_queue(ch)
    ch.queue_bind(q, ex, "k")
    ch.queue_unbind(q, ex, "k")
    assert channel_error(ch, lambda: ch.exchange_declare(ex, "direct", passive=True)) == 404


def test_bind_missing_queue_or_exchange_404(conn: Any, uid: str) -> None:
    ch = conn.channel()
    assert channel_error(ch, lambda: ch.queue_bind("missing-" + uid, "amq.direct")) == 404
    ch = conn.channel()
    q = temp_queue(ch)
    assert channel_error(ch, lambda: ch.queue_bind(q, "missing-" + uid)) == 404


# --- queues -------------------------------------------------------------------------

def test_declare_ok_counts(broker: BrokerProcess, ch: Any, uid: str) -> None:
    q = "counts-" + uid
    ok = ch.queue_declare(q, auto_delete=False)
    assert (ok.method.queue, ok.method.message_count, ok.method.consumer_count) == (q, 0, 0)
    for i in range(3):
        ch.basic_publish("", q, str(i).encode())
    other = pika_connect(broker.port)
    try:
        och = other.channel()
        och.basic_qos(prefetch_count=1)
        och.basic_consume(q, lambda *a: None)
        drain(other, 0.3)
        ok = ch.queue_declare(q, passive=True)
        # one message is with the consumer (unacked), two are ready
        assert (ok.method.message_count, ok.method.consumer_count) == (2, 1)
    finally:
        other.close()
    ok = ch.queue_declare(q)
    assert (ok.method.message_count, ok.method.consumer_count) == (3, 0)
    ch.queue_delete(q)


def test_purge_count(ch: Any, uid: str) -> None:
    q = temp_queue(ch)
    for _i in range(7):
        ch.basic_publish("", q, b"x")
    assert ch.queue_purge(q).method.message_count == 7
    assert ch.queue_purge(q).method.message_count == 0
    assert ch.basic_get(q) == (None, None, None)


def test_purge_leaves_unacked(ch: Any, uid: str) -> None:
    q = temp_queue(ch)
    for body in (b"1", b"2"):
        ch.basic_publish("", q, body)
    method, _, _ = ch.basic_get(q)
    assert ch.queue_purge(q).method.message_count == 1
    ch.basic_nack(method.delivery_tag, requeue=True)
    method, _, body = ch.basic_get(q, auto_ack=True)
    assert body == b"1" and method.redelivered


def test_delete_if_unused_if_empty_and_count(conn: Any, uid: str) -> None:
    ch = conn.channel()
    q = "delq-" + uid
    ch.queue_declare(q)
    ch.basic_publish("", q, b"1")
    ch.basic_publish("", q, b"2")
    tag = ch.basic_consume(q, lambda *a: None)
    assert channel_error(ch, lambda: ch.queue_delete(q, if_unused=True)) == 406
    ch = conn.channel()
    assert ch.queue_declare(q, passive=True).method.consumer_count == 0  # channel closed
    assert channel_error(ch, lambda: ch.queue_delete(q, if_empty=True)) == 406
    ch = conn.channel()
    assert ch.queue_delete(q, if_unused=True).method.message_count == 2
    assert channel_error(ch, lambda: ch.queue_declare(q, passive=True)) == 404
    del tag


def test_delete_missing_queue_ok(ch: Any, uid: str) -> None:
    assert ch.queue_delete("never-declared-" + uid).method.message_count == 0


def test_auto_delete_queue_after_last_consumer_cancels(conn: Any, uid: str) -> None:
    ch = conn.channel()
    q = "ad-" + uid
    ch.queue_declare(q, auto_delete=True)
    t1 = ch.basic_consume(q, lambda *a: None)
    t2 = ch.basic_consume(q, lambda *a: None)
    ch.basic_cancel(t1)
    assert ch.queue_declare(q, passive=True).method.consumer_count == 1
    ch.basic_cancel(t2)
    assert channel_error(ch, lambda: ch.queue_declare(q, passive=True)) == 404


def test_auto_delete_queue_without_consumers_stays(ch: Any, uid: str) -> None:
    q = ch.queue_declare("ad-never-" + uid, auto_delete=True).method.queue
    sync(ch)
    ch.queue_declare(q, passive=True)
    ch.queue_delete(q)


def test_exclusive_queue_deleted_when_connection_closes(broker: BrokerProcess,
                                                        ch: Any, uid: str) -> None:
    owner = pika_connect(broker.port)
    q = owner.channel().queue_declare("excl-" + uid, exclusive=True).method.queue
    owner.close()
    deadline = time.monotonic() + 5
    conn = ch.connection
    while True:
        c = conn.channel()
        try:
            c.queue_declare(q, passive=True)
        except pex.ChannelClosedByBroker as exc:
            assert exc.reply_code == 404
            break
        assert time.monotonic() < deadline, "exclusive queue survived its connection"
        time.sleep(0.1)


def test_server_named_queue(ch: Any) -> None:
    ok = ch.queue_declare("", exclusive=True)
    name = ok.method.queue
    assert name.startswith("amq.gen-")
    assert len(name) > len("amq.gen-")
    assert ch.queue_declare("", exclusive=True).method.queue != name
    ch.basic_publish("", name, b"to-gen")
    assert ch.basic_get(name, auto_ack=True)[2] == b"to-gen"


# --- basic ---------------------------------------------------------------------------

def publish_all(ch: Any, q: str, items: list[bytes], ex: str = "") -> None:
    for body in items:
        ch.basic_publish(ex, q, body)


def get_all(ch: Any, q: str, n: int) -> list[tuple[Any, Any, bytes]]:
    out = []
    for _ in range(n):
        method, props, body = ch.basic_get(q)
        assert method is not None
        out.append((method, props, body))
    return out


def test_basic_get_and_get_empty(ch: Any) -> None:
    q = temp_queue(ch)
    publish_all(ch, q, [b"a", b"b", b"c"])
    method, _, body = ch.basic_get(q, auto_ack=True)
    assert body == b"a" and method.message_count == 2 and not method.redelivered
    method, _, body = ch.basic_get(q, auto_ack=True)
    assert body == b"b" and method.message_count == 1
    method, _, body = ch.basic_get(q, auto_ack=True)
    assert body == b"c" and method.message_count == 0
    assert ch.basic_get(q) == (None, None, None)


def test_get_empty_raw(broker: BrokerProcess) -> None:
    with RawClient(broker.port) as raw:
        raw.handshake()
        raw.open_channel(1)
        raw.send(commands.Queue.Declare(queue="", exclusive=True), 1)
        _, ok = raw.read_until((commands.Queue.DeclareOk,))
        raw.send(commands.Basic.Get(queue=ok.queue), 1)
        raw.read_until((commands.Basic.GetEmpty,))


def test_ack_multiple(ch: Any) -> None:
    q = temp_queue(ch)
    publish_all(ch, q, [b"1", b"2", b"3", b"4"])
    got = get_all(ch, q, 4)
    ch.basic_ack(got[2][0].delivery_tag, multiple=True)  # 1..3
    ch.basic_recover(requeue=True)  # only 4 was still unacked
    method, _, body = ch.basic_get(q, auto_ack=True)
    assert body == b"4" and method.redelivered
    assert ch.basic_get(q) == (None, None, None)


def test_nack_multiple_requeue(ch: Any) -> None:
    q = temp_queue(ch)
    publish_all(ch, q, [b"1", b"2", b"3"])
    got = get_all(ch, q, 3)
    ch.basic_nack(got[1][0].delivery_tag, multiple=True, requeue=True)  # 1, 2 back
    ch.basic_ack(got[2][0].delivery_tag)
    again = [ch.basic_get(q, auto_ack=True) for _ in range(2)]
    assert [b for _, _, b in again] == [b"1", b"2"]
    assert all(m.redelivered for m, _, _ in again)
    assert ch.basic_get(q) == (None, None, None)


def test_nack_and_reject_without_requeue_drop(ch: Any) -> None:
    q = temp_queue(ch)
    publish_all(ch, q, [b"1", b"2", b"3"])
    got = get_all(ch, q, 3)
    ch.basic_reject(got[0][0].delivery_tag, requeue=False)
    ch.basic_nack(got[2][0].delivery_tag, multiple=True, requeue=False)  # 2 and 3
    sync(ch)
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    ch.basic_recover(requeue=True)
    assert ch.basic_get(q) == (None, None, None)


def test_ack_all_with_tag_zero_multiple(ch: Any) -> None:
    q = temp_queue(ch)
    publish_all(ch, q, [b"1", b"2", b"3"])
    get_all(ch, q, 3)
    ch.basic_ack(0, multiple=True)
    ch.basic_recover(requeue=True)
    assert ch.basic_get(q) == (None, None, None)


def test_requeued_message_returns_to_original_place(ch: Any) -> None:
    q = temp_queue(ch)
    publish_all(ch, q, [b"m1", b"m2", b"m3", b"m4", b"m5"])
    got = {body: method.delivery_tag for method, _, body in get_all(ch, q, 5)}
    ch.basic_reject(got[b"m3"], requeue=True)
    ch.basic_reject(got[b"m1"], requeue=True)
    for body in (b"m2", b"m4", b"m5"):
        ch.basic_ack(got[body])
    msgs = consume_n(ch, q, 3, timeout=0.5)
    assert [b for _, _, b in msgs] == [b"m1", b"m3"]
    assert all(m.redelivered for m, _, _ in msgs)


def test_requeue_goes_before_newer_messages(ch: Any) -> None:
    q = temp_queue(ch)
    publish_all(ch, q, [b"m1", b"m2", b"m3"])
    method, _, body = ch.basic_get(q)
    assert body == b"m1"
    ch.basic_nack(method.delivery_tag, requeue=True)
    order = [(b, m.redelivered) for m, _, b in
             (ch.basic_get(q, auto_ack=True) for _ in range(3))]
    assert order == [(b"m1", True), (b"m2", False), (b"m3", False)]


def test_basic_recover_requeues_unacked(ch: Any) -> None:
    q = temp_queue(ch)
    publish_all(ch, q, [b"r1", b"r2"])
    get_all(ch, q, 2)
    ch.basic_recover(requeue=True)
    again = [ch.basic_get(q, auto_ack=True) for _ in range(2)]
    assert [(b, m.redelivered) for m, _, b in again] == [(b"r1", True), (b"r2", True)]


def test_qos_prefetch_per_consumer(conn: Any, ch: Any) -> None:
    q = temp_queue(ch)
    publish_all(ch, q, [str(i).encode() for i in range(6)])
    ch.basic_qos(prefetch_count=2)
    got: list[Any] = []
    ch.basic_consume(q, lambda c, m, p, b: got.append(m))
    drain(conn, 0.5)
    assert len(got) == 2  # exactly two outstanding
    ch.basic_ack(got[0].delivery_tag)
    drain(conn, 0.5)
    assert len(got) == 3
    ch.basic_ack(got[2].delivery_tag, multiple=True)
    drain(conn, 0.5)
    assert len(got) == 5


def test_qos_prefetch_is_per_consumer(conn: Any, ch: Any) -> None:
    q1, q2 = temp_queue(ch), temp_queue(ch)
    for q in (q1, q2):
        publish_all(ch, q, [b"x"] * 5)
    ch.basic_qos(prefetch_count=2)
    got = {q1: 0, q2: 0}

    def counter(q: str) -> Callable[..., None]:
        def on_message(c: Any, m: Any, p: Any, b: bytes) -> None:
            got[q] += 1
        return on_message

    ch.basic_consume(q1, counter(q1))
    ch.basic_consume(q2, counter(q2))
    drain(conn, 0.5)
    assert got == {q1: 2, q2: 2}


def test_qos_global_per_channel(conn: Any, ch: Any) -> None:
    q1, q2 = temp_queue(ch), temp_queue(ch)
    for q in (q1, q2):
        publish_all(ch, q, [b"x"] * 5)
    ch.basic_qos(prefetch_count=3, global_qos=True)
    got: list[Any] = []
    ch.basic_consume(q1, lambda c, m, p, b: got.append(m))
    ch.basic_consume(q2, lambda c, m, p, b: got.append(m))
    drain(conn, 0.5)
    assert len(got) == 3  # shared by both consumers on the channel
    ch.basic_ack(got[-1].delivery_tag, multiple=True)
    drain(conn, 0.5)
    assert len(got) == 6


def test_round_robin_between_competing_consumers(conn: Any, ch: Any) -> None:
    q = temp_queue(ch)
    got: list[str] = []
    ch.basic_consume(q, lambda c, m, p, b: got.append("A"), auto_ack=True)
    ch2 = conn.channel()
    ch2.basic_consume(q, lambda c, m, p, b: got.append("B"), auto_ack=True)
    sync(ch2)
    publish_all(ch, q, [b"x"] * 10)
    deadline = time.monotonic() + 5
    while len(got) < 10 and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.1)
    assert got.count("A") == 5 and got.count("B") == 5


def test_unacked_return_to_queue_when_channel_closes(conn: Any, ch: Any) -> None:
    q = temp_queue(ch)
    publish_all(ch, q, [b"u1", b"u2", b"u3"])
    other = conn.channel()
    got = get_all(other, q, 2)
    assert [b for _, _, b in got] == [b"u1", b"u2"]
    other.close()
    again = [ch.basic_get(q, auto_ack=True) for _ in range(3)]
    assert [(b, m.redelivered) for m, _, b in again] == \
        [(b"u1", True), (b"u2", True), (b"u3", False)]


def test_unacked_return_to_queue_when_connection_closes(broker: BrokerProcess, ch: Any,
                                                        uid: str) -> None:
    q = temp_queue(ch, "uc-" + uid, auto_delete=False)
    publish_all(ch, q, [b"c1", b"c2"])
    other = pika_connect(broker.port)
    och = other.channel()
    got: list[bytes] = []
    och.basic_consume(q, lambda c, m, p, b: got.append(b))
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        other.process_data_events(time_limit=0.1)
    assert got == [b"c1", b"c2"]
    other.close()
    deadline = time.monotonic() + 5
    while ch.queue_declare(q, passive=True).method.message_count < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    again = [ch.basic_get(q, auto_ack=True) for _ in range(2)]
    assert [(b, m.redelivered) for m, _, b in again] == [(b"c1", True), (b"c2", True)]
    ch.queue_delete(q)


def test_unacked_return_when_socket_dropped(broker: BrokerProcess, ch: Any, uid: str) -> None:
    q = temp_queue(ch, "drop-" + uid, auto_delete=False)
    ch.basic_publish("", q, b"dropped")
    with RawClient(broker.port) as raw:
        raw.handshake()
        raw.open_channel(1)
        raw.send(commands.Basic.Get(queue=q), 1)
        raw.read_until((commands.Basic.GetOk,))
    # the socket is closed without connection.close
    deadline = time.monotonic() + 5
    while True:
        method, _, body = ch.basic_get(q, auto_ack=True)
        if method is not None:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert body == b"dropped" and method.redelivered
    ch.queue_delete(q)


def test_consumer_cancel_notification_on_queue_delete(conn: Any, ch: Any, uid: str) -> None:
    q = temp_queue(ch, "cn-" + uid, auto_delete=False)
    cancelled: list[Any] = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame))
    tag = ch.basic_consume(q, lambda *a: None)
    conn.channel().queue_delete(q)
    deadline = time.monotonic() + 5
    while not cancelled and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.1)
    assert len(cancelled) == 1
    assert cancelled[0].method.consumer_tag == tag
    assert tag not in ch.consumer_tags
    assert ch.is_open


def test_exclusive_consumer_403(conn: Any, ch: Any) -> None:
    q = temp_queue(ch)
    ch.basic_consume(q, lambda *a: None, exclusive=True)
    other = conn.channel()
    assert channel_error(other, lambda: other.basic_consume(q, lambda *a: None)) == 403
    q2 = temp_queue(ch)
    ch.basic_consume(q2, lambda *a: None)
    other = conn.channel()
    assert channel_error(other, lambda: other.basic_consume(q2, lambda *a: None,
                                                            exclusive=True)) == 403


def test_consumer_tag_reuse_530(broker: BrokerProcess) -> None:
    # pika refuses a duplicate tag itself, so send it raw
    with RawClient(broker.port) as raw:
        raw.handshake()
        raw.open_channel(1)
        raw.send(commands.Queue.Declare(queue="", exclusive=True), 1)
        _, ok = raw.read_until((commands.Queue.DeclareOk,))
        raw.send(commands.Basic.Consume(queue=ok.queue, consumer_tag="dup"), 1)
        raw.read_until((commands.Basic.ConsumeOk,))
        raw.send(commands.Basic.Consume(queue=ok.queue, consumer_tag="dup"), 1)
        close = raw.expect_connection_close()
        assert close.reply_code == 530


def test_basic_cancel_then_messages_stay(conn: Any, ch: Any) -> None:
    q = temp_queue(ch, "bc-" + str(time.monotonic_ns()), auto_delete=False)
    got: list[bytes] = []
    tag = ch.basic_consume(q, lambda c, m, p, b: got.append(b), auto_ack=True)
    ch.basic_publish("", q, b"one")
    drain(conn, 0.3)
    ch.basic_cancel(tag)
    ch.basic_publish("", q, b"two")
    drain(conn, 0.3)
    assert got == [b"one"]
    assert ch.queue_declare(q, passive=True).method.message_count == 1
    ch.queue_delete(q)


# --- publisher confirms ------------------------------------------------------------

def test_confirm_delivery_pika(ch: Any) -> None:
    q = temp_queue(ch)
    ch.confirm_delivery()
    for i in range(10):
        ch.basic_publish("", q, str(i).encode())  # raises on nack; returns on ack
    assert ch.queue_declare(q, passive=True).method.message_count == 10


def test_confirm_mandatory_unroutable_raises(ch: Any, uid: str) -> None:
    ch.confirm_delivery()
    with pytest.raises(pex.UnroutableError):
        ch.basic_publish("amq.direct", "nobody-" + uid, b"x", mandatory=True)
    ch.basic_publish("amq.direct", "nobody-" + uid, b"x")  # not mandatory: just acked


def test_confirm_sequence_numbers_raw(broker: BrokerProcess) -> None:
    with RawClient(broker.port) as raw:
        raw.handshake()
        raw.open_channel(1)
        raw.send(commands.Confirm.Select(), 1)
        raw.read_until((commands.Confirm.SelectOk,))
        raw.send(commands.Queue.Declare(queue="", exclusive=True), 1)
        _, ok = raw.read_until((commands.Queue.DeclareOk,))
        n = 50
        for i in range(n):
            raw.publish(1, "", ok.queue, str(i).encode())
        confirmed: set[int] = set()
        last = 0
        while last < n:
            _, ack = raw.read_until((commands.Basic.Ack,))
            assert ack.delivery_tag > last, "confirms must arrive in increasing order"
            if ack.multiple:
                confirmed.update(range(last + 1, ack.delivery_tag + 1))
            else:
                confirmed.add(ack.delivery_tag)
            last = ack.delivery_tag
        assert confirmed == set(range(1, n + 1))


def test_confirm_unroutable_mandatory_return_then_ack_raw(broker: BrokerProcess,
                                                          uid: str) -> None:
    with RawClient(broker.port) as raw:
        raw.handshake()
        raw.open_channel(1)
        raw.send(commands.Confirm.Select(), 1)
        raw.read_until((commands.Confirm.SelectOk,))
        raw.publish(1, "amq.direct", "nobody-" + uid, b"lost", mandatory=True)
        _, ret = raw.read_until((commands.Basic.Return,))
        assert ret.reply_code == 312
        _, hdr = raw.read_until((ContentHeader,))
        assert hdr.body_size == 4
        _, body = raw.read_until((ContentBody,))
        assert body.value == b"lost"
        _, ack = raw.read_until((commands.Basic.Ack,))
        assert ack.delivery_tag == 1


def test_confirm_and_tx_exclusive(conn: Any) -> None:
    ch = conn.channel()
    ch.confirm_delivery()
    assert channel_error(ch, lambda: ch.tx_select()) == 406
    ch = conn.channel()
    ch.tx_select()
    assert channel_error(ch, lambda: ch.confirm_delivery()) == 406


# --- transactions ------------------------------------------------------------------

def test_tx_rollback_discards_publishes(ch: Any) -> None:
    q = temp_queue(ch)
    ch.tx_select()
    ch.basic_publish("", q, b"rolled back")
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    ch.tx_rollback()
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    ch.basic_publish("", q, b"committed")
    ch.tx_commit()
    method, _, body = ch.basic_get(q, auto_ack=True)
    assert body == b"committed"


def test_tx_commit_delivers(ch: Any) -> None:
    q = temp_queue(ch)
    ch.tx_select()
    publish_all(ch, q, [b"t1", b"t2"])
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    ch.tx_commit()
    assert ch.queue_declare(q, passive=True).method.message_count == 2


def test_tx_ack_takes_effect_at_commit(ch: Any) -> None:
    q = temp_queue(ch)
    publish_all(ch, q, [b"a1"])
    ch.tx_select()
    method, _, _ = ch.basic_get(q)
    ch.basic_ack(method.delivery_tag)
    ch.tx_rollback()
    # the ack was rolled back: the message is still unacked, recover gives it back
    ch.basic_recover(requeue=True)
    method, _, body = ch.basic_get(q)
    assert body == b"a1" and method.redelivered
    ch.basic_ack(method.delivery_tag)
    ch.tx_commit()
    ch.basic_recover(requeue=True)
    assert ch.basic_get(q) == (None, None, None)


def test_tx_commit_without_select_406(ch: Any) -> None:
    assert channel_error(ch, lambda: ch.tx_commit()) == 406


# --- heartbeats --------------------------------------------------------------------

@pytest.mark.time_limit(20)
def test_silent_client_disconnected_after_missed_heartbeats(broker: BrokerProcess) -> None:
    with RawClient(broker.port) as raw:
        raw.handshake(heartbeat_interval=1)
        start = time.monotonic()
        assert raw.wait_closed(10), "a client that sends nothing must be disconnected"
        assert time.monotonic() - start >= 1.0  # not before a heartbeat interval passed


@pytest.mark.time_limit(20)
def test_broker_sends_heartbeats(broker: BrokerProcess) -> None:
    with RawClient(broker.port) as raw:
        raw.handshake(heartbeat_interval=1)
        beats = 0
        deadline = time.monotonic() + 4
        next_beat = time.monotonic()
        while time.monotonic() < deadline:
            if time.monotonic() >= next_beat:
                raw.send(heartbeat.Heartbeat())
                next_beat += 0.4
            try:
                _, value = raw.read_frame(timeout=0.2)
            except TimeoutError:
                continue
            assert isinstance(value, heartbeat.Heartbeat), value
            beats += 1
        assert beats >= 2
        raw.send(commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0,
                                           method_id=0))
        raw.read_until((commands.Connection.CloseOk,))


@pytest.mark.time_limit(20)
def test_heartbeat_offered_by_broker_keeps_pika_alive(broker_factory: Any) -> None:
    b = broker_factory("--heartbeat", "1")
    with RawClient(b.port) as raw:
        raw.send_raw(PROTOCOL_HEADER)
        raw.read_until((commands.Connection.Start,))
        raw.send(commands.Connection.StartOk(client_properties={}, mechanism="PLAIN",
                                             response="\x00guest\x00guest", locale="en_US"))
        _, tune = raw.read_until((commands.Connection.Tune,))
        assert tune.heartbeat == 1
    c = pika_connect(b.port)
    try:
        chan = c.channel()
        drain(c, 3.5)  # pika answers heartbeats while processing events
        assert c.is_open
        q = chan.queue_declare("", exclusive=True).method.queue
        chan.basic_publish("", q, b"alive")
        assert chan.basic_get(q, auto_ack=True)[2] == b"alive"
    finally:
        c.close()


# --- content -----------------------------------------------------------------------

def test_large_message_2mb(ch: Any) -> None:
    q = temp_queue(ch)
    body = os.urandom(2 * 1024 * 1024)
    ch.basic_publish("", q, body)
    method, _, got = ch.basic_get(q, auto_ack=True)
    assert got == body
    got = None
    ch.basic_publish("", q, body)
    msgs = consume_n(ch, q, 1, auto_ack=True)
    assert msgs[0][2] == body


def test_large_message_small_frame_max_raw(broker: BrokerProcess) -> None:
    body = bytes(range(256)) * 400  # 102400 bytes in many 4 KiB frames
    with RawClient(broker.port) as raw:
        raw.handshake(frame_max=4096)
        raw.open_channel(1)
        raw.send(commands.Queue.Declare(queue="", exclusive=True), 1)
        _, ok = raw.read_until((commands.Queue.DeclareOk,))
        data = raw_frame(1, 1, method_payload(commands.Basic.Publish(routing_key=ok.queue)))
        data += raw_frame(2, 1, ContentHeader(0, len(body),
                                              commands.Basic.Properties()).marshal())
        for i in range(0, len(body), 4088):
            data += raw_frame(3, 1, body[i:i + 4088])
        raw.send_raw(data)
        raw.send(commands.Basic.Get(queue=ok.queue, no_ack=True), 1)
        raw.read_until((commands.Basic.GetOk,))
        _, hdr = raw.read_until((ContentHeader,))
        assert hdr.body_size == len(body)
        got = b""
        while len(got) < len(body):
            _, part = raw.read_until((ContentBody,))
            assert len(part.value) <= 4096 - 8  # the broker honours the negotiated frame_max
            got += part.value
        assert got == body


def test_empty_body_round_trip(ch: Any) -> None:
    q = temp_queue(ch)
    ch.basic_publish("", q, b"", pika.BasicProperties(content_type="empty"))
    method, props, body = ch.basic_get(q, auto_ack=True)
    assert body == b"" and props.content_type == "empty"
    ch.basic_publish("", q, b"")
    msgs = consume_n(ch, q, 1, auto_ack=True)
    assert msgs[0][2] == b""


def test_all_properties_and_header_types_round_trip(ch: Any) -> None:
    q = temp_queue(ch)
    headers = {
        "str": "text ünïcode",
        "int": 42,
        "negative": -7,
        "big": 2 ** 40,
        "bool-true": True,
        "bool-false": False,
        "none": None,
        "decimal": decimal.Decimal("3.14"),
        "timestamp": datetime.datetime(2024, 5, 17, 12, 30, 1, tzinfo=datetime.UTC),
        "nested": {"a": 1, "b": {"c": "deep"}},
        "list": [1, "two", [3], {"four": 4}],
        "bytes": b"\x00\x01binary",
        "empty-str": "",
        "empty-list": [],
        "empty-table": {},
    }
    props = pika.BasicProperties(
        content_type="application/json", content_encoding="gzip", headers=headers,
        delivery_mode=2, priority=7, correlation_id="corr-1", reply_to="reply.q",
        expiration="60000", message_id="msg-1", timestamp=1700000000, type="kind",
        user_id="guest", app_id="tests", cluster_id="cluster-x")
    ch.basic_publish("", q, b"{}", props)
    for got_props in (ch.basic_get(q)[1],):
        for name in ("content_type", "content_encoding", "delivery_mode", "priority",
                     "correlation_id", "reply_to", "expiration", "message_id", "timestamp",
                     "type", "user_id", "app_id", "cluster_id"):
            assert getattr(got_props, name) == getattr(props, name), name
        got_headers = dict(got_props.headers)
        assert got_headers == headers
        assert isinstance(got_headers["bool-true"], bool)
        assert isinstance(got_headers["decimal"], decimal.Decimal)
    ch.basic_recover(requeue=True)
    got = consume_n(ch, q, 1)
    assert got[0][1].headers == headers
    assert got[0][0].redelivered


def test_float_header_round_trip_raw(broker: BrokerProcess) -> None:
    # pamqp can encode the float/double/short field types that pika never sends
    headers = {"f": 1.5, "neg": -2.25, "text": "x", "n": 123456789}
    props = commands.Basic.Properties(headers=headers, content_type="t")
    with RawClient(broker.port) as raw:
        raw.handshake()
        raw.open_channel(1)
        raw.send(commands.Queue.Declare(queue="", exclusive=True), 1)
        _, ok = raw.read_until((commands.Queue.DeclareOk,))
        raw.publish(1, "", ok.queue, b"body", properties=props)
        raw.send(commands.Basic.Get(queue=ok.queue, no_ack=True), 1)
        raw.read_until((commands.Basic.GetOk,))
        _, hdr = raw.read_until((ContentHeader,))
        assert hdr.properties.headers == headers
        assert hdr.properties.content_type == "t"


def test_user_id_must_match_406(ch: Any) -> None:
    q = temp_queue(ch)
    assert channel_error(ch, lambda: ch.basic_publish(
        "", q, b"x", pika.BasicProperties(user_id="someone-else"))) == 406


# --- many messages, one connection ------------------------------------------------

def test_publish_consume_many_in_order(conn: Any, ch: Any) -> None:
    q = temp_queue(ch)
    n = 2000
    for i in range(n):
        ch.basic_publish("", q, str(i).encode())
    got = consume_n(ch, q, n, timeout=5)
    assert [int(b) for _, _, b in got] == list(range(n))
    ch.basic_ack(got[-1][0].delivery_tag, multiple=True)
    assert ch.queue_declare(q, passive=True).method.message_count == 0


# --- restart (private broker) ----------------------------------------------------------

@pytest.mark.time_limit(40)
def test_durable_queue_and_persistent_message_survive_restart(broker_factory: Any,
                                                              uid: str) -> None:
    b = broker_factory()
    c = pika_connect(b.port)
    chan = c.channel()
    chan.exchange_declare("dx-" + uid, "direct", durable=True)
    chan.queue_declare("dq-" + uid, durable=True)
    chan.queue_bind("dq-" + uid, "dx-" + uid, "k")
    chan.confirm_delivery()
    chan.basic_publish("dx-" + uid, "k", b"persistent", pika.BasicProperties(delivery_mode=2))
    chan.basic_publish("dx-" + uid, "k", b"transient", pika.BasicProperties(delivery_mode=1))
    c.close()
    b.restart()
    c = pika_connect(b.port)
    try:
        chan = c.channel()
        chan.exchange_declare("dx-" + uid, "direct", passive=True)
        assert chan.queue_declare("dq-" + uid, passive=True).method.message_count == 1
        method, props, body = chan.basic_get("dq-" + uid, auto_ack=True)
        assert body == b"persistent" and props.delivery_mode == 2
        chan.basic_publish("dx-" + uid, "k", b"binding survived")
        assert chan.basic_get("dq-" + uid, auto_ack=True)[2] == b"binding survived"
    finally:
        c.close()


@pytest.mark.time_limit(30)
def test_sigterm_closes_connections_320_and_exits_0(broker_factory: Any) -> None:
    b = broker_factory("--data-dir", "none")
    c = pika_connect(b.port)
    chan = c.channel()
    chan.queue_declare("", exclusive=True)
    assert b.stop() == 0
    with pytest.raises(pex.ConnectionClosedByBroker) as info:
        drain(c, 3)
    assert info.value.reply_code == 320


def test_zz_session_broker_logged_no_internal_errors(broker: BrokerProcess) -> None:
    """Runs last in this module: nothing above made the broker hit an internal error."""
    if broker.proc is None:
        pytest.skip("external broker")
    assert broker.alive()
    log = broker.log()
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]


def test_second_vhost_is_separate(broker_factory: Any, uid: str) -> None:
    b = broker_factory("--vhosts", "/,app")
    app = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.port,
                                                            virtual_host="app"))
    ch = app.channel()
    ch.queue_declare(f"only-in-app-{uid}")
    root = pika_connect(b.port)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        root.channel().queue_declare(f"only-in-app-{uid}", passive=True)
    assert info.value.reply_code == 404
    app.close()
    root.close()
