"""Stream queues (amqp_broker/stream.py) driven by pika, as RabbitMQ 3.10 answers them.

The expected codes and texts were recorded against the reference RabbitMQ 3.10.8
(AMQP_TEST_PORT=5673 runs the tests that use the shared `broker` fixture against it).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pika
import pytest
from pamqp import commands
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker

from amqp_broker.definitions import read_data_dir
from amqp_broker.protocol import fast
from amqp_broker.storage import StoreError
from amqp_broker.stream import with_offset

from helpers import BrokerProcess, free_port, pika_connect
from inproc import Client, ManualSyncStore, make_broker, of_type

STREAM = {"x-queue-type": "stream"}


@pytest.fixture
def conn(broker: BrokerProcess) -> Iterator[pika.BlockingConnection]:
    c = pika_connect(broker.port)
    yield c
    if c.is_open:
        c.close()


@pytest.fixture
def stream(broker: BrokerProcess, uid: str) -> Iterator[str]:
    """A fresh stream, deleted afterwards."""
    name = f"stream-{uid}"
    c = pika_connect(broker.port)
    c.channel().queue_declare(name, durable=True, arguments=STREAM)
    c.close()
    yield name
    c = pika_connect(broker.port)
    c.channel().queue_delete(name)
    c.close()


def error_of(port: int, fn: Callable[[Any], Any]) -> tuple[int, str]:
    """The (reply code, text) the broker closes the channel or connection with."""
    c = pika_connect(port)
    try:
        fn(c.channel())
        c.process_data_events(0.3)  # an asynchronous refusal arrives meanwhile
    except (ChannelClosedByBroker, ConnectionClosedByBroker) as exc:
        return exc.reply_code, exc.reply_text
    finally:
        if c.is_open:
            c.close()
    raise AssertionError("no error")


def publish(port: int, queue: str, bodies: list[bytes], **props: Any) -> None:
    c = pika_connect(port)
    ch = c.channel()
    ch.confirm_delivery()
    for i, body in enumerate(bodies):
        ch.basic_publish("", queue, body, pika.BasicProperties(headers={"i": i}, **props))
    c.close()


def read(port: int, queue: str, offset: Any = None, n: int = 100, prefetch: int = 100,
         seconds: float = 1.0, ack: bool = True) -> list[tuple[int, bytes, dict[str, Any]]]:
    """(x-stream-offset, body, headers) of what a consumer at offset receives."""
    c = pika_connect(port)
    ch = c.channel()
    ch.basic_qos(prefetch_count=prefetch)
    got: list[tuple[int, bytes, dict[str, Any]]] = []

    def on_message(ch_: Any, method: Any, props: Any, body: bytes) -> None:
        got.append((props.headers["x-stream-offset"], body, props.headers))
        if ack:
            ch_.basic_ack(method.delivery_tag)

    args = {} if offset is None else {"x-stream-offset": offset}
    ch.basic_consume(queue, on_message, arguments=args)
    deadline = time.monotonic() + seconds
    while len(got) < n and time.monotonic() < deadline:
        c.process_data_events(0.05)
    c.close()
    return got


def rs(queue: str) -> str:
    return f"queue '{queue}' in vhost '/'"


# --- declare ------------------------------------------------------------------------
@pytest.mark.parametrize(("flags", "arguments", "error"), [
    ({"durable": False}, {}, "invalid property 'non-durable' for {rs}"),
    ({"durable": True, "exclusive": True}, {}, "invalid property 'exclusive-owner' for {rs}"),
    ({"durable": True, "auto_delete": True}, {}, "invalid property 'auto-delete' for {rs}"),
    ({"durable": True}, {"x-message-ttl": 1000},
     "invalid arg 'x-message-ttl' for {rs} of queue type rabbit_stream_queue"),
    ({"durable": True}, {"x-max-length": 10},
     "invalid arg 'x-max-length' for {rs} of queue type rabbit_stream_queue"),
    ({"durable": True}, {"x-max-age": "7X"}, "invalid arg 'x-max-age' for {rs}: invalid_max_age"),
    ({"durable": True}, {"x-max-age": 7},
     "invalid arg 'x-max-age' for {rs}: {{unacceptable_type,signedint}}"),
    ({"durable": True}, {"x-stream-max-segment-size-bytes": "a"},
     "invalid arg 'x-stream-max-segment-size-bytes' for {rs}: \"expected integer, got longstr\""),
])
def test_declare_rules(broker: BrokerProcess, uid: str, flags: dict[str, bool],
                       arguments: dict[str, Any], error: str) -> None:
    q = f"stream-decl-{uid}"
    code, text = error_of(broker.port, lambda ch: ch.queue_declare(
        q, arguments={**STREAM, **arguments}, **flags))
    assert (code, text) == (406, "PRECONDITION_FAILED - " + error.format(rs=rs(q)))


def test_declare_with_retention_arguments_and_redeclare(broker: BrokerProcess, uid: str) -> None:
    q = f"stream-args-{uid}"
    args = {**STREAM, "x-max-age": "7D", "x-max-length-bytes": 10_000_000,
            "x-stream-max-segment-size-bytes": 1_000_000, "x-initial-cluster-size": 1}
    c = pika_connect(broker.port)
    ch = c.channel()
    ok = ch.queue_declare(q, durable=True, arguments=args).method
    assert (ok.queue, ok.message_count, ok.consumer_count) == (q, 0, 0)
    assert ch.queue_declare(q, durable=True, arguments=args).method.queue == q
    assert ch.queue_declare(q, passive=True).method.queue == q
    try:
        assert error_of(broker.port, lambda ch: ch.queue_declare(
            q, durable=True, arguments={**args, "x-max-age": "1D"})) == (
            406, f"PRECONDITION_FAILED - inequivalent arg 'x-max-age' for {rs(q)}: "
                 "received '1D' but current is '7D'")
    finally:
        ch.queue_delete(q)
        c.close()


# --- consume ------------------------------------------------------------------------
def test_offsets_first_last_next_number_timestamp_interval(broker: BrokerProcess,
                                                           stream: str) -> None:
    publish(broker.port, stream, [b"m0", b"m1", b"m2", b"m3", b"m4"], content_type="text/plain")
    first = read(broker.port, stream, "first", n=5)
    assert [(o, b) for o, b, _ in first] == [(i, b"m%d" % i) for i in range(5)]
    assert first[2][2] == {"i": 2, "x-stream-offset": 2}  # headers kept, offset added last
    assert [o for o, _, _ in read(broker.port, stream, "last", n=1)] == [4]
    assert read(broker.port, stream, "next", n=1, seconds=0.3) == []
    assert read(broker.port, stream, None, n=1, seconds=0.3) == []  # default: next
    assert [o for o, _, _ in read(broker.port, stream, 2, n=3)] == [2, 3, 4]
    assert [o for o, _, _ in read(broker.port, stream, -1, n=5)] == [0, 1, 2, 3, 4]
    assert read(broker.port, stream, 100, n=1, seconds=0.3) == []
    hour_ago = datetime.datetime.now() - datetime.timedelta(hours=1)
    assert [o for o, _, _ in read(broker.port, stream, hour_ago, n=5)] == [0, 1, 2, 3, 4]
    later = datetime.datetime.now() + datetime.timedelta(hours=1)
    assert read(broker.port, stream, later, n=1, seconds=0.3) == []
    assert [o for o, _, _ in read(broker.port, stream, "1h", n=5)] == [0, 1, 2, 3, 4]
    assert [o for o, _, _ in read(broker.port, stream, "30m", n=5)] == [0, 1, 2, 3, 4]


def test_a_next_consumer_gets_what_is_published_later(broker: BrokerProcess,
                                                      stream: str) -> None:
    publish(broker.port, stream, [b"old"])
    c = pika_connect(broker.port)
    ch = c.channel()
    ch.basic_qos(prefetch_count=10)
    got: list[tuple[bytes, Any]] = []
    ch.basic_consume(stream, lambda c_, m, p, b: got.append((b, p.headers)))
    c.process_data_events(0.2)
    ch.basic_publish("", stream, b"new", pika.BasicProperties(
        headers={"x-stream-offset": 99, "h": "v"}))
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        c.process_data_events(0.05)
    c.close()
    assert got == [(b"new", {"h": "v", "x-stream-offset": 1})]  # a publisher's value replaced


def test_the_x_stream_offset_header_is_a_long_put_last() -> None:
    """The header's wire type is 'l' (a signed 64-bit long), as RabbitMQ's; other
    properties and headers are kept, a publisher's own x-stream-offset is replaced."""
    props = fast.encode_properties(fast.Properties(
        content_type="text/plain", headers={"x-stream-offset": 99, "a": "b"}, delivery_mode=2))
    out = with_offset(props, 7)
    assert out.endswith(b"\x0fx-stream-offsetl" + (7).to_bytes(8, "big") + b"\x02")
    decoded = fast.decode_properties(out)
    assert decoded.headers == {"a": "b", "x-stream-offset": 7}
    assert (decoded.content_type, decoded.delivery_mode) == ("text/plain", 2)
    assert fast.decode_properties(with_offset(b"\x00\x00", 0)).headers == {"x-stream-offset": 0}


@pytest.mark.parametrize(("setup", "no_ack", "arguments", "expected"), [
    ("none", True, {}, (406, "PRECONDITION_FAILED - consumer prefetch count is not set for "
                             "'{rs}'")),
    ("none", False, {}, (406, "PRECONDITION_FAILED - consumer prefetch count is not set for "
                              "'{rs}'")),
    ("global", False, {}, (406, "PRECONDITION_FAILED - consumer prefetch count is not set for "
                                "'{rs}'")),
    ("qos", True, {}, (540, "NOT_IMPLEMENTED - automatic acknowledgement not supported by "
                            "stream queues {rs}")),
    ("qos", False, {"x-priority": 3}, (406, "PRECONDITION_FAILED - invalid arg 'x-priority' "
                                            "for {rs} of queue type rabbit_stream_queue")),
    ("qos", False, {"x-stream-offset": "1x"}, (
        406, "PRECONDITION_FAILED - invalid arg 'x-stream-offset' for {rs}: "
             '{{invalid_stream_offset_arg,{{longstr,<<"1x">>}}}}')),
    ("qos", False, {"x-stream-offset": "0s"}, (
        406, "PRECONDITION_FAILED - invalid arg 'x-stream-offset' for {rs}: "
             '{{invalid_stream_offset_arg,{{longstr,<<"0s">>}}}}')),
    # RabbitMQ's order: argument values, argument names, prefetch, no-ack, then its reader
    ("qos", False, {"x-priority": 3, "x-stream-offset": "1x"}, (
        406, "PRECONDITION_FAILED - invalid arg 'x-stream-offset' for {rs}: "
             '{{invalid_stream_offset_arg,{{longstr,<<"1x">>}}}}')),
    ("none", False, {"x-stream-offset": True}, (
        406, "PRECONDITION_FAILED - consumer prefetch count is not set for '{rs}'")),
    ("qos", True, {"x-stream-offset": True}, (
        540, "NOT_IMPLEMENTED - automatic acknowledgement not supported by stream queues {rs}")),
])
def test_consume_refusals(broker: BrokerProcess, stream: str, setup: str, no_ack: bool,
                          arguments: dict[str, Any], expected: tuple[int, str]) -> None:
    def consume(ch: Any) -> None:
        if setup == "global":
            ch.basic_qos(prefetch_count=10, global_qos=True)
        elif setup == "qos":
            ch.basic_qos(prefetch_count=10)
        ch.basic_consume(stream, lambda *a: None, auto_ack=no_ack, arguments=arguments)

    code, text = error_of(broker.port, consume)
    assert (code, text) == (expected[0], expected[1].format(rs=rs(stream)))


@pytest.mark.skipif(bool(os.environ.get("AMQP_TEST_PORT")),
                    reason="RabbitMQ answers 541 with no text (its reader crashes)")
@pytest.mark.parametrize("offset", ["foo", True, {"a": 1}, None])
def test_an_unusable_offset_is_541(broker: BrokerProcess, stream: str, offset: Any) -> None:
    def consume(ch: Any) -> None:
        ch.basic_qos(prefetch_count=10)
        ch.basic_consume(stream, lambda *a: None, arguments={"x-stream-offset": offset})

    code, text = error_of(broker.port, consume)
    assert code == 541 and text.startswith("INTERNAL_ERROR - x-stream-offset ")


def test_basic_get_and_purge_are_540(broker: BrokerProcess, stream: str) -> None:
    publish(broker.port, stream, [b"x"])
    for no_ack in (False, True):
        assert error_of(broker.port, lambda ch, n=no_ack: ch.basic_get(stream, auto_ack=n)) == (
            540, f"NOT_IMPLEMENTED - basic.get not supported by stream queues {rs(stream)}")
    assert error_of(broker.port, lambda ch: ch.queue_purge(stream)) == (
        540, f"NOT_IMPLEMENTED - queue.purge not supported by stream queues {rs(stream)}")
    assert message_count(broker.port, stream, lambda n: n == 1) == 1


def message_count(port: int, queue: str, until: Callable[[int], bool]) -> int:
    """The declare-ok message count once until(count) holds (RabbitMQ updates a stream's
    count every few seconds; this broker at once), or the last one seen."""
    c = pika_connect(port)
    ch = c.channel()
    deadline = time.monotonic() + 15
    while True:
        count: int = ch.queue_declare(queue, passive=True).method.message_count
        if until(count) or time.monotonic() > deadline:
            c.close()
            return count
        time.sleep(0.2)


def collect(c: pika.BlockingConnection, got: list[Any], n: int, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while len(got) < n and time.monotonic() < deadline:
        c.process_data_events(0.05)


def test_acks_only_return_credit(broker: BrokerProcess, stream: str) -> None:
    publish(broker.port, stream, [b"%d" % i for i in range(6)])
    c = pika_connect(broker.port)
    ch = c.channel()
    ch.basic_qos(prefetch_count=2)
    got: list[Any] = []
    ch.basic_consume(stream, lambda c_, m, p, b: got.append((m, b)),
                     arguments={"x-stream-offset": "first"})
    collect(c, got, 2)
    c.process_data_events(0.3)
    assert [b for _, b in got] == [b"0", b"1"]  # the prefetch holds the rest back
    ch.basic_ack(got[1][0].delivery_tag, multiple=True)
    collect(c, got, 4)
    assert [b for _, b in got] == [b"0", b"1", b"2", b"3"]
    ch.basic_ack(got[3][0].delivery_tag, multiple=True)
    collect(c, got, 6)
    c.process_data_events(0.3)
    assert [b for _, b in got] == [b"%d" % i for i in range(6)]
    assert not any(m.redelivered for m, _ in got)
    c.close()
    assert message_count(broker.port, stream, lambda n: n == 6) == 6


@pytest.mark.parametrize("requeue", [True, False])
@pytest.mark.parametrize("how", ["nack", "reject"])
def test_nack_and_reject_are_540(broker: BrokerProcess, stream: str, how: str,
                                 requeue: bool) -> None:
    publish(broker.port, stream, [b"x"])

    def consume_and_refuse(ch: Any) -> None:
        ch.basic_qos(prefetch_count=1)
        got: list[Any] = []
        ch.basic_consume(stream, lambda c_, m, p, b: got.append(m),
                         arguments={"x-stream-offset": "first"})
        collect(ch.connection, got, 1)
        if how == "nack":
            ch.basic_nack(got[0].delivery_tag, requeue=requeue)
        else:
            ch.basic_reject(got[0].delivery_tag, requeue=requeue)

    assert error_of(broker.port, consume_and_refuse) == (
        540, "NOT_IMPLEMENTED - basic.nack and basic.reject not supported by stream queues "
             f"{rs(stream)}")


def test_many_consumers_replay_independently(broker: BrokerProcess, stream: str) -> None:
    publish(broker.port, stream, [b"%d" % i for i in range(50)])
    c = pika_connect(broker.port)
    fast_ch, slow_ch = c.channel(), c.channel()
    fast_ch.basic_qos(prefetch_count=50)
    slow_ch.basic_qos(prefetch_count=1)
    fast: list[bytes] = []
    slow: list[tuple[Any, bytes]] = []
    fast_ch.basic_consume(stream, lambda c_, m, p, b: (fast.append(b),
                                                       c_.basic_ack(m.delivery_tag)),
                          arguments={"x-stream-offset": "first"})
    slow_ch.basic_consume(stream, lambda c_, m, p, b: slow.append((m, b)),
                          arguments={"x-stream-offset": 40})
    collect(c, fast, 50)
    assert fast == [b"%d" % i for i in range(50)]
    assert [b for _, b in slow] == [b"40"]  # one at a time, at its own pace
    for _ in range(9):
        slow_ch.basic_ack(slow[-1][0].delivery_tag)
        collect(c, slow, len(slow) + 1)
    assert [b for _, b in slow] == [b"%d" % i for i in range(40, 50)]
    c.close()
    assert len(read(broker.port, stream, "first", n=50)) == 50  # nothing was consumed away


def test_retention_by_max_length_bytes_drops_whole_segments(broker: BrokerProcess,
                                                            uid: str) -> None:
    q = f"stream-ret-{uid}"
    c = pika_connect(broker.port)
    ch = c.channel()
    ch.queue_declare(q, durable=True, arguments={
        **STREAM, "x-max-length-bytes": 20_000, "x-stream-max-segment-size-bytes": 5_000})
    try:
        publish(broker.port, q, [b"x" * 500 for _ in range(200)])
        count = message_count(broker.port, q, lambda n: n > 0)
        assert 0 < count < 200
        got = read(broker.port, q, "first", n=count, seconds=1.0)
        offsets = [o for o, _, _ in got]
        assert len(got) < 200 and offsets[0] > 0 and offsets == sorted(set(offsets))
    finally:
        ch.queue_delete(q)
        c.close()


def test_retention_by_max_age(broker: BrokerProcess, uid: str) -> None:
    q = f"stream-age-{uid}"
    c = pika_connect(broker.port)
    ch = c.channel()
    ch.queue_declare(q, durable=True, arguments={
        **STREAM, "x-max-age": "1s", "x-stream-max-segment-size-bytes": 2_000})
    try:
        publish(broker.port, q, [b"old" * 100 for _ in range(20)])
        time.sleep(1.5)  # what x-max-age measures; no timing is asserted
        publish(broker.port, q, [b"new" * 100 for _ in range(20)])
        got = read(broker.port, q, "first", n=40, seconds=1.0)
        assert got and got[0][0] > 0  # old segments were dropped, whole
        assert all(b.startswith(b"new") for _, b, _ in got[-20:])
        assert len(got) < 40
    finally:
        ch.queue_delete(q)
        c.close()


def test_deleting_a_stream_under_unacked_deliveries(broker: BrokerProcess, uid: str) -> None:
    """The consumer's channel then closes cleanly (nothing to requeue into a log)."""
    q = f"stream-del-unacked-{uid}"
    c = pika_connect(broker.port)
    ch = c.channel()
    ch.queue_declare(q, durable=True, arguments=STREAM)
    publish(broker.port, q, [b"x", b"y"])
    ch.basic_qos(prefetch_count=5)
    got: list[Any] = []
    ch.basic_consume(q, lambda c_, m, p, b: got.append(m), arguments={"x-stream-offset": "first"})
    collect(c, got, 2)
    other = pika_connect(broker.port)
    other.channel().queue_delete(q)
    other.close()
    c.process_data_events(0.2)
    ch.close()  # the unacked deliveries of the deleted stream are forgotten
    assert c.channel().queue_declare(f"classic-{uid}", auto_delete=True).method.queue
    c.close()


def test_delete_ignores_if_empty_and_if_unused(broker: BrokerProcess, uid: str) -> None:
    q = f"stream-del-{uid}"
    c = pika_connect(broker.port)
    ch = c.channel()
    ch.queue_declare(q, durable=True, arguments=STREAM)
    publish(broker.port, q, [b"x", b"y"])
    other = pika_connect(broker.port)
    och = other.channel()
    och.basic_qos(prefetch_count=1)
    och.basic_consume(q, lambda *a: None)
    assert ch.queue_delete(q, if_empty=True, if_unused=True).method.message_count == 0
    other.close()
    assert error_of(broker.port, lambda ch: ch.queue_declare(q, passive=True))[0] == 404
    c.close()


# --- private brokers: restart, management, memory-only ----------------------------------
def test_a_stream_survives_restarts_and_kill9(broker_factory: Callable[..., BrokerProcess],
                                              uid: str) -> None:
    proc = broker_factory()
    q = f"stream-restart-{uid}"
    c = pika_connect(proc.port)
    c.channel().queue_declare(q, durable=True, arguments={
        **STREAM, "x-stream-max-segment-size-bytes": 3_000})
    c.close()
    publish(proc.port, q, [b"%d" % i for i in range(100)])
    proc.restart()
    assert [o for o, _, _ in read(proc.port, q, "first", n=100)] == list(range(100))
    publish(proc.port, q, [b"after"])  # confirmed: fsync'd before the ack
    assert proc.proc is not None
    proc.proc.kill()
    proc.proc.wait(10)
    proc.proc = None
    proc.start()
    got = read(proc.port, q, "last", n=1)
    assert [(o, b) for o, b, _ in got] == [(100, b"after")]
    c = pika_connect(proc.port)
    assert c.channel().queue_declare(q, passive=True).method.message_count == 101
    c.close()
    assert proc.data_dir is not None
    streams = proc.data_dir / "streams"
    assert len(list(streams.iterdir())) == 1
    c = pika_connect(proc.port)
    c.channel().queue_delete(q)
    c.close()
    assert list(streams.iterdir()) == []  # deleting the stream deletes its log


def test_management_shows_type_stream_and_the_log_length(
        broker_factory: Callable[..., BrokerProcess], uid: str) -> None:
    port = free_port()
    proc = broker_factory("--management-port", str(port))
    deadline = time.monotonic() + 10
    q = f"stream-mgmt-{uid}"
    c = pika_connect(proc.port)
    c.channel().queue_declare(q, durable=True, arguments=STREAM)
    c.close()
    publish(proc.port, q, [b"a", b"b", b"c"])
    read(proc.port, q, "first", n=3, ack=False)  # unacked deliveries do not count
    auth = "Basic " + b64encode(b"guest:guest").decode()
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/api/queues/%2F/{q}",
                                         headers={"Authorization": auth})
            info = json.load(urllib.request.urlopen(req, timeout=5))
            break
        except OSError:
            time.sleep(0.1)
    assert info["type"] == "stream"
    assert (info["messages"], info["messages_ready"], info["messages_unacknowledged"]) == (
        3, 3, 0)
    assert info["arguments"] == STREAM and info["durable"] is True

    def api(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": auth, "content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    assert api("POST", f"/api/queues/%2F/{q}/get", {
        "count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"}) == (400, {
            "error": "bad_request",
            "reason": f"540 basic.get not supported by stream queues {rs(q)}"})
    assert api("DELETE", f"/api/queues/%2F/{q}/contents") == (400, {
        "error": "bad_request", "reason": f"queue.purge not supported by stream queues {rs(q)}"})


def test_a_broker_without_data_dir_keeps_streams_in_memory(
        broker_factory: Callable[..., BrokerProcess], uid: str) -> None:
    proc = broker_factory(data_dir=None)
    q = f"stream-mem-{uid}"
    c = pika_connect(proc.port)
    c.channel().queue_declare(q, durable=True, arguments=STREAM)
    c.close()
    publish(proc.port, q, [b"%d" % i for i in range(10)])
    assert [o for o, _, _ in read(proc.port, q, 5, n=5)] == [5, 6, 7, 8, 9]


def test_stream_files_live_under_the_data_dir(broker: BrokerProcess, stream: str) -> None:
    publish(broker.port, stream, [b"x"])
    if broker.data_dir is None:
        pytest.skip("external broker")
    metas = [json.loads(p.read_text())
             for p in Path(broker.data_dir, "streams").glob("*/meta.json")]
    assert {"vhost": "/", "queue": stream} in metas


# --- in process: confirms wait for the log's fsync; a failed append is nacked -------------
class StreamSyncStore(ManualSyncStore):
    """Stream logs under root; their fsyncs run only when the test calls sync()."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.stream_syncs: dict[str, Callable[[], None]] = {}

    def stream_root(self) -> str | None:
        return str(self.root)

    def sync_with(self, key: str, sync: Callable[[], None]) -> int:
        if key not in self.stream_syncs:
            self.stream_syncs[key] = sync
            self._token += 1
        return self._token

    def sync(self, ok: bool = True) -> None:
        syncs, self.stream_syncs = self.stream_syncs, {}
        for fn in syncs.values():
            fn()
        super().sync(ok)


def declare_stream(client: Client, name: str) -> None:
    client.send(commands.Queue.Declare(queue=name, durable=True, arguments=STREAM), 1)


def test_a_confirm_waits_for_the_stream_log_fsync(tmp_path: Path) -> None:
    store = StreamSyncStore(tmp_path)
    broker = make_broker(store)
    client = Client(broker)
    client.open_channel()
    declare_stream(client, "s")
    store.sync()
    client.send(commands.Confirm.Select(), 1)
    client.frames()
    client.publish(1, "", "s", b"hello")  # transient: a stream stores it all the same
    assert of_type(client.frames(), commands.Basic.Ack) == []
    assert store.stream_syncs  # the log's fsync is part of the next group commit
    log = broker.vhosts["/"].queues["s"].log  # type: ignore[attr-defined]
    assert log.dirty
    store.sync()
    assert not log.dirty
    acks = of_type(client.frames(), commands.Basic.Ack)
    assert [a.delivery_tag for _, a in acks] == [1]
    assert list(tmp_path.glob("*/00000000000000000000.seg"))


def test_a_publish_a_stream_cannot_append_is_nacked(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    store = StreamSyncStore(tmp_path)
    broker = make_broker(store)
    client = Client(broker)
    client.open_channel()
    declare_stream(client, "s")
    client.send(commands.Confirm.Select(), 1)
    client.frames()
    log = broker.vhosts["/"].queues["s"].log  # type: ignore[attr-defined]

    def full(*_args: Any) -> int:
        raise StoreError("No space left on device")

    monkeypatch.setattr(log, "append", full)
    client.publish(1, "", "s", b"lost")
    store.sync()
    nacks = of_type(client.frames(), commands.Basic.Nack)
    assert [n.delivery_tag for _, n in nacks] == [1]
    monkeypatch.undo()
    client.publish(1, "", "s", b"kept")
    store.sync()
    assert [a.delivery_tag for _, a in of_type(client.frames(), commands.Basic.Ack)] == [2]
    assert log.count == 1


def test_export_definitions_of_a_data_dir_leaves_stream_logs_alone(
        broker_factory: Callable[..., BrokerProcess], uid: str) -> None:
    proc = broker_factory()
    q = f"stream-export-{uid}"
    c = pika_connect(proc.port)
    args = {**STREAM, "x-max-age": "1s", "x-stream-max-segment-size-bytes": 100}
    c.channel().queue_declare(q, durable=True, arguments=args)
    c.close()
    publish(proc.port, q, [b"x" * 200] * 3)  # a segment each
    proc.stop()
    assert proc.data_dir is not None
    before = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                    for p in (proc.data_dir / "streams").rglob("*"))
    time.sleep(1.1)  # past x-max-age: a retention run would delete, a reopen would touch
    exported = read_data_dir(str(proc.data_dir))
    assert len(before) == 5  # directory, meta.json, three segments
    assert args in [
        d["arguments"] for d in exported["queues"] if d["name"] == q]
    after = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                   for p in (proc.data_dir / "streams").rglob("*"))
    assert after == before


def test_policies_set_a_streams_retention(tmp_path: Path) -> None:
    """max-length-bytes, max-age and stream-max-segment-size-bytes from a policy win over
    the stream's arguments (RabbitMQ's rule for streams), on a declare and on a live one."""
    broker = make_broker()
    client = Client(broker)
    client.open_channel()
    declare_stream(client, "s1")
    log = broker.vhosts["/"].queues["s1"].log  # type: ignore[attr-defined]
    assert (log.max_bytes, log.max_age_ms, log.segment_bytes) == (None, None, 500_000_000)
    broker.runtime.set_policy({"vhost": "/", "name": "ret", "pattern": "^s", "priority": 0,
                               "apply-to": "queues", "definition": {
                                   "max-length-bytes": 5000, "max-age": "2h",
                                   "stream-max-segment-size-bytes": 1000}})
    assert (log.max_bytes, log.max_age_ms, log.segment_bytes) == (5000, 7_200_000, 1000)
    client.send(commands.Queue.Declare(queue="s2", durable=True, arguments={
        **STREAM, "x-max-age": "1D", "x-max-length-bytes": 10**9}), 1)
    log2 = broker.vhosts["/"].queues["s2"].log  # type: ignore[attr-defined]
    assert (log2.max_bytes, log2.max_age_ms) == (5000, 7_200_000)  # the policy wins
    for _ in range(50):
        client.publish(1, "", "s2", b"x" * 200)
    assert 0 < log2.first_offset and log2.bytes <= 5000 + 1000
    broker.runtime.clear_policy("/", "ret")
    assert (log2.max_bytes, log2.max_age_ms, log2.segment_bytes) == (10**9, 86_400_000,
                                                                    500_000_000)


def test_aio_pika_replays_a_stream(broker: BrokerProcess, stream: str) -> None:
    """The same with aio-pika: two consumers on one channel, at first and at offset 3."""
    async def main() -> tuple[list[int], list[int]]:
        conn = await aio_pika.connect(broker.url)
        async with conn:
            ch = await conn.channel()
            await ch.set_qos(prefetch_count=10)
            await ch.default_exchange.publish(aio_pika.Message(b"a"), routing_key=stream)
            queue = await ch.get_queue(stream, ensure=False)
            for body in (b"b", b"c", b"d", b"e"):
                await ch.default_exchange.publish(aio_pika.Message(body), routing_key=stream)
            first: list[int] = []
            third: list[int] = []
            done = asyncio.Event()

            def collector(into: list[int]) -> Callable[[Any], Any]:
                async def on_message(message: Any) -> None:
                    into.append(message.headers["x-stream-offset"])
                    await message.ack()
                    if len(first) == 5 and len(third) == 2:
                        done.set()
                return on_message

            await queue.consume(collector(first), arguments={"x-stream-offset": "first"})
            await queue.consume(collector(third), arguments={"x-stream-offset": 3})
            await asyncio.wait_for(done.wait(), 10)
            return first, third

    assert asyncio.run(main()) == ([0, 1, 2, 3, 4], [3, 4])
