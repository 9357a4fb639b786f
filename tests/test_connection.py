"""The sans-IO core driven by bytes alone: handshake, channels, content, errors."""

from __future__ import annotations

from typing import Any

import pytest
from pamqp import commands
from pamqp import frame as pframe

from amqp_broker.broker import Broker
from amqp_broker.config import Config
from amqp_broker.connection import Connection, ConnState
from amqp_broker.protocol.codec import decode_method
from amqp_broker.protocol.frames import FRAME_BODY, FRAME_HEADER, FrameReader, frame


class Peer:
    """A fake client: sends pamqp-built frames, collects decoded replies."""

    def __init__(self, broker: Broker | None = None, host: str = "127.0.0.1") -> None:
        self.broker = broker or Broker(Config(data_dir=None))
        self.conn = Connection(self.broker, (host, 40000))
        self.reader = FrameReader(1 << 20)
        self.header_reply = b""

    def send(self, data: bytes) -> list[tuple[int, Any, Any]]:
        self.conn.receive(data)
        out = self.conn.take_output()
        if out.startswith(b"AMQP"):
            self.header_reply, out = out[:8], out[8:]
        replies = []
        for ftype, channel, payload in self.reader.feed(out):
            if ftype == 1:
                replies.append((channel, *decode_method(payload)))
            else:
                replies.append((channel, ftype, payload))
        return replies

    def method(self, channel: int, method: Any) -> list[tuple[int, Any, Any]]:
        return self.send(pframe.marshal(method, channel))

    def handshake(self, user: str = "guest", password: str = "guest", vhost: str = "/") -> list:
        replies = self.send(b"AMQP\x00\x00\x09\x01")
        assert replies[0][1] == (10, 10)
        caps = {"capabilities": {"authentication_failure_close": True,
                                 "consumer_cancel_notify": True}}
        replies = self.method(0, commands.Connection.StartOk(
            client_properties=caps, mechanism="PLAIN",
            response=f"\0{user}\0{password}", locale="en_US"))
        if replies[0][1] != (10, 30):
            return replies
        self.method(0, commands.Connection.TuneOk(channel_max=100, frame_max=131072,
                                                  heartbeat=0))
        return self.method(0, commands.Connection.Open(virtual_host=vhost))

    def publish(self, channel: int, exchange: str, key: str, body: bytes,
                props: commands.Basic.Properties | None = None, **kw: Any) -> list:
        props = props or commands.Basic.Properties()
        data = pframe.marshal(commands.Basic.Publish(exchange=exchange, routing_key=key, **kw),
                              channel)
        data += frame(FRAME_HEADER, channel, encode_header(len(body), props))
        if body:
            data += frame(FRAME_BODY, channel, body)
        return self.send(data)


def encode_header(size: int, props: commands.Basic.Properties) -> bytes:
    import struct
    return struct.pack(">HHQ", 60, 0, size) + props.marshal()


def keys(replies: list) -> list:
    return [r[1] for r in replies]


def test_wrong_protocol_header_gets_ours_back_and_closes() -> None:
    peer = Peer()
    peer.send(b"HTTP/1.1")
    assert peer.header_reply == b"AMQP\x00\x00\x09\x01"
    assert peer.conn.state is ConnState.CLOSED


def test_handshake_reaches_open_and_advertises_capabilities() -> None:
    peer = Peer()
    replies = peer.send(b"AMQP\x00\x00\x09\x01")
    caps = replies[0][2]["server_properties"]["capabilities"]
    for name in ("publisher_confirms", "exchange_exchange_bindings", "basic.nack",
                 "consumer_cancel_notify", "connection.blocked", "consumer_priorities",
                 "authentication_failure_close", "per_consumer_qos", "direct_reply_to"):
        assert caps[name] is True
    assert set(replies[0][2]["mechanisms"].split()) == {b"PLAIN", b"AMQPLAIN"}
    peer = Peer()
    assert keys(peer.handshake()) == [(10, 41)]
    assert peer.conn.state is ConnState.OPEN


def test_bad_credentials_are_access_refused() -> None:
    peer = Peer()
    replies = peer.handshake(password="wrong")
    assert replies[0][1] == (10, 50)
    assert replies[0][2]["reply_code"] == 403


def test_guest_only_from_loopback() -> None:
    peer = Peer(host="10.1.2.3")
    replies = peer.handshake()
    assert replies[0][2]["reply_code"] == 403
    assert Peer(host="::1").handshake()[0][1] == (10, 41)


def test_unknown_vhost_is_not_allowed() -> None:
    replies = Peer().handshake(vhost="nope")
    assert replies[0][1] == (10, 50)
    assert replies[0][2]["reply_code"] == 530


def test_method_on_unopened_channel_is_channel_error() -> None:
    peer = Peer()
    peer.handshake()
    replies = peer.method(3, commands.Queue.Declare(queue="q"))
    assert replies[0][1] == (10, 50)
    assert replies[0][2]["reply_code"] == 504


def test_channel_error_closes_channel_then_only_close_ok_counts() -> None:
    peer = Peer()
    peer.handshake()
    peer.method(1, commands.Channel.Open())
    replies = peer.method(1, commands.Queue.Declare(queue="missing", passive=True))
    assert replies[0][1] == (20, 40)
    assert replies[0][2]["reply_code"] == 404
    assert (replies[0][2]["class_id"], replies[0][2]["method_id"]) == (50, 10)
    # ignored while closing
    assert peer.method(1, commands.Queue.Declare(queue="x")) == []
    assert peer.method(1, commands.Channel.CloseOk()) == []
    assert keys(peer.method(1, commands.Channel.Open())) == [(20, 11)]


def test_publish_get_ack_round_trip_and_unknown_tag() -> None:
    peer = Peer()
    peer.handshake()
    peer.method(1, commands.Channel.Open())
    peer.method(1, commands.Queue.Declare(queue="q1"))
    assert peer.publish(1, "", "q1", b"hello") == []
    replies = peer.method(1, commands.Basic.Get(queue="q1"))
    assert replies[0][1] == (60, 71)
    assert replies[0][2]["delivery_tag"] == 1 and replies[0][2]["message_count"] == 0
    assert replies[2][2] == b"hello"
    assert peer.method(1, commands.Basic.Ack(delivery_tag=1)) == []
    replies = peer.method(1, commands.Basic.Ack(delivery_tag=1))
    assert replies[0][2]["reply_code"] == 406


def test_content_body_without_publish_is_unexpected_frame() -> None:
    peer = Peer()
    peer.handshake()
    peer.method(1, commands.Channel.Open())
    replies = peer.send(frame(FRAME_BODY, 1, b"stray"))
    assert replies[0][1] == (10, 50)
    assert replies[0][2]["reply_code"] == 505


def test_method_between_publish_and_header_is_unexpected_frame() -> None:
    peer = Peer()
    peer.handshake()
    peer.method(1, commands.Channel.Open())
    peer.method(1, commands.Basic.Publish(exchange="", routing_key="q"))
    replies = peer.method(1, commands.Queue.Declare(queue="q"))
    assert replies[0][2]["reply_code"] == 505


def test_immediate_is_not_implemented() -> None:
    peer = Peer()
    peer.handshake()
    peer.method(1, commands.Channel.Open())
    replies = peer.publish(1, "", "q", b"x", immediate=True)
    assert replies[0][1] == (10, 50)
    assert replies[0][2]["reply_code"] == 540


def test_mandatory_unroutable_is_returned() -> None:
    peer = Peer()
    peer.handshake()
    peer.method(1, commands.Channel.Open())
    replies = peer.publish(1, "amq.direct", "nowhere", b"lost?", mandatory=True)
    assert replies[0][1] == (60, 50)
    assert replies[0][2]["reply_code"] == 312
    assert replies[2][2] == b"lost?"


def test_body_split_across_frames_and_bytes() -> None:
    peer = Peer()
    peer.handshake()
    peer.method(1, commands.Channel.Open())
    peer.method(1, commands.Queue.Declare(queue="big"))
    body = bytes(range(256)) * 1000
    data = pframe.marshal(commands.Basic.Publish(exchange="", routing_key="big"), 1)
    data += frame(FRAME_HEADER, 1, encode_header(len(body), commands.Basic.Properties()))
    for i in range(0, len(body), 50000):
        data += frame(FRAME_BODY, 1, body[i:i + 50000])
    for i in range(0, len(data), 777):
        assert peer.send(data[i:i + 777]) == []
    replies = peer.method(1, commands.Basic.Get(queue="big", no_ack=True))
    assert b"".join(r[2] for r in replies[2:]) == body


def test_frame_larger_than_negotiated_is_frame_error() -> None:
    peer = Peer()
    peer.handshake()
    peer.method(1, commands.Channel.Open())
    replies = peer.send(frame(FRAME_BODY, 1, b"x" * 200000))
    assert replies[0][1] == (10, 50)
    assert replies[0][2]["reply_code"] == 501


@pytest.mark.parametrize("garbage", [b"\x01\x00\x01\x00\x00\x00\x02\x00\x00\xce",
                                     b"\x01\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x99\xce",
                                     b"\x07" * 40])
def test_garbage_after_open_closes_only_this_connection(garbage: bytes) -> None:
    broker = Broker(Config(data_dir=None))
    good, bad = Peer(broker), Peer(broker)
    good.handshake()
    bad.handshake()
    replies = bad.send(garbage)
    assert replies and replies[0][1] == (10, 50)
    good.method(1, commands.Channel.Open())
    assert keys(good.method(1, commands.Queue.Declare(queue="still-fine"))) == [(50, 11)]


def test_close_releases_exclusive_queue_and_requeues_unacked() -> None:
    broker = Broker(Config(data_dir=None))
    a = Peer(broker)
    a.handshake()
    a.method(1, commands.Channel.Open())
    a.method(1, commands.Queue.Declare(queue="excl", exclusive=True))
    a.method(1, commands.Queue.Declare(queue="shared"))
    a.publish(1, "", "shared", b"m")
    a.method(1, commands.Basic.Get(queue="shared"))
    assert broker.vhosts["/"].queues["shared"].message_count == 0
    a.method(0, commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0,
                                          method_id=0))
    assert a.conn.state is ConnState.CLOSED
    assert "excl" not in broker.vhosts["/"].queues
    q = broker.vhosts["/"].queues["shared"]
    assert q.message_count == 1 and q.redelivered


def test_second_content_header_is_unexpected_frame() -> None:
    peer = Peer()
    peer.handshake()
    peer.method(1, commands.Channel.Open())
    data = pframe.marshal(commands.Basic.Publish(exchange="", routing_key="q"), 1)
    header_frame = frame(FRAME_HEADER, 1, encode_header(10, commands.Basic.Properties()))
    replies = peer.send(data + header_frame + header_frame)
    assert replies[0][1] == (10, 50)
    assert replies[0][2]["reply_code"] == 505


def test_body_before_header_is_unexpected_frame() -> None:
    peer = Peer()
    peer.handshake()
    peer.method(1, commands.Channel.Open())
    data = pframe.marshal(commands.Basic.Publish(exchange="", routing_key="q"), 1)
    replies = peer.send(data + frame(FRAME_BODY, 1, b"early"))
    assert replies[0][2]["reply_code"] == 505
