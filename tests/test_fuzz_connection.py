"""Hostile input through the whole sans-IO core: whatever a peer sends after the
handshake, the broker answers with an AMQP error or nothing, never an internal error,
and another connection on the same broker keeps working."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pamqp import commands

from amqp_broker.broker import Broker
from amqp_broker.config import Config
from amqp_broker.protocol.codec import CLASSES, fields
from amqp_broker.protocol.frames import frame
from tests.test_connection import Peer

from inproc import encode_fields as encode_method

KEYS = sorted(CLASSES)
# what clients send once connected, where the interesting state lives
CLIENT_KEYS = [(10, 50), (10, 51), (10, 70), (20, 10), (20, 20), (20, 21), (20, 40), (20, 41),
               (40, 10), (40, 20), (40, 30), (40, 40), (50, 10), (50, 20), (50, 30), (50, 40),
               (50, 50), (60, 10), (60, 20), (60, 30), (60, 70), (60, 80), (60, 90), (60, 100),
               (60, 110), (60, 120), (85, 10), (90, 10), (90, 20), (90, 30)]


NAMES = ["q", "q2", "x", "", "amq.direct", "amq.topic", "amq.fanout", "amq.headers",
         "amq.rabbitmq.reply-to", "#", "a.*",
         # short strings need not be UTF-8: raw bytes, as surrogate escapes
         *(raw.decode("utf-8", "surrogateescape") for raw in (b"q\xff", b"\xc3", b"a.\xfe.#"))]
TABLES: list[dict] = [{}, {"x-match": "any", "a": 1}, {"x-max-length": 1},
                      {"x-dead-letter-exchange": "x"}, {"x-message-ttl": 0},
                      {"x-max-priority": 3}, {"x-overflow": "reject-publish", "x-max-length": 0},
                      {"alternate-exchange": "amq.fanout"}, {"x-expires": 1}, {"x-priority": 5}]
TYPES = ["direct", "fanout", "topic", "headers", "bogus"]


def field_value(draw: st.DrawFn, name: str, kind: str) -> object:
    if kind == "shortstr":
        if name == "exchange_type":
            return draw(st.sampled_from(TYPES))
        return draw(st.one_of(st.sampled_from(NAMES), st.text(max_size=4)))
    if kind == "bit":
        return draw(st.booleans())
    if kind in ("short", "long", "longlong", "octet", "timestamp"):
        return draw(st.one_of(st.integers(0, 6), st.integers(0, 255)))
    if kind == "table":
        return draw(st.sampled_from(TABLES))
    return b""


def publish(draw: st.DrawFn, channel: int) -> bytes:
    body = draw(st.binary(max_size=20))
    props = draw(st.sampled_from([
        commands.Basic.Properties(),
        commands.Basic.Properties(delivery_mode=2),
        commands.Basic.Properties(expiration="0", priority=2),
        commands.Basic.Properties(reply_to="amq.rabbitmq.reply-to"),
        commands.Basic.Properties(headers={"a": 1}, user_id="guest")]))
    method = encode_method((60, 40), exchange=draw(st.sampled_from(NAMES)),
                           routing_key=draw(st.sampled_from(NAMES)),
                           mandatory=draw(st.booleans()))
    head = struct.pack(">HHQ", 60, 0, len(body)) + props.marshal()
    out = frame(1, channel, method) + frame(2, channel, head)
    return out + (frame(3, channel, body) if body else b"")


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["method"] * 6 + ["publish"] * 3 +
                                ["mangled", "header", "body", "raw"]))
    channel = draw(st.sampled_from([0] + [1] * 12 + [2]))
    if kind == "publish":
        return publish(draw, channel)
    if kind == "method":
        key = draw(st.sampled_from(CLIENT_KEYS))
        values = {name: field_value(draw, name, ftype) for name, ftype in fields(CLASSES[key])}
        return frame(1, channel, encode_method(key, **values))
    if kind == "mangled":
        key = draw(st.sampled_from(KEYS))
        return frame(1, channel, struct.pack(">HH", *key) + draw(st.binary(max_size=30)))
    if kind == "header":
        size = draw(st.integers(0, 40))
        return frame(2, channel, struct.pack(">HHQ", 60, 0, size) + draw(st.binary(max_size=16)))
    if kind == "body":
        return frame(3, channel, draw(st.binary(max_size=40)))
    return draw(st.binary(max_size=30))


def fresh_peer(broker: Broker) -> Peer:
    peer = Peer(broker)
    peer.handshake()
    peer.method(1, commands.Channel.Open())
    return peer


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames(), min_size=1, max_size=30))
def test_random_frames_never_cause_internal_errors(sequence: list[bytes]) -> None:
    broker = Broker(Config(data_dir=None))
    good = Peer(broker)
    good.handshake()
    bad = fresh_peer(broker)
    for data in sequence:
        for reply in bad.send(data):
            if reply[1] in ((10, 50), (20, 40)):
                assert reply[2]["reply_code"] != 541, reply
            if reply[1] == (20, 40):  # keep exploring: acknowledge and reopen the channel
                bad.method(reply[0], commands.Channel.CloseOk())
                bad.method(reply[0], commands.Channel.Open())
        if bad.conn.state.value in ("closing", "closed"):
            bad = fresh_peer(broker)
    check_accounting(broker)
    good.method(1, commands.Channel.Open())
    replies = good.method(1, commands.Queue.Declare(queue="fuzz-ok"))
    assert [r[1] for r in replies] == [(50, 11)]
    bad.method(0, commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0,
                                            method_id=0))
    for q in broker.queues():  # every delivery went back or was settled
        assert q.unacked == 0, q.name


def check_accounting(broker: Broker) -> None:
    """Counters that settlement and requeue maintain must agree with the contents."""
    for q in broker.queues():
        assert q.unacked >= 0 and q.ready_bytes >= 0, q.name
        assert q.ready_bytes == sum(m.body_size for m in q.ready), q.name
        assert not q.deleted
        for c in q.consumers:
            assert c.unacked >= 0 and c.queue is q
    for conn in broker.connections:
        for ch in conn.channels.values():
            assert ch.unacked_count == len(ch.unacked) or ch.tx_settles, ch.number
