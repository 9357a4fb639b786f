"""Message properties and field tables pass through byte for byte.

RabbitMQ treats a timestamp (the property, or a 'T' value in any field table) as an
opaque 64-bit number: 0, 2**31, 2**62 and 2**64 - 1 are all accepted, delivered and
dead-lettered unchanged. The unit tests drive the codecs (protocol.fast,
protocol.methods, tables) and the dead-letter rewrite; the integration tests publish
with pika and with raw frames and compare the bytes that come back.
"""

from __future__ import annotations

import datetime
import decimal
import struct
import time
import uuid
from types import SimpleNamespace
from typing import Any

import pika
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands

from amqp_broker import deadletter, tables
from amqp_broker.exchanges import create as create_exchange
from amqp_broker.protocol import fast
from amqp_broker.protocol.codec import decode_method
from amqp_broker.protocol.errors import SYNTAX_ERROR, AMQPError
from amqp_broker.protocol.fieldtable import decode_table, encode_table

from helpers import BrokerProcess, RawClient, pika_connect
from inproc import encode_fields as encode_method

TIMESTAMPS = [0, 2**31, 2**62, 2**64 - 1]
FLAG_HEADERS, FLAG_TIMESTAMP, FLAG_MESSAGE_ID = 0x2000, 0x0040, 0x0080


# --- raw encoding helpers (independent of the code under test) -------------------------

def sstr(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return bytes((len(raw),)) + raw


def ts(value: int) -> bytes:
    """A 'T' field value."""
    return b"T" + struct.pack(">Q", value)


def table(*entries: tuple[str | bytes, bytes]) -> bytes:
    body = b"".join(sstr(k) + v for k, v in entries)
    return struct.pack(">I", len(body)) + body


def array(*values: bytes) -> bytes:
    body = b"".join(values)
    return b"A" + struct.pack(">I", len(body)) + body


def props(flags: int, *fields: bytes) -> bytes:
    return struct.pack(">H", flags) + b"".join(fields)


def timestamp_prop(value: int) -> bytes:
    return props(FLAG_TIMESTAMP, struct.pack(">Q", value))


def nested_headers(value: int) -> bytes:
    """A headers table with the timestamp at the top, in a table, in an array and in a
    table inside an array."""
    return table(("t", ts(value)),
                 ("tbl", b"F" + table(("inner", ts(value)))),
                 ("arr", array(ts(value), b"b\x01", ts(value))),
                 ("deep", array(b"F" + table(("t", ts(value))))))


# every field type RabbitMQ knows, each value in its own wire type
ALL_TYPES = table(
    ("bool", b"t\x01"), ("b", b"b" + struct.pack(">b", -3)), ("B", b"B\xff"),
    ("s", b"s" + struct.pack(">h", -300)), ("u", b"u" + struct.pack(">H", 65000)),
    ("I", b"I" + struct.pack(">i", -70000)), ("i", b"i" + struct.pack(">I", 4000000000)),
    ("l", b"l" + struct.pack(">q", 5)), ("L", b"L" + struct.pack(">q", -(2**40))),
    ("f", b"f" + struct.pack(">f", 2.5)), ("d", b"d" + struct.pack(">d", 0.1)),
    ("D", b"D" + struct.pack(">Bi", 2, 12345)), ("D0", b"D" + struct.pack(">Bi", 3, 0)),
    ("S", b"S" + struct.pack(">I", 3) + b"abc"),
    ("S_raw", b"S" + struct.pack(">I", 2) + b"\xff\x00"),
    ("x", b"x" + struct.pack(">I", 2) + b"\xde\xad"), ("V", b"V"), ("T", ts(2**62)),
    ("F", b"F" + table()), ("A", array()), (b"\xffkey", b"b\x00"),
)


# --- the timestamp property ------------------------------------------------------------

@pytest.mark.parametrize("value", TIMESTAMPS)
def test_timestamp_property_is_accepted_and_decodes_to_the_number(value: int) -> None:
    raw = timestamp_prop(value)
    fast.check_properties(raw)  # 2**62 used to be 502 "malformed content header properties"
    decoded = fast.decode_properties(raw)
    assert decoded.timestamp == value
    assert isinstance(decoded.timestamp, int)
    assert fast.encode_properties(decoded) == raw


@pytest.mark.parametrize("value", TIMESTAMPS)
def test_timestamp_in_headers_round_trips_nested(value: int) -> None:
    raw = props(FLAG_HEADERS | FLAG_TIMESTAMP, nested_headers(value), struct.pack(">Q", value))
    fast.check_properties(raw)
    decoded = fast.decode_properties(raw)
    h = decoded.headers
    assert h is not None
    assert h["t"] == value and h["tbl"]["inner"] == value
    assert h["arr"] == [value, 1, value] and h["deep"][0]["t"] == value
    assert fast.encode_properties(decoded) == raw
    # the routing view (headers exchange) sees the same numbers
    plain = fast.message_headers(raw)
    assert plain is not None and plain["t"] == value and plain["arr"][2] == value


def test_every_field_type_round_trips_exactly() -> None:
    raw = props(FLAG_HEADERS, ALL_TYPES)
    fast.check_properties(raw)
    decoded = fast.decode_properties(raw)
    assert fast.encode_properties(decoded) == raw
    h = decoded.headers
    assert h is not None
    assert (h["b"], h["B"], h["s"], h["u"], h["I"], h["i"], h["l"], h["L"]) == \
        (-3, 255, -300, 65000, -70000, 4000000000, 5, -(2**40))
    assert h["bool"] is True and h["f"] == 2.5 and h["d"] == 0.1
    assert h["D"] == decimal.Decimal("123.45") and h["S"] == "abc" and h["S_raw"] == b"\xff\x00"
    assert h["x"] == b"\xde\xad" and h["V"] is None and h["T"] == 2**62
    # the same table as a method argument decodes to plain values and re-encodes the same way
    # where plain values allow it (numbers take the smallest type there)
    plain, end = decode_table(ALL_TYPES, 0)
    assert end == len(ALL_TYPES)
    assert plain == h
    typed, _ = decode_table(ALL_TYPES, 0, typed=True)
    assert encode_table(typed) == ALL_TYPES


def test_non_utf8_short_strings_are_accepted_and_kept() -> None:
    # RabbitMQ takes any bytes in a short string (property or field name)
    raw = props(FLAG_HEADERS | FLAG_MESSAGE_ID, table((b"\xff\xfe", b"b\x01")), sstr(b"\xff\x00id"))
    fast.check_properties(raw)
    assert fast.encode_properties(fast.decode_properties(raw)) == raw


def test_header_order_is_kept() -> None:
    raw = props(FLAG_HEADERS, table(("z", b"b\x01"), ("a", b"b\x02"), ("m", b"b\x03")))
    assert fast.encode_properties(fast.decode_properties(raw)) == raw


def test_pamqp_encoded_properties_round_trip() -> None:
    p = commands.Basic.Properties(
        content_type="application/json", content_encoding="gzip", headers={"k": "v", "n": 7},
        delivery_mode=2, priority=7, correlation_id="c", reply_to="r", expiration="60000",
        message_id="m", timestamp=datetime.datetime(2024, 1, 2, tzinfo=datetime.UTC),
        message_type="t", user_id="guest", app_id="a")
    raw = p.marshal()
    decoded = fast.decode_properties(raw)
    assert decoded.delivery_mode == 2 and decoded.priority == 7 and decoded.expiration == "60000"
    assert decoded.timestamp == 1704153600
    assert fast.encode_properties(decoded) == raw
    assert fast.delivery_mode(raw) == 2
    assert fast.decode_properties(b"") == fast.Properties()


@pytest.mark.parametrize("raw", [
    props(FLAG_MESSAGE_ID, b"\x05ab"),                      # short string cut short
    props(FLAG_MESSAGE_ID, sstr("id"), b"junk"),            # bytes after the last property
    props(FLAG_TIMESTAMP, b"\x00" * 7),                     # timestamp cut short
    props(FLAG_HEADERS, table(("k", b"Z\x01"))),            # unknown field type
    props(FLAG_HEADERS, table(("k", b"\x00"))),             # NUL is no field type
    props(FLAG_HEADERS, struct.pack(">I", 10) + b"\x01k"),  # table longer than the frame
    props(FLAG_HEADERS, table(("k", b"S\x00\x00\x00\x09ab"))),  # string past its table
    props(FLAG_HEADERS, table(("k", array(b"l\x00")))),     # value past its array
    b"\x20",
], ids=["shortstr", "trailing", "timestamp", "tag", "nul", "table", "string", "array", "flags"])
def test_malformed_properties_are_syntax_errors(raw: bytes) -> None:
    # RabbitMQ 3.10 closes the connection for each of these (541 there; 502 here)
    with pytest.raises(AMQPError) as info:
        fast.check_properties(raw)
    assert info.value.reply_code == SYNTAX_ERROR
    with pytest.raises(AMQPError) as info:
        fast.decode_properties(raw)
    assert info.value.reply_code == SYNTAX_ERROR


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=60))
def test_fuzz_check_and_decode_agree(raw: bytes) -> None:
    """Any bytes are either accepted by both check and decode or refused by both with 502."""
    try:
        fast.check_properties(raw)
    except AMQPError as exc:
        assert exc.reply_code == SYNTAX_ERROR
        with pytest.raises(AMQPError):
            fast.decode_properties(raw)
        return
    fast.decode_properties(raw)
    fast.message_headers(raw)


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=5),
    st.binary(max_size=5), st.floats(allow_nan=False),
    st.integers(0, 2**64 - 1).map(fast.Timestamp),
    st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-10**6,
                max_value=10**6))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=6), _values, max_size=5),
       st.integers(0, 2**64 - 1), st.text(max_size=10))
def test_fuzz_encoded_properties_round_trip(headers: dict[str, Any], stamp: int,
                                            message_id: str) -> None:
    raw = fast.encode_properties(fast.Properties(headers=headers, timestamp=stamp,
                                                 message_id=message_id, delivery_mode=2))
    fast.check_properties(raw)
    decoded = fast.decode_properties(raw)
    assert decoded.timestamp == stamp and decoded.message_id == message_id
    assert fast.encode_properties(decoded) == raw


# --- dead-lettering re-encodes the properties ------------------------------------------

def _dead(properties: bytes, queue_name: str = "q") -> bytes:
    msg = SimpleNamespace(properties=properties, exchange="ex", routing_key="rk")
    props, _ = deadletter.with_death(msg, SimpleNamespace(name=queue_name),  # type: ignore[arg-type]
                                     deadletter.REJECTED)
    return props


@pytest.mark.parametrize("value", TIMESTAMPS)
def test_dead_lettering_keeps_timestamps_and_headers_byte_for_byte(value: int) -> None:
    original_entry = sstr("orig") + ts(value)
    headers = table(("orig", ts(value)), ("n", b"l" + struct.pack(">q", 5)),
                    ("nested", b"F" + table(("t", ts(value)))))
    raw = props(FLAG_HEADERS | FLAG_MESSAGE_ID | FLAG_TIMESTAMP | 0x0100, headers,
                sstr("60000"), sstr("id-1"), struct.pack(">Q", value))
    fast.check_properties(raw)
    once = _dead(raw)
    twice = _dead(once, "q2")
    for out in (once, twice):
        fast.check_properties(out)
        decoded = fast.decode_properties(out)
        assert decoded.timestamp == value
        assert decoded.message_id == "id-1"
        assert decoded.expiration is None  # moved into x-death original-expiration
        h = decoded.headers
        assert h is not None
        assert h["orig"] == value and h["nested"]["t"] == value
        assert h["x-first-death-queue"] == "q" and h["x-first-death-reason"] == "rejected"
        # the original entries are still there, byte for byte
        assert original_entry in out and b"\x01nl" + struct.pack(">q", 5) in out
        assert struct.pack(">Q", value) == out[-8:]  # the timestamp property, last field
    deaths = fast.decode_properties(twice).headers["x-death"]  # type: ignore[index]
    assert [(d["queue"], d["count"]) for d in deaths] == [("q2", 1), ("q", 1)]
    assert deaths[1]["original-expiration"] == "60000"


# --- method argument tables and definitions ----------------------------------------------

@pytest.mark.parametrize("value", TIMESTAMPS)
def test_timestamp_in_declare_and_bind_arguments(value: int) -> None:
    args = {"x-match": "all", "t": fast.Timestamp(value), "list": [fast.Timestamp(value)]}
    for key in ((50, 10), (40, 10), (50, 20), (40, 30)):
        payload = encode_method(key, arguments=args)
        assert ts(value) in payload
        got_key, got = decode_method(payload)
        assert got_key == key
        assert got["arguments"] == args
        assert isinstance(got["arguments"]["t"], fast.Timestamp)
    # stored as a definition (JSON) and restored as the same timestamp
    restored = tables.from_json(tables.to_json(args))
    assert restored == args and isinstance(restored["t"], fast.Timestamp)
    assert encode_table(restored) == encode_table(args)


def test_definitions_written_by_older_versions_restore() -> None:
    # older versions stored a timestamp as float seconds of a datetime
    assert tables.from_json({"$timestamp": 1577934245.0}) == 1577934245
    assert encode_table(tables.from_json({"t": {"$timestamp": 1577934245.0}})) == \
        table(("t", ts(1577934245)))


@pytest.mark.parametrize("value", TIMESTAMPS)
def test_headers_exchange_matches_a_timestamp(value: int) -> None:
    ex = create_exchange("headers")
    ex.bind("q", "", decode_method(encode_method(
        (50, 20), arguments={"x-match": "all", "t": fast.Timestamp(value)}))[1]["arguments"])
    hit = props(FLAG_HEADERS, table(("t", ts(value))))
    miss = props(FLAG_HEADERS, table(("t", ts(value ^ 1))))
    assert set(ex.route("", fast.message_headers(hit))) == {"q"}
    assert not ex.route("", fast.message_headers(miss))


# --- against a broker --------------------------------------------------------------------

def _uid() -> str:
    return uuid.uuid4().hex[:10]


def _get_dead_letter(ch: Any, queue: str) -> tuple[Any, Any, bytes]:
    """basic.get until the dead letter arrives (RabbitMQ republishes it asynchronously)."""
    for _ in range(100):
        method, p, body = ch.basic_get(queue, auto_ack=True)
        if method is not None:
            return method, p, body
        time.sleep(0.05)
    raise AssertionError(f"nothing was dead-lettered to {queue}")


def test_pika_timestamp_2_62_and_datetime_header(broker: BrokerProcess) -> None:
    conn = pika_connect(broker.port)
    try:
        ch = conn.channel()
        q = ch.queue_declare("", exclusive=True).method.queue
        when = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
        for stamp in TIMESTAMPS:
            ch.basic_publish("", q, b"x", pika.BasicProperties(
                timestamp=stamp, headers={"t": when, "n": 1}))
        for stamp in TIMESTAMPS:
            method, p, body = ch.basic_get(q, auto_ack=True)
            assert method is not None, "the broker dropped the message or the channel"
            assert p.timestamp == stamp
            assert p.headers == {"t": when, "n": 1}
        ch.basic_publish("", q, b"y", pika.BasicProperties(timestamp=2**62))
        for method, p, body in ch.consume(q, auto_ack=True, inactivity_timeout=5):
            assert method is not None and body == b"y"
            assert p.timestamp == 2**62
            break
        ch.cancel()
    finally:
        conn.close()


def test_pika_dead_lettered_timestamp_and_header_survive(broker: BrokerProcess) -> None:
    conn = pika_connect(broker.port)
    try:
        ch = conn.channel()
        dlq = ch.queue_declare("", exclusive=True).method.queue
        q = ch.queue_declare("", exclusive=True, arguments={
            "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}).method.queue
        when = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
        ch.basic_publish("", q, b"x", pika.BasicProperties(
            timestamp=2**62, message_id="m1", headers={"t": when}))
        method, _, _ = ch.basic_get(q)
        assert method is not None
        ch.basic_reject(method.delivery_tag, requeue=False)
        method, p, body = _get_dead_letter(ch, dlq)
        assert body == b"x"
        assert p.timestamp == 2**62 and p.message_id == "m1"
        assert p.headers["t"] == when
        assert p.headers["x-death"][0]["reason"] == "rejected"
        assert p.headers["x-death"][0]["queue"] == q
    finally:
        conn.close()


class RawFrames:
    """Frames from a RawClient's socket as (type, channel, payload), decoded by nobody:
    pamqp cannot decode a timestamp of 2**64 - 1."""

    def __init__(self, raw: RawClient) -> None:
        self.raw = raw

    def next(self) -> tuple[int, int, bytes]:
        head = self.raw.read_bytes(7)
        kind, channel, size = struct.unpack(">BHI", head)
        payload = self.raw.read_bytes(size + 1)[:-1]
        return kind, channel, payload

    def method(self, *wanted: tuple[int, int]) -> tuple[tuple[int, int], dict[str, Any]]:
        while True:
            kind, _, payload = self.next()
            if kind == 8:
                continue
            assert kind == 1, f"expected a method frame, got type {kind}"
            key, args = decode_method(payload)
            assert key in wanted, (key, args)
            return key, args

    def content(self) -> tuple[bytes, bytes]:
        """(raw properties, body) of the content that follows a get-ok / deliver."""
        kind, _, payload = self.next()
        assert kind == 2
        size = struct.unpack_from(">Q", payload, 4)[0]
        properties = payload[12:]
        body = b""
        while len(body) < size:
            kind, _, chunk = self.next()
            assert kind == 3
            body += chunk
        return properties, body


def _raw_call(raw: RawClient, frames: RawFrames, key: tuple[int, int], reply: tuple[int, int],
              **args: Any) -> dict[str, Any]:
    raw.send_raw(_method_frame(key, **args))
    return frames.method(reply, (20, 40), (10, 50))[1]


def _method_frame(key: tuple[int, int], channel: int = 1, **args: Any) -> bytes:
    payload = encode_method(key, **args)
    return struct.pack(">BHI", 1, channel, len(payload)) + payload + b"\xce"


def _publish_raw(raw: RawClient, routing_key: str, properties: bytes, body: bytes,
                 exchange: str = "") -> None:
    data = _method_frame((60, 40), exchange=exchange, routing_key=routing_key)
    header = struct.pack(">HHQ", 60, 0, len(body)) + properties
    data += struct.pack(">BHI", 2, 1, len(header)) + header + b"\xce"
    data += struct.pack(">BHI", 3, 1, len(body)) + body + b"\xce"
    raw.send_raw(data)


def _get(raw: RawClient, frames: RawFrames, queue: str, no_ack: bool = True,
         tries: int = 1) -> tuple[dict[str, Any], bytes, bytes]:
    """basic.get; with tries > 1, again after a get-empty (for dead letters, which
    RabbitMQ republishes asynchronously)."""
    for _ in range(tries):
        raw.send_raw(_method_frame((60, 70), queue=queue, no_ack=no_ack))
        key, args = frames.method((60, 71), (60, 72), (20, 40), (10, 50))
        if key != (60, 72):
            break
        time.sleep(0.05)
    assert key == (60, 71), f"basic.get answered {key} {args}"
    properties, body = frames.content()
    return args, properties, body


def test_raw_properties_come_back_byte_for_byte(broker: BrokerProcess) -> None:
    with RawClient(broker.port) as raw:
        raw.handshake()
        raw.open_channel(1)
        frames = RawFrames(raw)
        q = _raw_call(raw, frames, (50, 10), (50, 11), queue="", exclusive=True)["queue"]
        sent = []
        for value in TIMESTAMPS:
            p = props(FLAG_HEADERS | FLAG_TIMESTAMP, nested_headers(value),
                      struct.pack(">Q", value))
            sent.append(p)
            _publish_raw(raw, q, p, b"body")
        for p in sent:
            _, got, body = _get(raw, frames, q)
            assert (got, body) == (p, b"body")


def test_raw_dead_lettered_properties_keep_their_bytes(broker: BrokerProcess) -> None:
    value = 2**64 - 1
    with RawClient(broker.port) as raw:
        raw.handshake()
        raw.open_channel(1)
        frames = RawFrames(raw)
        dlq = _raw_call(raw, frames, (50, 10), (50, 11), queue="", exclusive=True)["queue"]
        q = _raw_call(raw, frames, (50, 10), (50, 11), queue="", exclusive=True, arguments={
            "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})["queue"]
        entry = sstr("orig") + ts(value)
        sent = props(FLAG_HEADERS | FLAG_MESSAGE_ID | FLAG_TIMESTAMP,
                     table(("orig", ts(value)), ("n", b"l" + struct.pack(">q", 5))),
                     sstr("m1"), struct.pack(">Q", value))
        _publish_raw(raw, q, sent, b"body")
        args, _, _ = _get(raw, frames, q, no_ack=False)
        raw.send_raw(_method_frame((60, 90), delivery_tag=args["delivery_tag"], requeue=False))
        _, got, body = _get(raw, frames, dlq, tries=100)
        assert body == b"body"
        assert entry in got and b"\x01nl" + struct.pack(">q", 5) in got
        assert got.endswith(sstr("m1") + struct.pack(">Q", value))
        decoded = fast.decode_properties(got)
        assert decoded.timestamp == value and decoded.headers is not None
        assert decoded.headers["x-death"][0]["reason"] == "rejected"
        assert decoded.headers["x-first-death-queue"] == q


def test_raw_timestamp_arguments_and_headers_binding(broker: BrokerProcess) -> None:
    """Timestamps in declare arguments and in a headers binding (durable, so they are also
    written to the definitions store) neither crash nor stop routing."""
    value, uid = 2**64 - 1, _uid()
    ex, q = f"ts-hx-{uid}", f"ts-hq-{uid}"
    with RawClient(broker.port) as raw:
        raw.handshake()
        raw.open_channel(1)
        frames = RawFrames(raw)
        stamp = fast.Timestamp(value)
        _raw_call(raw, frames, (40, 10), (40, 11), exchange=ex, exchange_type="headers",
                  durable=True,
                  arguments={"x-note": stamp})
        _raw_call(raw, frames, (50, 10), (50, 11), queue=q, durable=True,
                  arguments={"x-note": stamp, "x-list": [stamp, {"t": stamp}]})
        try:
            _raw_call(raw, frames, (50, 20), (50, 21), queue=q, exchange=ex,
                      arguments={"x-match": "all", "t": stamp})
            hit = props(FLAG_HEADERS | FLAG_TIMESTAMP, table(("t", ts(value))),
                        struct.pack(">Q", value))
            _publish_raw(raw, "", props(FLAG_HEADERS, table(("t", ts(0)))), b"miss", ex)
            _publish_raw(raw, "", hit, b"hit", ex)
            _, got, body = _get(raw, frames, q)
            assert (got, body) == (hit, b"hit")
            # a redeclare with the same arguments is equivalent
            _raw_call(raw, frames, (50, 10), (50, 11), queue=q, durable=True,
                      arguments={"x-note": stamp, "x-list": [stamp, {"t": stamp}]})
        finally:
            _raw_call(raw, frames, (50, 40), (50, 41), queue=q)
            _raw_call(raw, frames, (40, 20), (40, 21), exchange=ex)


def test_malformed_properties_close_the_connection(broker: BrokerProcess) -> None:
    with RawClient(broker.port) as raw:
        raw.handshake()
        raw.open_channel(1)
        frames = RawFrames(raw)
        q = _raw_call(raw, frames, (50, 10), (50, 11), queue="", exclusive=True)["queue"]
        _publish_raw(raw, q, props(FLAG_MESSAGE_ID, sstr("id"), b"junk"), b"x")
        key, args = frames.method((10, 50))
        assert args["reply_code"] in (SYNTAX_ERROR, 541)  # RabbitMQ: 541
        raw.send_raw(struct.pack(">BHI", 1, 0, 4) + encode_method((10, 51)) + b"\xce")

