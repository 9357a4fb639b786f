"""RabbitMQ parity: replies, codes and texts checked against the reference RabbitMQ 3.10.

`AMQP_TEST_PORT=5673 python -m pytest tests/test_parity.py` runs the tests that need
no private broker against the reference, to check what they expect.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pika.exceptions as pex
import pytest
from pamqp import commands
from pamqp.header import ContentHeader

from amqp_broker.protocol.errors import FrameError
from amqp_broker.protocol.frames import FRAME_BODY, FrameReader, frame
from conformance.childproc import stop_process

from helpers import (
    PROTOCOL_HEADER,
    BrokerProcess,
    RawClient,
    method_payload,
    pika_connect,
    raw_frame,
)

LOCKED = ("RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{}' in vhost '/'. "
          "It could be originally declared on another connection or the exclusive property "
          "value does not match that of the original declaration.")
DEFAULT_EXCHANGE = "ACCESS_REFUSED - operation not permitted on the default exchange"


@pytest.fixture
def conn(broker: BrokerProcess) -> Iterator[pika.BlockingConnection]:
    c = pika_connect(broker.port)
    try:
        yield c
    finally:
        if c.is_open:
            c.close()


def channel_error(conn: pika.BlockingConnection, call: Callable[[Any], Any]) -> tuple[int, str]:
    """Run call(channel) on a new channel; the (code, text) of the channel.close it causes."""
    ch = conn.channel()
    with pytest.raises(pex.ChannelClosedByBroker) as info:
        call(ch)
    return info.value.reply_code, info.value.reply_text


def ok(conn: pika.BlockingConnection, call: Callable[[Any], Any]) -> Any:
    ch = conn.channel()
    result = call(ch)
    ch.close()
    return result


# --- 9. exchange.declare of the default exchange ---------------------------------------

@pytest.mark.parametrize("passive", [True, False])
def test_declare_default_exchange_is_403(conn: pika.BlockingConnection, passive: bool) -> None:
    assert channel_error(conn, lambda ch: ch.exchange_declare("", "direct", passive=passive)) \
        == (403, DEFAULT_EXCHANGE)


def test_declare_default_exchange_unknown_type_is_503_first(
        conn: pika.BlockingConnection) -> None:
    with pytest.raises(pex.ConnectionClosedByBroker) as info:
        conn.channel().exchange_declare("", "no-such-type")
    assert (info.value.reply_code, info.value.reply_text) == (
        503, "COMMAND_INVALID - unknown exchange type 'no-such-type'")


def test_redeclare_amq_exchange_is_checked_for_equivalence(
        conn: pika.BlockingConnection) -> None:
    ok(conn, lambda ch: ch.exchange_declare("amq.direct", "direct", durable=True))
    assert channel_error(conn, lambda ch: ch.exchange_declare("amq.direct", "fanout",
                                                              durable=True)) == (
        406, "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'amq.direct' in "
             "vhost '/': received 'fanout' but current is 'direct'")


# --- 7. queue.unbind and exchange.unbind are idempotent -------------------------------

def test_queue_unbind_missing_binding_queue_or_exchange_is_ok(
        conn: pika.BlockingConnection, uid: str) -> None:
    q, x = f"unbind-q-{uid}", f"unbind-x-{uid}"
    ok(conn, lambda ch: (ch.queue_declare(q, auto_delete=True),
                         ch.exchange_declare(x, "direct", auto_delete=True)))
    try:
        for queue, exchange in ((q, x), (f"gone-{uid}", x), (q, f"gone-{uid}"),
                                (f"gone-{uid}", f"gone-{uid}")):
            reply = ok(conn, lambda ch, queue=queue, exchange=exchange:
                       ch.queue_unbind(queue, exchange, "k"))
            assert isinstance(reply.method, pika.spec.Queue.UnbindOk), (queue, exchange)
        # a binding that existed goes, and a second unbind is still ok
        ok(conn, lambda ch: ch.queue_bind(q, x, "k"))
        for _ in range(2):
            ok(conn, lambda ch: ch.queue_unbind(q, x, "k"))
    finally:
        ok(conn, lambda ch: (ch.queue_delete(q), ch.exchange_delete(x)))


def test_exchange_unbind_missing_binding_source_or_destination_is_ok(
        conn: pika.BlockingConnection, uid: str) -> None:
    x = f"unbind-x-{uid}"
    ok(conn, lambda ch: ch.exchange_declare(x, "direct", auto_delete=True))
    try:
        for dest, source in ((x, "amq.direct"), (f"gone-{uid}", x), (x, f"gone-{uid}"),
                             (f"gone-{uid}", f"gone2-{uid}")):
            reply = ok(conn, lambda ch, dest=dest, source=source:
                       ch.exchange_unbind(dest, source, "k"))
            assert isinstance(reply.method, pika.spec.Exchange.UnbindOk), (dest, source)
    finally:
        ok(conn, lambda ch: ch.exchange_delete(x))


def test_unbind_default_exchange_is_403_even_for_missing_queue(
        conn: pika.BlockingConnection, uid: str) -> None:
    assert channel_error(conn, lambda ch: ch.queue_unbind(f"gone-{uid}", "", "k")) \
        == (403, DEFAULT_EXCHANGE)
    assert channel_error(conn, lambda ch: ch.exchange_unbind(f"gone-{uid}", "", "k")) \
        == (403, DEFAULT_EXCHANGE)
    assert channel_error(conn, lambda ch: ch.exchange_unbind("", f"gone-{uid}", "k")) \
        == (403, DEFAULT_EXCHANGE)


def test_unbind_other_connections_exclusive_queue_locked_only_if_bound(
        broker: BrokerProcess, conn: pika.BlockingConnection, uid: str) -> None:
    q, x = f"excl-{uid}", f"excl-x-{uid}"
    owner = pika_connect(broker.port)
    try:
        och = owner.channel()
        och.queue_declare(q, exclusive=True)
        och.exchange_declare(x, "direct", auto_delete=True)
        och.queue_bind(q, x, "bound")
        ok(conn, lambda ch: ch.queue_unbind(q, x, "not-bound"))
        ok(conn, lambda ch: ch.queue_unbind(q, f"gone-{uid}", "bound"))
        assert channel_error(conn, lambda ch: ch.queue_unbind(q, x, "bound")) \
            == (405, LOCKED.format(q))
        # the binding is still there
        och.basic_publish(x, "bound", b"still bound")
        method, _props, body = och.basic_get(q, auto_ack=True)
        assert body == b"still bound"
    finally:
        owner.close()


def test_unbind_without_a_declared_queue_is_404(conn: pika.BlockingConnection) -> None:
    assert channel_error(conn, lambda ch: ch.queue_unbind("", "amq.direct", "k")) \
        == (404, "NOT_FOUND - no previously declared queue")


# --- 8. a different exclusive flag is 405 RESOURCE_LOCKED ------------------------------

def test_redeclare_other_connections_exclusive_queue_is_405(
        broker: BrokerProcess, conn: pika.BlockingConnection, uid: str) -> None:
    q = f"excl-redeclare-{uid}"
    owner = pika_connect(broker.port)
    try:
        owner.channel().queue_declare(q, exclusive=True)
        for exclusive in (True, False):
            assert channel_error(conn, lambda ch, e=exclusive: ch.queue_declare(q, exclusive=e)) \
                == (405, LOCKED.format(q))
        assert channel_error(conn, lambda ch: ch.queue_declare(q, passive=True)) \
            == (405, LOCKED.format(q))
    finally:
        owner.close()


def test_redeclare_exclusive_queue_non_exclusive_on_same_connection_is_405(
        conn: pika.BlockingConnection, uid: str) -> None:
    q = f"excl-same-{uid}"
    ok(conn, lambda ch: ch.queue_declare(q, exclusive=True))
    assert channel_error(conn, lambda ch: ch.queue_declare(q, exclusive=False)) \
        == (405, LOCKED.format(q))
    assert channel_error(conn, lambda ch: ch.queue_declare(q, exclusive=False, durable=True)) \
        == (405, LOCKED.format(q))
    # exclusive again is fine, and the durable flag of an exclusive queue is not compared
    ok(conn, lambda ch: ch.queue_declare(q, exclusive=True))
    ok(conn, lambda ch: ch.queue_declare(q, exclusive=True, durable=True))


def test_redeclare_shared_queue_exclusive_is_405(conn: pika.BlockingConnection,
                                                 uid: str) -> None:
    q = f"shared-{uid}"
    ok(conn, lambda ch: ch.queue_declare(q, auto_delete=True))
    try:
        assert channel_error(conn, lambda ch: ch.queue_declare(q, exclusive=True,
                                                               auto_delete=True)) \
            == (405, LOCKED.format(q))
    finally:
        ok(conn, lambda ch: ch.queue_delete(q))


# --- 10. channel_max counts open channels, not channel numbers -------------------------

def raw_handshake(raw: RawClient, channel_max: int) -> None:
    raw.send_raw(PROTOCOL_HEADER)
    raw.read_until((commands.Connection.Start,))
    raw.send(commands.Connection.StartOk(
        client_properties={"capabilities": {"authentication_failure_close": True}},
        mechanism="PLAIN", response="\x00guest\x00guest", locale="en_US"))
    _, tune = raw.read_until((commands.Connection.Tune,))
    raw.send(commands.Connection.TuneOk(channel_max=channel_max, frame_max=tune.frame_max,
                                        heartbeat=0))
    raw.send(commands.Connection.Open(virtual_host="/"))
    raw.read_until((commands.Connection.OpenOk,))


def channel_limit_text(opened: int, channel_max: int) -> str:
    return (f"NOT_ALLOWED - number of channels opened ({opened}) has reached the negotiated "
            f"channel_max ({channel_max})")


def test_channel_max_limits_open_channels_not_numbers(broker: BrokerProcess) -> None:
    with RawClient(broker.port) as raw:
        raw_handshake(raw, channel_max=2)
        raw.open_channel(65535)
        raw.open_channel(3)
        raw.send(commands.Channel.Close(reply_code=200, reply_text="", class_id=0,
                                        method_id=0), 3)
        raw.read_until((commands.Channel.CloseOk,))
        raw.open_channel(7)  # two open again: 65535 and 7
        raw.send(commands.Channel.Open(), 9)
        channel, close = raw.read_until((commands.Connection.Close,))
        assert (channel, close.reply_code, close.reply_text, close.class_id,
                close.method_id) == (0, 530, channel_limit_text(2, 2), 0, 0)
        raw.send(commands.Connection.CloseOk())
        assert raw.wait_closed(5)


def test_channel_closed_by_the_broker_counts_until_close_ok(broker: BrokerProcess) -> None:
    with RawClient(broker.port) as raw:
        raw_handshake(raw, channel_max=2)
        raw.open_channel(1)
        raw.send(commands.Queue.Declare(queue="amq.reserved"), 1)  # 403: channel 1 closing
        _, close = raw.read_until((commands.Channel.Close,))
        assert close.reply_code == 403
        raw.open_channel(2)
        # any method on a new channel past the limit is 530 (before the 504 for a
        # method other than channel.open)
        raw.send(commands.Queue.Declare(queue="", exclusive=True), 3)
        _, close = raw.read_until((commands.Connection.Close,))
        assert (close.reply_code, close.reply_text) == (530, channel_limit_text(2, 2))


def test_method_before_channel_open_is_504_expected_channel_open(
        broker: BrokerProcess) -> None:
    with RawClient(broker.port) as raw:
        raw.handshake()
        raw.send(commands.Queue.Declare(queue="", exclusive=True), 5)
        close = raw.expect_connection_close()
        assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
            504, "CHANNEL_ERROR - expected 'channel.open'", 50, 10)


# --- 11. frame size: a payload of up to frame_max bytes is accepted, as RabbitMQ -------

def test_frame_reader_accepts_payload_up_to_frame_max() -> None:
    reader = FrameReader(4096)
    assert list(reader.feed(frame(FRAME_BODY, 1, b"x" * 4096))) == [(FRAME_BODY, 1, b"x" * 4096)]
    with pytest.raises(FrameError) as info:
        list(FrameReader(4096).feed(frame(FRAME_BODY, 1, b"x" * 4097)[:7]))
    assert (info.value.reply_code, info.value.reply_text) == (
        501, "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,4097,4088}")


def publish_with_body_frame(raw: RawClient, queue: str, size: int, whole: bool = True) -> None:
    data = raw_frame(1, 1, method_payload(commands.Basic.Publish(exchange="", routing_key=queue)))
    data += raw_frame(2, 1, ContentHeader(0, size, commands.Basic.Properties()).marshal())
    body = raw_frame(3, 1, b"x" * size)
    # without the payload the broker has no unread bytes when it closes (no RST)
    raw.send_raw(data + (body if whole else body[:7]))


def test_body_frame_of_frame_max_bytes_is_accepted(broker: BrokerProcess) -> None:
    with RawClient(broker.port) as raw:
        raw.handshake(frame_max=4096)
        raw.open_channel(1)
        raw.send(commands.Queue.Declare(queue="", exclusive=True), 1)
        _, declared = raw.read_until((commands.Queue.DeclareOk,))
        raw.send(commands.Confirm.Select(), 1)
        raw.read_until((commands.Confirm.SelectOk,))
        for size in (4088, 4096):
            publish_with_body_frame(raw, declared.queue, size)
            raw.read_until((commands.Basic.Ack,))
        raw.send(commands.Queue.Declare(queue=declared.queue, passive=True), 1)
        _, ok_ = raw.read_until((commands.Queue.DeclareOk,))
        assert ok_.message_count == 2


def test_body_frame_one_byte_over_frame_max_is_501(broker: BrokerProcess) -> None:
    with RawClient(broker.port) as raw:
        raw.handshake(frame_max=4096)
        raw.open_channel(1)
        publish_with_body_frame(raw, "nowhere", 4097, whole=False)
        close = raw.expect_connection_close()
        assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
            501, "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,4097,4088}", 0, 0)
        assert raw.wait_closed(5)


# --- 13. the default listener is dual-stack, as RabbitMQ's -----------------------------

def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _port_free_on_both() -> int:
    with socket.socket(socket.AF_INET6) as s:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", 0))
        return int(s.getsockname()[1])


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _amqp_open(host: str, port: int) -> bool:
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        host=host, port=port, credentials=pika.PlainCredentials("guest", "guest"),
        connection_attempts=1, socket_timeout=5))
    try:
        ch = conn.channel()
        ch.queue_declare("", exclusive=True)
        return True
    finally:
        conn.close()


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this host")
@pytest.mark.skipif(bool(os.environ.get("AMQP_TEST_PORT")), reason="needs a private broker")
def test_default_listener_is_dual_stack(tmp_path: Path) -> None:
    port = _port_free_on_both()
    root = Path(__file__).resolve().parent.parent
    with open(tmp_path / "broker.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "amqp_broker", "--port", str(port), "--data-dir", "none",
             "--metrics-port", "0", "--management-port", "0", "--log-level", "warning"],
            cwd=root, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 15
        while not (_reachable("127.0.0.1", port) and _reachable("::1", port)):
            assert proc.poll() is None, (tmp_path / "broker.log").read_text()
            assert time.monotonic() < deadline, "broker not reachable on 127.0.0.1 and ::1"
            time.sleep(0.05)
        assert _amqp_open("127.0.0.1", port)
        assert _amqp_open("::1", port)  # guest logs in from IPv6 loopback too
    finally:
        stop_process(proc, 5)


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this host")
def test_host_option_narrows_the_listener(broker: BrokerProcess) -> None:
    if os.environ.get("AMQP_TEST_PORT"):
        pytest.skip("the reference listens where its configuration says")
    assert _reachable("127.0.0.1", broker.port)  # the fixture passes --host 127.0.0.1
    assert not _reachable("::1", broker.port)


# --- 14. queue types and arguments: nothing unimplemented is silently accepted ---------

QUORUM = {"x-queue-type": "quorum"}
ACCEPTED = [
    ({}, {"x-queue-type": "classic"}),
    ({"durable": True}, QUORUM),
    ({"durable": True}, {**QUORUM, "x-quorum-initial-group-size": 3,
                         "x-queue-leader-locator": "client-local",
                         "x-max-in-memory-length": 10, "x-dead-letter-strategy": "at-most-once",
                         "x-overflow": "reject-publish", "x-single-active-consumer": True,
                         "x-message-ttl": 1000, "x-expires": 100000}),
    ({}, {"x-queue-mode": "lazy", "x-queue-version": 2, "x-queue-master-locator": "min-masters"}),
    ({}, {"x-foo": 1, "x-bar": "anything"}),  # not RabbitMQ's: ignored, as there
]


@pytest.mark.parametrize(("props", "arguments"), ACCEPTED)
def test_queue_arguments_accepted(conn: pika.BlockingConnection, uid: str,
                                  props: dict[str, Any], arguments: dict[str, Any]) -> None:
    q = f"args-ok-{uid}"
    ok(conn, lambda ch: ch.queue_declare(q, arguments=arguments, **props))
    ok(conn, lambda ch: ch.queue_declare(q, arguments=arguments, **props))  # equivalent
    ok(conn, lambda ch: ch.queue_delete(q))


def invalid_arg(name: str, reason: str) -> str:
    """The text with {q} for the queue name (braces of the reason kept)."""
    reason = reason.replace("{", "{{").replace("}", "}}")
    return f"PRECONDITION_FAILED - invalid arg '{name}' for queue '{{q}}' in vhost '/': {reason}"


def wrong_type(name: str, module: str) -> str:
    return (f"PRECONDITION_FAILED - invalid arg '{name}' for queue '{{q}}' in vhost '/' "
            f"of queue type {module}")


def invalid_property(prop: str) -> str:
    return f"PRECONDITION_FAILED - invalid property '{prop}' for queue '{{q}}' in vhost '/'"


REFUSED = [  # (queue properties, arguments, RabbitMQ's reply text)
    ({}, {"x-queue-type": "bogus"},
     invalid_arg("x-queue-type", "\"unsupported queue type 'bogus'\"")),
    ({"durable": True}, {"x-queue-type": "QUORUM"},
     invalid_arg("x-queue-type", "\"unsupported queue type 'QUORUM'\"")),
    ({}, {"x-queue-type": 5}, invalid_arg("x-queue-type", "{unacceptable_type,signedint}")),
    ({}, QUORUM, invalid_property("non-durable")),
    ({"durable": True, "exclusive": True}, QUORUM, invalid_property("exclusive-owner")),
    ({"durable": True, "auto_delete": True, "exclusive": True}, QUORUM,
     invalid_property("auto-delete")),
    ({"durable": True}, {**QUORUM, "x-max-priority": 3},
     wrong_type("x-max-priority", "rabbit_quorum_queue")),
    ({"durable": True}, {**QUORUM, "x-queue-mode": "lazy", "x-max-priority": 3},
     wrong_type("x-queue-mode", "rabbit_quorum_queue")),
    ({"durable": True}, {**QUORUM, "x-max-age": "1D"},
     wrong_type("x-max-age", "rabbit_quorum_queue")),
    ({"durable": True}, {**QUORUM, "x-overflow": "bogus"},
     invalid_arg("x-overflow", "invalid_overflow")),
    ({"durable": True}, {**QUORUM, "x-quorum-initial-group-size": 0},
     invalid_arg("x-quorum-initial-group-size", "{value_zero,0}")),
    ({"durable": True}, {**QUORUM, "x-queue-leader-locator": "bogus"},
     invalid_arg("x-queue-leader-locator", "invalid_queue_locator_arg")),
    ({"durable": True}, {**QUORUM, "x-dead-letter-strategy": "bogus"},
     invalid_arg("x-dead-letter-strategy", "invalid_dlx_strategy")),
    ({}, {"x-quorum-initial-group-size": 3},
     wrong_type("x-quorum-initial-group-size", "rabbit_classic_queue")),
    ({}, {"x-max-age": "1D"}, wrong_type("x-max-age", "rabbit_classic_queue")),
    ({}, {"x-stream-max-segment-size-bytes": 100},
     wrong_type("x-stream-max-segment-size-bytes", "rabbit_classic_queue")),
    ({}, {"x-queue-leader-locator": "balanced"},
     wrong_type("x-queue-leader-locator", "rabbit_classic_queue")),
    ({}, {"x-dead-letter-strategy": "at-most-once"},
     wrong_type("x-dead-letter-strategy", "rabbit_classic_queue")),
    ({}, {"x-max-in-memory-length": 10},
     wrong_type("x-max-in-memory-length", "rabbit_classic_queue")),
    ({}, {"x-queue-mode": "bogus"}, invalid_arg("x-queue-mode",
                                                "\"unsupported queue mode 'bogus'\"")),
    ({}, {"x-queue-version": 3}, invalid_arg("x-queue-version",
                                             "\"unsupported queue version '3'\"")),
    ({}, {"x-max-length": "abc"}, invalid_arg("x-max-length",
                                              "\"expected integer, got longstr\"")),
    ({}, {"x-max-priority": 256}, invalid_arg("x-max-priority", "{max_value_exceeded,256}")),
    ({}, {"x-dead-letter-routing-key": "k"},
     invalid_arg("x-dead-letter-routing-key", "routing_key_but_no_dlx_defined")),
    ({}, {"x-dead-letter-exchange": 5},
     "PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in "
     "queue '{q}' in vhost '/'"),
    ({"durable": True, "exclusive": True}, {"x-queue-type": "stream"},
     invalid_property("exclusive-owner")),
]


@pytest.mark.parametrize(("props", "arguments", "text"), REFUSED)
def test_queue_arguments_refused_as_rabbitmq(conn: pika.BlockingConnection, uid: str,
                                             props: dict[str, Any], arguments: dict[str, Any],
                                             text: str) -> None:
    q = f"args-refused-{uid}"
    assert channel_error(conn, lambda ch: ch.queue_declare(q, arguments=arguments, **props)) \
        == (406, text.format(q=q))


@pytest.mark.parametrize("queue_type", ["quorum", "stream"])
def test_server_named_quorum_or_stream_queue_is_406(conn: pika.BlockingConnection,
                                                    queue_type: str) -> None:
    assert channel_error(conn, lambda ch: ch.queue_declare(
        "", durable=True, arguments={"x-queue-type": queue_type})) == (
        406, f"PRECONDITION_FAILED - Cannot declare a server-named queue for type "
             f"rabbit_{queue_type}_queue")


NOT_IMPLEMENTED = [  # RabbitMQ accepts these; this broker does not implement them
    # RabbitMQ checks no x-delivery-limit value; here it is a non-negative integer (and a
    # classic queue takes it too, as in LavinMQ, where RabbitMQ refuses it)
    ({**QUORUM, "x-delivery-limit": "abc"}, "x-delivery-limit",
     '"expected integer, got longstr"'),
    ({**QUORUM, "x-delivery-limit": -1}, "x-delivery-limit", "{value_negative,-1}"),
    ({**QUORUM, "x-dead-letter-exchange": "dlx", "x-dead-letter-strategy": "at-least-once",
      "x-overflow": "reject-publish"}, "x-dead-letter-strategy",
     "at-least-once dead-lettering is not implemented by this broker"),
]


@pytest.mark.skipif(bool(os.environ.get("AMQP_TEST_PORT")),
                    reason="RabbitMQ implements these")
@pytest.mark.parametrize(("arguments", "name", "reason"), NOT_IMPLEMENTED)
def test_unimplemented_queue_arguments_are_refused(conn: pika.BlockingConnection, uid: str,
                                                   arguments: dict[str, Any], name: str,
                                                   reason: str) -> None:
    q = f"args-unimplemented-{uid}"
    assert channel_error(conn, lambda ch: ch.queue_declare(q, durable=True,
                                                           arguments=arguments)) \
        == (406, invalid_arg(name, reason).format(q=q))


def test_redeclare_compares_the_arguments_of_the_queue_type(conn: pika.BlockingConnection,
                                                            uid: str) -> None:
    q, qq = f"equiv-{uid}", f"equiv-quorum-{uid}"
    ok(conn, lambda ch: ch.queue_declare(q, auto_delete=True))
    ok(conn, lambda ch: ch.queue_declare(qq, durable=True, arguments=QUORUM))
    inequivalent = "PRECONDITION_FAILED - inequivalent arg '{}' for queue '{}' in vhost '/': "
    try:
        for arguments in ({"x-queue-type": "classic"}, {"x-foo": 1},
                          {"x-max-in-memory-length": 3}):
            ok(conn, lambda ch, a=arguments: ch.queue_declare(q, auto_delete=True, arguments=a))
        assert channel_error(conn, lambda ch: ch.queue_declare(
            q, auto_delete=True, arguments={"x-queue-mode": "lazy"})) == (
            406, inequivalent.format("x-queue-mode", q)
            + "received the value 'lazy' of type 'longstr' but current is none")
        assert channel_error(conn, lambda ch: ch.queue_declare(
            q, auto_delete=True, arguments=QUORUM)) == (
            406, inequivalent.format("x-queue-type", q)
            + "received the value 'quorum' of type 'longstr' but current is none")
        ok(conn, lambda ch: ch.queue_declare(qq, durable=True,
                                             arguments={**QUORUM, "x-max-priority": 2}))
        assert channel_error(conn, lambda ch: ch.queue_declare(qq, durable=True)) == (
            406, inequivalent.format("x-queue-type", qq)
            + "received none but current is the value 'quorum' of type 'longstr'")
        assert channel_error(conn, lambda ch: ch.queue_declare(
            qq, durable=True, arguments={"x-queue-type": "classic"})) == (
            406, inequivalent.format("x-queue-type", qq)
            + "received 'classic' but current is 'quorum'")
        assert channel_error(conn, lambda ch: ch.queue_declare(
            qq, durable=True, arguments={**QUORUM, "x-max-length": 5})) == (
            406, inequivalent.format("x-max-length", qq)
            + "received the value '5' of type 'signedint' but current is none")
    finally:
        ok(conn, lambda ch: (ch.queue_delete(q), ch.queue_delete(qq)))


def test_recovered_definitions_are_not_refused_again() -> None:
    """A durable queue stored before these checks existed still comes back at start-up
    (recovery declares without a connection)."""
    from amqp_broker.broker import Broker
    from amqp_broker.config import Config
    vhost = Broker(Config(data_dir=None)).vhosts["/"]
    q, created = vhost.declare_queue("old", False, True, False, False,
                                     {"x-delivery-limit": 5, "x-queue-mode": "bogus"}, None)
    assert created and q.durable
